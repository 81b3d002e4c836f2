"""Section 3: from the crisis webhook request to the staff page arriving at a fake Twilio.

The real app runs under gunicorn (same command line as section 1), `helpline worker
--interval 0.05` runs as its own process, and `bench/fake_twilio.py` records when each page
arrives. Each crisis text comes from its own number whose last four digits are unique, so a
page ("... texter ***-0042 ...") is matched to its request by the masked number.
"""

from __future__ import annotations

import json
import random
import re
import sys
import time
import urllib.request
from pathlib import Path

import loadgen
from common import ACCOUNT_SID, BENCH, BIN, CLINIC_NUMBER, HOST, Procs, free_port, percentile, sign_all, wait_http
from webhook import start_app

_TEXTER = re.compile(r"texter \*\*\*-(\d{4})")
_ESC = re.compile(r"#(\d+)")
WARM_BASE = 9000  # last four digits of warm-up texters (not measured)


def _count(port: int) -> int:
    with urllib.request.urlopen(f"http://{HOST}:{port}/_count", timeout=2) as resp:
        return json.load(resp)["count"]


def _wait_pages(port: int, want: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    n = 0
    while time.monotonic() < deadline:
        n = _count(port)
        if n >= want:
            return n
        time.sleep(0.05)
    return n


def run(tmp: Path, texts, quick: bool, log) -> dict:
    n = 100 if quick else 200
    rate = 25.0  # crisis texts per second, open loop
    crisis = [t for t in texts if t.label in ("emergency", "urgent")]
    rng = random.Random(5)
    rng.shuffle(crisis)
    crisis = crisis[:n] if len(crisis) >= n else (crisis * (n // len(crisis) + 1))[:n]
    routine = [t for t in texts if t.label == "routine"]
    app_port, fake_port = free_port(), free_port()
    url = f"http://{HOST}:{app_port}/sms"
    reqs = sign_all(crisis, url, first=5_000_000, count=n, seed=6, sender_of=lambda i: f"+1555700{i - 5_000_000:04d}")
    warm = (sign_all(routine, url, first=5_100_000, count=30, seed=8)
            + sign_all(crisis, url, first=5_200_000, count=5, seed=9,
                       sender_of=lambda i: f"+1555700{WARM_BASE + i - 5_200_000:04d}"))
    pages_log = tmp / "pages.jsonl"
    with Procs() as procs:
        fake = procs.start("fake-twilio", [sys.executable, str(BENCH / "fake_twilio.py"), "--port", str(fake_port),
                                           "--log", str(pages_log), "--max-seconds", "300"],
                           {"PATH": "/usr/bin:/bin"}, tmp / "fake_twilio.log")
        wait_http(f"http://{HOST}:{fake_port}/_count", fake, tmp / "fake_twilio.log", timeout=15)
        extra = dict(TWILIO_ACCOUNT_SID=ACCOUNT_SID, TWILIO_PHONE_NUMBER=CLINIC_NUMBER,
                     HELPLINE_TWILIO_API_URL=f"http://{HOST}:{fake_port}")
        srv = start_app(procs, tmp, app_port, "app-paging", **extra)
        procs.start("worker", [str(BIN / "helpline"), "worker", "--interval", "0.05"], srv.env, tmp / "worker.log")
        # Warm both web workers and the worker's sending path; those pages are not measured.
        loadgen.run_pool(app_port, warm, connections=4)
        got = _wait_pages(fake_port, 5, timeout=20)
        if got < 5:
            raise RuntimeError(f"warm-up pages did not arrive ({got}/5); see {tmp / 'worker.log'}")
        sent_at: dict[str, float] = {}
        res = loadgen.run_pool(app_port, reqs, connections=4, pace=rate, sent_at=sent_at)
        total = _wait_pages(fake_port, 5 + n, timeout=30)
    texter_sent = {r.sender[-4:]: sent_at.get(r.sid) for r in reqs}
    arrivals: dict[str, list[float]] = {}
    escalations = set()
    for line in pages_log.read_text().splitlines():
        page = json.loads(line)
        m = _TEXTER.search(page.get("body") or "")
        if not m or int(m.group(1)) >= WARM_BASE:
            continue
        arrivals.setdefault(m.group(1), []).append(page["t"])
        e = _ESC.search(page["body"])
        if e:
            escalations.add(e.group(1))
    lat = []
    for last4, sent in texter_sent.items():
        if sent is not None and arrivals.get(last4):
            lat.append(min(arrivals[last4]) - sent)
    dup = sum(len(v) - 1 for v in arrivals.values() if len(v) > 1)
    missing = n - len(lat)
    log(f"  paging: {len(lat)}/{n} pages matched, {dup} duplicate(s), webhook errors {res.errors}")
    return {"n": n, "rate": rate, "matched": len(lat), "missing": missing, "duplicates": dup,
            "escalations": len(escalations), "webhook_errors": res.errors,
            "p50_ms": percentile(lat, 50) * 1000, "p99_ms": percentile(lat, 99) * 1000,
            "max_ms": max(lat) * 1000 if lat else float("nan"),
            "webhook_p50_ms": res.p50_ms, "webhook_p99_ms": res.p99_ms, "pages_seen": total}
