"""Where webhook time goes: py-spy samples of the real gunicorn workers under the section-1 load.

    .venv/bin/pip install py-spy   # once; not a project dependency
    .venv/bin/python bench/profile_webhook.py [--seconds 8] [--postgres] [--keep DIR]

Starts the app exactly as `bench/run.py` does (same gunicorn command, SQLite in a temporary
instance folder, signed realistic requests from distinct senders), drives it with wrk or the
Python generator, and samples both workers twice: once for CPU (py-spy's default, running
threads only) and once for wall time (``--idle``: also threads waiting on locks and sockets).
Each sample is charged to the innermost frame that names a stage of the request.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import loadgen
from common import HOST, Procs, children, corpus, free_port, sign_all
from webhook import PG_URL, postgres_problem, start_app

# (stage, substrings of a py-spy frame); the innermost frame that matches decides.
STAGES = [
    ("triage (crisis rules + second net)", ("Triager.triage", "Bot.triage ")),
    ("topic matching", ("TopicMatcher.",)),
    ("language detection", ("LanguageDetector.",)),
    ("Bot.decide, rest", ("Bot.decide",)),
    ("signature validation", ("RequestValidator.", "signature_matches")),
    ("form parsing (werkzeug)", ("formparser.py", "Request.form", "_load_form_data")),
    ("TwiML rendering", ("twiml (",)),
    ("logging", ("logging/__init__.py",)),
    ("paging (page text, recipients)", ("enqueue_round", "page_text", "recipients (", "page_rows (")),
    ("DB transaction", ("Helpline.handle", "Helpline._")),
    ("Flask/Werkzeug dispatch", ("Flask.__call__",)),
]
# Within the DB transaction: time inside the driver (SQL execution, commit, lock waits) vs the ORM.
DRIVER = "DB: driver (SQL execution, round trips, lock waits)"
DRIVER_LEAVES = ("do_execute", "do_commit", "do_ping", "do_rollback", "do_begin", "_ConnectionFairy.cursor",
                 "Connection.__init__", "connect (")


# Leaves where a thread waits although py-spy's --nonblocking sampling may call it active.
WAIT_LEAVES = ("EpollSelector.select", "_PollLikeSelector.select", "Condition.wait", "Event.wait",
               "_worker (concurrent/futures/thread.py")


def stage_of(frames: list[str]) -> str:
    for frame in reversed(frames):
        for name, keys in STAGES:
            if any(k in frame for k in keys):
                if name == "DB transaction":
                    leaf = frames[-1]
                    in_driver = any(k in leaf for k in DRIVER_LEAVES) or any("psycopg/" in f for f in frames)
                    return DRIVER if in_driver else "DB: SQLAlchemy ORM/Core (Python)"
                return name
    return "gunicorn (HTTP parse, sockets, threads)"


def aggregate(paths: list[Path], only: str | None = None,
              skip_waits: bool = False) -> tuple[collections.Counter, collections.Counter, int]:
    """Samples per stage (and per line of Helpline._handle_stored); ``only``: stacks containing it."""
    stages: collections.Counter = collections.Counter()
    lines: collections.Counter = collections.Counter()  # lines of Helpline._handle_stored
    total = 0
    for path in paths:
        for raw in path.read_text().splitlines():
            stack, _, n = raw.rpartition(" ")
            if not stack or not n.isdigit():
                continue
            if only and only not in stack:
                continue
            frames = stack.split(";")
            if skip_waits and any(k in frames[-1] for k in WAIT_LEAVES):
                continue
            count = int(n)
            total += count
            stages[stage_of(frames)] += count
            for i, f in enumerate(frames):
                if "Helpline._handle_stored" in f:
                    lines[f.split("(")[-1].rstrip(")") + " -> " + (frames[i + 1].split(" (")[0] if i + 1 < len(frames) else "")] += count
    return stages, lines, total


def table(title: str, stages: collections.Counter, total: int) -> str:
    out = [f"{title} ({total} samples)", "", "| stage | share |", "|---|---:|"]
    for name, n in stages.most_common():
        out.append(f"| {name} | {100 * n / total:.1f}% |")
    return "\n".join(out)


def record(pids: list[int], seconds: float, rate: int, idle: bool, out: Path, spy: str) -> list[subprocess.Popen]:
    procs = []
    for pid in pids:
        args = [spy, "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", str(rate),
                "--format", "raw", "--nonblocking", "--output", str(out / f"{'wall' if idle else 'cpu'}-{pid}.txt")]
        if idle:
            args.append("--idle")
        procs.append(subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
    return procs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=8)
    ap.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    ap.add_argument("--postgres", action="store_true", help="DATABASE_URL=PostgreSQL (fresh schema)")
    ap.add_argument("--connections", type=int, default=8, help="load concurrency (1: no lock contention)")
    ap.add_argument("--workers", type=int, default=None, help="gunicorn workers (default: as bench/run.py)")
    ap.add_argument("--keep", help="copy the raw py-spy files here")
    args = ap.parse_args()
    spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if not spy:
        sys.exit("py-spy is not installed: .venv/bin/pip install py-spy")
    texts = corpus()
    gen = "wrk" if loadgen.WRK else "python"
    with tempfile.TemporaryDirectory(prefix="helpline-profile-") as d:
        tmp = Path(d)
        port = free_port()
        url = f"http://{HOST}:{port}/sms"
        reqs = sign_all(texts, url, first=7_000_000, count=20_000, seed=12)
        pool = loadgen.write_wrk_pool(reqs, tmp / "pool") if gen == "wrk" else reqs
        db_url = None
        if args.postgres:
            problem = postgres_problem()
            if problem:
                sys.exit(problem)
            db_url = PG_URL
        with Procs() as procs:
            srv = start_app(procs, tmp, port, "app-profile", database_url=db_url, workers=args.workers)
            pids = children(srv.proc.pid)
            for idle in (False, True):
                spies = record(pids, args.seconds, args.rate, idle, tmp, spy)
                time.sleep(0.5)
                if gen == "wrk":
                    res = loadgen.run_wrk(port, pool, args.seconds, args.connections)
                else:
                    res = loadgen.run_pool(port, pool, args.connections, seconds=args.seconds)
                print(f"{'wall' if idle else 'cpu'} pass: {res.rps:,.0f} req/s, p50 {res.p50_ms:.1f} ms, "
                      f"p99 {res.p99_ms:.1f} ms (sampling slows the app a little)")
                for p in spies:
                    try:
                        p.wait(timeout=args.seconds + 30)
                    except subprocess.TimeoutExpired:
                        p.kill()
                if gen == "wrk":  # the next pass must not repeat MessageSids
                    reqs = sign_all(texts, url, first=8_000_000, count=20_000, seed=13)
                    pool = loadgen.write_wrk_pool(reqs, tmp / "pool2")
                else:
                    pool = sign_all(texts, url, first=8_000_000, count=20_000, seed=13)
        cpu, _, cpu_total = aggregate(sorted(tmp.glob("cpu-*.txt")), skip_waits=True)
        # Wall time of threads serving a request (idle pool threads and the poller left out).
        wall, lines, wall_total = aggregate(sorted(tmp.glob("wall-*.txt")), only="ThreadWorker.handle ")
        print(f"database: {'PostgreSQL' if db_url else 'SQLite'}; load: {gen}, {args.connections} connections; "
              f"{len(pids)} workers sampled at {args.rate}/s for {args.seconds:.0f}s per pass\n")
        print(table("CPU (running threads only)", cpu, cpu_total))
        print()
        print(table("Wall time of threads serving a request (including lock and I/O waits)", wall, wall_total))
        print("\nWall time by line of Helpline._handle_stored (service.py line -> callee):\n")
        handled = sum(lines.values())
        for key, n in lines.most_common(12):
            print(f"  {100 * n / handled:5.1f}%  {key}")
        if args.keep:
            dst = Path(args.keep)
            dst.mkdir(parents=True, exist_ok=True)
            for f in tmp.glob("*-*.txt"):
                shutil.copy(f, dst / f.name)


if __name__ == "__main__":
    main()
