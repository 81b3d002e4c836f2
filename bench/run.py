"""The benchmark suite: `make bench` (or `.venv/bin/python bench/run.py [--quick] [--postgres]`).

Every figure is a ratio or a rate measured in the same run as its reference:

1. the webhook under gunicorn against the durable floor (bench/floor_app.py: Flask plus one
   INSERT of the text through the app's engine settings) and a bare Flask app, all under the same
   gunicorn command, with the same load of realistic, correctly signed Twilio requests (distinct
   MessageSids and senders; SQLite, and PostgreSQL with --postgres); best of two rounds;
2. messages/s through the pure core with the shipped content, 10x and 100x content;
3. page latency: crisis webhook request -> the page arriving at a fake Twilio, through
   `helpline worker --interval 0.05`;
4. peak RSS of one gunicorn worker after 2,000 and 10,000 messages.

Only 127.0.0.1 is used. Every child process is ended in a ``finally``; every wait is bounded.
--quick runs shorter versions of each section (smoke test; not comparable to the targets).
"""

from __future__ import annotations

import argparse
import json
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import page_latency
import stages
import webhook
from common import BENCH, corpus, gunicorn_command, machine_info, mix_summary

SUITE_LIMIT = 900  # seconds: the whole run is abandoned (children ended) past this
TRIAGE_SECONDS = 2.0


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- section 2 children
class TriageChild:
    """`bench/triage_bench.py` in its own process; lines read with a timeout."""

    def __init__(self, factor: int, seconds: float, tmp: Path, wait_go: bool = False):
        args = [sys.executable, str(BENCH / "triage_bench.py"), "--factor", str(factor), "--seconds", str(seconds)]
        if wait_go:
            args.append("--wait-go")
        self.errlog = tmp / f"triage_x{factor}.err"
        with open(self.errlog, "w") as err:
            self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
                                         text=True, start_new_session=True)
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.proc.stdout, selectors.EVENT_READ)

    def expect(self, tag: str, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.sel.select(timeout=max(0.0, deadline - time.monotonic())):
                break
            line = self.proc.stdout.readline()
            if not line:
                break
            if line.startswith(tag + " "):
                return json.loads(line[len(tag) + 1:])
        self.stop()
        err = self.errlog.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"triage child gave no {tag} within {timeout:.0f}s: {err}")

    def go(self) -> None:
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(5)


# --------------------------------------------------------------------------- formatting
def _ok(met: bool | None) -> str:
    return "n/a" if met is None else ("MET" if met else "MISSED")


def _ms(v: float) -> str:
    return f"{v:,.1f}" if v < 100 else f"{v:,.0f}"


def _cpu(r) -> str:
    """The workers' CPU per answered request (from /proc; the load generator's own CPU is not in it)."""
    return "" if r.cpu_ms is None else f"{r.cpu_ms:.2f}"


def report(info: dict, args, texts, sec1: dict | None, sec2: list[dict], sec3: dict | None, sec4: dict | None,
           sec5: dict | None, load_before: str,
           load_after: str) -> tuple[str, list[tuple[str, bool | None]]]:
    lines: list[str] = []
    targets: list[tuple[str, bool | None]] = []
    add = lines.append
    add(f"# Helpline benchmark{' (--quick: smoke test, not comparable to the targets)' if args.quick else ''}")
    add("")
    add(f"{info['date']} | {info['nproc']} cores, {info['cpu']} | Python {info['python']} | {info['platform']}")
    add(f"load average (1 min) before: {load_before}, after: {load_after}"
        f"{'  <- other work on this machine skews every figure' if float(load_before) > 0.7 else ''}")
    add(f"texts: {mix_summary(texts)}")
    add("")
    if sec1:
        bare = sec1["bare"]
        add("## 1. Webhook vs the durable floor and bare Flask")
        add("")
        if sec1["generator"] == "python":
            add("(Python load generator, wrk not installed or not chosen: it shares the 2 cores with the servers and "
                "caps the bare app's rate, which flatters the ratios; `apt-get install wrk` for the real figures.)")
            add("")
        add(f"`{gunicorn_command()}` for every server; load: {sec1['generator']}, {sec1['connections']} connections, "
            f"{sec1['seconds']} s per server after a {sec1['warm_seconds']} s warm-up, best of {sec1['rounds']} "
            f"round(s) (the round with more req/s; every round on fresh databases); every request a distinct "
            f"MessageSid and sender, signed for the app's HELPLINE_PUBLIC_URL; reply cap off. The durable floor "
            f"(bench/floor_app.py) is bare Flask plus one INSERT of the text (unique MessageSid) in its own "
            f"transaction, through the app's engine settings and driver: the price of storing a text before "
            f"answering. The webhook's targets are against the floor on the same database, in the same run.")
        add("")
        add("| server | req/s | p50 ms | p99 ms | errors | workers' CPU ms per request | vs bare: throughput "
            "| vs floor: throughput | vs floor: p99 |")
        add("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        add(f"| bare Flask, fixed TwiML | {bare.rps:,.0f} | {_ms(bare.p50_ms)} | {_ms(bare.p99_ms)} | {bare.errors} "
            f"| {_cpu(bare)} | 1.00x | | |")
        for key, name in (("sqlite", "SQLite"), ("postgres", "PostgreSQL")):
            r, floor = sec1.get(key), sec1["floor"].get(key)
            if r is None or floor is None:
                continue
            add(f"| durable floor, {name} | {floor.rps:,.0f} | {_ms(floor.p50_ms)} | {_ms(floor.p99_ms)} "
                f"| {floor.errors} | {_cpu(floor)} | {floor.rps / bare.rps:.2f}x | 1.00x | 1.0x |")
            tput, p99 = r.rps / floor.rps, r.p99_ms / floor.p99_ms
            add(f"| helpline webhook, {name} | {r.rps:,.0f} | {_ms(r.p50_ms)} | {_ms(r.p99_ms)} | {r.errors} "
                f"| {_cpu(r)} | {r.rps / bare.rps:.2f}x | {tput:.2f}x | {p99:.1f}x |")
            targets.append((f"1. webhook, {name}: throughput >= 0.7x the durable floor ({tput:.2f}x)", tput >= 0.7))
            targets.append((f"1. webhook, {name}: p99 <= 2x the durable floor's ({p99:.1f}x)", p99 <= 2.0))
        if "postgres_skipped" in sec1:
            add(f"| PostgreSQL | skipped: {sec1['postgres_skipped']} | | | | | | | |")
        notes = []
        if bare.wraps:
            notes.append(f"bare Flask went through the request pool {bare.wraps + 1} times (it ignores MessageSid)")
        for key, floor in sec1["floor"].items():
            if floor.wraps:
                notes.append(f"durable floor ({key}) went through the request pool {floor.wraps + 1} times: repeats "
                             f"are unique-key conflicts, not inserts")
        for key in ("sqlite", "postgres"):
            r = sec1.get(key)
            if r is not None:
                if r.wraps:
                    notes.append(f"{key}: the request pool ran out: MessageSids repeated (dedupe shortcut)")
                if r.stored is not None:
                    answered = r.requests + sec1["warm_done"][key]
                    lost = "  <- FEWER STORED THAN ANSWERED" if r.stored < answered else ""
                    notes.append(f"{key}: {r.stored:,} inbound messages stored for {answered:,} answered requests "
                                 f"(warm-up included; requests in flight when the load stops are stored but not "
                                 f"counted){lost}")
        for n in notes:
            add(f"- {n}")
        add("")
    if sec2:
        add("## 2. Triage throughput (Bot.decide, one process, no web, no database)")
        add("")
        add(f"dev corpus, {sec2[0].get('n_texts', '?')} texts per pass; each size in a fresh process; best of 5 "
            f"rounds per mode. Warm = per-token caches hot (the corpus repeated); cold = caches emptied before every "
            f"pass. The grown sizes are compared with the shipped content measured in the same process, in "
            f"alternating rounds."
            + (" The 100x bot is built while section 4 runs (its build time is inflated), then measured alone."
               if any(r.get("built_beside_memory") for r in sec2) else ""))
        add("")
        add("| content | topics | rules | concept terms | crisis vocab | build s | RSS MB | msgs/s warm | msgs/s cold "
            "| shipped, same process: warm / cold | per-message cost vs shipped: warm / cold | corpus verdicts changed |")
        add("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in sec2:
            name = "shipped" if r["factor"] == 1 else f"{r['factor']}x"
            if "error" in r:
                add(f"| {name} | {r['error']} | | | | | | | | | | |")
                continue
            ref_w, ref_c = r.get("ref_warm", r["warm"]), r.get("ref_cold", r["cold"])
            r["ratio_warm"], r["ratio_cold"] = ref_w / r["warm"], ref_c / r["cold"]
            same = "-" if r["factor"] == 1 else f"{ref_w:,.0f} / {ref_c:,.0f}"
            add(f"| {name} | {r['topics']:,} | {r['rules']:,} | {r['terms']:,} | {r['vocab']:,} | {r['build_s']:.1f} "
                f"| {r['rss_mb']:,.0f} | {r['warm']:,.0f} | {r['cold']:,.0f} | {same} "
                f"| {r['ratio_warm']:.2f}x / {r['ratio_cold']:.2f}x | {r['changed']} |")
        base = sec2[0]
        targets.append((f"2. >= 20,000 msgs/s with shipped content (warm {base['warm']:,.0f}, cold {base['cold']:,.0f})",
                        base["warm"] >= 20_000 and base["cold"] >= 20_000))
        big = next((r for r in sec2 if r["factor"] == 100 and "error" not in r), None)
        if big:
            wr, cr = big["ratio_warm"], big["ratio_cold"]
            targets.append((f"2. <= 1.5x slower per message at 100x content (warm {wr:.2f}x, cold {cr:.2f}x)",
                            wr <= 1.5 and cr <= 1.5))
        else:
            targets.append(("2. <= 1.5x slower per message at 100x content (not measured)", None))
        add("")
    if sec3:
        add("## 3. Page latency (crisis webhook request -> page at the fake Twilio)")
        add("")
        add(f"{sec3['n']} crisis texts (emergency/urgent lines of the dev corpus) from distinct numbers at "
            f"{sec3['rate']:.0f}/s on 4 connections; one on-call staff member; `helpline worker --interval 0.05`; "
            f"pages matched to requests by the masked number in the page.")
        add("")
        add("| pages matched | missing | duplicates | distinct escalations | p50 ms | p99 ms | max ms "
            "| webhook p50 / p99 ms |")
        add("|---:|---:|---:|---:|---:|---:|---:|---:|")
        add(f"| {sec3['matched']}/{sec3['n']} | {sec3['missing']} | {sec3['duplicates']} | {sec3['escalations']} "
            f"| {_ms(sec3['p50_ms'])} "
            f"| {_ms(sec3['p99_ms'])} | {_ms(sec3['max_ms'])} | {_ms(sec3['webhook_p50_ms'])} / "
            f"{_ms(sec3['webhook_p99_ms'])} |")
        targets.append((f"3. page p99 < 1 s ({_ms(sec3['p99_ms'])} ms, {sec3['missing']} missing, "
                        f"{sec3['duplicates']} duplicates)",
                        sec3["p99_ms"] < 1000 and sec3["missing"] == 0 and sec3["duplicates"] == 0))
        add("")
    if sec4:
        add("## 4. Memory of one gunicorn web worker")
        add("")
        add(f"`gunicorn app:app` with 1 worker (same class and threads), {sec4['total']:,} messages on 4 connections "
            f"in {sec4['seconds']:.0f} s; {sec4['stored']:,} stored, {sec4['errors']} errors; /proc/<worker>/status.")
        add("")
        add("| messages | VmRSS MB | VmHWM (peak) MB |")
        add("|---:|---:|---:|")
        for n, st in sec4["samples"]:
            add(f"| {n:,} | {st['VmRSS'] / 1024:.1f} | {st['VmHWM'] / 1024:.1f} |")
        s = dict(sec4["samples"])
        first, last = s.get(2000), s[sec4["total"]]
        peak = last["VmHWM"] / 1024
        targets.append((f"4. peak RSS < 150 MB after {sec4['total']:,} messages ({peak:.1f} MB)", peak < 150))
        if first:
            growth = last["VmRSS"] / first["VmRSS"] - 1
            per_msg = (last["VmRSS"] - first["VmRSS"]) / (sec4["total"] - 2000)  # kB per message
            targets.append((f"4. flat: RSS after {sec4['total']:,} within 10% of after 2,000 ({growth:+.1%}, "
                            f"{per_msg:+.2f} KB/message)", growth <= 0.10))
        add("")
    if sec5:
        add("## 5. Where one webhook request's time goes (in-process, one thread, no contention)")
        add("")
        add(f"{sec5['n']:,} signed requests through Flask's test client, SQLite, one on-call staff member; each stage "
            f"charged its own time: {sec5['ms_per_request']:.2f} ms per request "
            f"({1000 / sec5['ms_per_request']:,.0f} req/s on one thread). Under load see bench/profile_webhook.py.")
        add("")
        add("| stage | ms per request | share |")
        add("|---|---:|---:|")
        for label, ms, share in sec5["stages"]:
            add(f"| {label} | {ms:.3f} | {share:.1%} |")
        add("")
    add("## Targets")
    add("")
    for name, met in targets:
        add(f"- {_ok(met)}: {name}")
    return "\n".join(lines), targets


# --------------------------------------------------------------------------- main
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="short versions of every section (smoke test)")
    ap.add_argument("--postgres", action="store_true",
                    help="also run section 1 against PostgreSQL at 127.0.0.1:5432/test (fresh schema)")
    ap.add_argument("--only", choices=["webhook", "triage", "paging", "memory", "stages"], action="append",
                    help="run only these sections (repeatable)")
    ap.add_argument("--loadgen", choices=["auto", "wrk", "python"], default="auto",
                    help="section 1's load generator (auto: wrk when installed)")
    ap.add_argument("--out", help="also write the table (markdown) to this file")
    args = ap.parse_args()
    want = set(args.only or ["webhook", "triage", "paging", "memory", "stages"])

    def on_signal(signum, _frame):
        raise SystemExit(f"stopped by signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGALRM, on_signal)
    signal.alarm(SUITE_LIMIT)

    started = time.monotonic()
    info = machine_info()
    load_before = Path("/proc/loadavg").read_text().split()[0]
    texts = corpus()
    log(f"helpline bench{' --quick' if args.quick else ''}: {mix_summary(texts)}; load average {load_before}")
    seconds = 1.0 if args.quick else TRIAGE_SECONDS
    sec1 = sec3 = sec4 = sec5 = None
    sec2: list[dict] = []
    big: TriageChild | None = None
    with tempfile.TemporaryDirectory(prefix="helpline-bench-") as d:
        tmp = Path(d)
        failures: list[str] = []

        def attempt(name: str, fn):
            """Run one section; a failure is reported and the suite goes on."""
            try:
                return fn()
            except Exception as exc:
                failures.append(f"{name}: {type(exc).__name__}: {str(exc)[:1500]}")
                log(f"  FAILED: {failures[-1]}")
                return None

        def small_triage():
            for factor in (1, 10):
                child = TriageChild(factor, seconds, tmp)
                try:
                    r = child.expect("RESULT", timeout=120)
                finally:
                    child.stop()
                sec2.append(r)
                log(f"  x{factor}: {r['warm']:,.0f} msgs/s warm, {r['cold']:,.0f} cold (built in {r['build_s']:.1f}s)")

        def big_triage():
            ready = big.expect("READY", timeout=240)
            log(f"  x100 built in {ready['build_s']:.1f}s ({ready['rss_mb']:,.0f} MB); measuring")
            big.go()
            r = big.expect("RESULT", timeout=120)
            r["built_beside_memory"] = "memory" in want
            sec2.append(r)
            log(f"  x100: {r['warm']:,.0f} msgs/s warm, {r['cold']:,.0f} cold")

        try:
            if "triage" in want:
                log("2. triage throughput")
                attempt("2. triage", small_triage)
            if "stages" in want:
                log("5. webhook stages, in-process")
                sec5 = attempt("5. stages", lambda: stages.run(tmp, texts, args.quick, log))
            if "webhook" in want:
                log("1. webhook vs the durable floor and bare Flask")
                sec1 = attempt("1. webhook", lambda: webhook.throughput(tmp, texts, args.quick, args.postgres, log,
                                                                       args.loadgen))
            if "paging" in want:
                log("3. page latency")
                sec3 = attempt("3. paging", lambda: page_latency.run(tmp, texts, args.quick, log))
            if "triage" in want and sec2:
                # The 100x bot takes a while to build: it builds while section 4 (untimed) runs,
                # then it is measured alone.
                big = TriageChild(100, seconds, tmp, wait_go=True)
            if "memory" in want:
                log("4. memory")
                sec4 = attempt("4. memory", lambda: webhook.memory(tmp, texts, args.quick, log))
            if big is not None:
                log("2. triage throughput, 100x content")
                attempt("2. triage 100x", big_triage)
        finally:
            if big is not None:
                big.stop()
            if args.postgres:
                webhook.postgres_cleanup()
    load_after = Path("/proc/loadavg").read_text().split()[0]
    text, targets = report(info, args, texts, sec1, sec2, sec3, sec4, sec5, load_before, load_after)
    elapsed = time.monotonic() - started
    if failures:
        text += "\n\n## Sections that failed\n\n" + "\n".join(f"- {f}" for f in failures)
    text += f"\n\n{sum(1 for _, m in targets if m)}/{len(targets)} targets met; suite took {elapsed:.0f} s.\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    signal.alarm(0)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
