"""Drive a server with precomputed signed webhooks: wrk when installed, else a Python pool.

Both are closed-loop at a fixed concurrency for a fixed time; both report requests/s and
p50/p99 latency of the requests that completed in the timed window.
"""

from __future__ import annotations

import http.client
import itertools
import json
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from common import BENCH, HOST, SignedRequest, percentile

WRK = shutil.which("wrk")
WRK_THREADS = 1  # one wrk thread keeps the load generator's CPU small on a 2-core machine


@dataclass
class LoadResult:
    tool: str
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int = 0  # connection errors, timeouts and non-2xx answers
    wraps: int = 0  # times the request pool was reused (repeated MessageSids)
    statuses: dict[int, int] = field(default_factory=dict)
    stored: int | None = None  # inbound messages the app stored (real app only)
    cpu_ms: float | None = None  # the server's workers' CPU (user + system) per answered request

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


# --------------------------------------------------------------------------- wrk
def write_wrk_pool(reqs: list[SignedRequest], prefix: Path, threads: int = WRK_THREADS) -> Path:
    """One file per wrk thread: ``signature<TAB>body`` per line."""
    for t in range(threads):
        with open(f"{prefix}.{t}", "w", encoding="ascii") as fh:
            for r in reqs[t::threads]:
                fh.write(f"{r.signature}\t{r.body.decode('ascii')}\n")
    return prefix


def run_wrk(port: int, prefix: Path, seconds: float, connections: int,
            threads: int = WRK_THREADS) -> LoadResult:
    args = [WRK, "-t", str(threads), "-c", str(connections), "-d", f"{max(1, round(seconds))}s",
            "--timeout", "10s", "-s", str(BENCH / "wrk_post.lua"), f"http://{HOST}:{port}/sms", "--", str(prefix)]
    res = subprocess.run(args, capture_output=True, text=True, timeout=seconds + 60)
    line = next((ln for ln in res.stdout.splitlines() if ln.startswith("WRKJSON ")), None)
    if res.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({res.returncode}): {res.stdout[-1500:]} {res.stderr[-1500:]}")
    d = json.loads(line[len("WRKJSON "):])
    errors = d["connect"] + d["read"] + d["write"] + d["status"] + d["timeout"]
    return LoadResult("wrk", d["requests"], d["duration_us"] / 1e6, d["p50_us"] / 1000, d["p99_us"] / 1000,
                      errors=errors, wraps=d["wraps"])


# --------------------------------------------------------------------------- Python
class _Client:
    """One keep-alive connection; reconnects when the server closes it."""

    def __init__(self, port: int):
        self.port = port
        self.conn: http.client.HTTPConnection | None = None

    def post(self, req: SignedRequest, path: str = "/sms") -> tuple[int, bytes]:
        headers = {"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": req.signature}
        for attempt in (0, 1):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(HOST, self.port, timeout=10)
            try:
                self.conn.request("POST", path, body=req.body, headers=headers)
                resp = self.conn.getresponse()
                data = resp.read()
                if resp.getheader("Connection", "").lower() == "close":
                    self.close()
                return resp.status, data
            except (ConnectionError, http.client.HTTPException):
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def run_pool(port: int, reqs: list[SignedRequest], connections: int, seconds: float | None = None,
             count: int | None = None, pace: float | None = None,
             sent_at: dict[str, float] | None = None, repeat: bool = False) -> LoadResult:
    """Send from ``reqs`` in order on ``connections`` threads until ``seconds`` pass or ``count`` are sent.

    ``pace``: at most this many requests per second in total (open-loop schedule, for paging).
    ``sent_at``: filled with wall-clock send time per MessageSid.
    ``repeat``: cycle through the pool (for the bare app, which ignores MessageSid); otherwise a
    run that exhausts the pool stops early rather than repeat a MessageSid, and says so.
    """
    limit = min(count if count is not None else len(reqs), len(reqs))
    if repeat and count is None:
        limit = 1 << 62
    wraps = 0
    nxt = itertools.count()
    lat: list[float] = []
    statuses: dict[int, int] = {}
    errors = [0]
    lock = threading.Lock()
    t0 = time.perf_counter()
    stop_at = t0 + seconds if seconds is not None else None
    hard_stop = t0 + (seconds or 0) + 300  # bound every run whatever happens

    def worker():
        client = _Client(port)
        try:
            while True:
                i = next(nxt)
                if i >= limit:
                    return
                now = time.perf_counter()
                if (stop_at is not None and now >= stop_at) or now >= hard_stop:
                    return
                if pace:
                    due = t0 + i / pace
                    if due > now:
                        time.sleep(due - now)
                req = reqs[i % len(reqs)]
                if sent_at is not None:
                    sent_at[req.sid] = time.time()
                start = time.perf_counter()
                try:
                    status, _ = client.post(req)
                except OSError:
                    with lock:
                        errors[0] += 1
                    continue
                took = time.perf_counter() - start
                with lock:
                    lat.append(took)
                    statuses[status] = statuses.get(status, 0) + 1
                    if not 200 <= status < 400:
                        errors[0] += 1
        finally:
            client.close()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=(seconds or 0) + 330)
    elapsed = time.perf_counter() - t0
    if repeat:
        wraps = (len(lat) + errors[0]) // len(reqs)
    elif count is None and len(lat) + errors[0] >= limit:
        wraps = 1  # the pool ran out before the time did: the figure is a lower bound
    return LoadResult("python", len(lat), elapsed, percentile(lat, 50) * 1000, percentile(lat, 99) * 1000,
                      errors=errors[0], wraps=wraps, statuses=statuses)
