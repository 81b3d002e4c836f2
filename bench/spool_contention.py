"""The outage spool under contention: how long the slowest append waits (not part of `make bench`).

`.venv/bin/python bench/spool_contention.py [--runs N] [--root DIR]`: 4 threads and 3 processes
append 150 texts each to one journal while 3 replayer threads take the lease and delete what they
find, as web workers do during an outage. An append that waits 10 s gives up (the text would not be
spooled), so the slowest append is the figure. ``--root`` runs another checkout's ``bot`` (to
compare before and after a change); run it beside busy loops to see it under CPU load.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone

APPENDERS_THREADS, APPENDER_PROCESSES, REPLAYERS, PER_APPENDER = 4, 3, 3, 150


def _append(root: str, path: str, prefix: str, n: int, out) -> None:
    sys.path.insert(0, root)
    from bot.core.engine import Inbound
    from bot.store.spool import Spool

    spool, worst, failed = Spool(path), 0.0, 0
    for i in range(n):
        started = time.monotonic()
        ok = spool.append(Inbound(sender=f"+1555{prefix}{i:05d}", body="x", message_id=f"SM{prefix}{i:029d}"),
                          datetime.now(timezone.utc))
        failed += not ok
        worst = max(worst, time.monotonic() - started)
    out.put((worst, failed))


def _replay(path: str, stop: threading.Event, name: str) -> None:
    from bot.store.spool import Spool

    spool = Spool(path)
    while not stop.is_set():
        if spool.lease(name, wait=0.2, ttl=1):
            entry = spool.next_pending()
            while entry is not None and not stop.is_set():
                spool.delete(entry.id)
                entry = spool.next_pending(entry.id)
            spool.release(name)


def run_once(root: str) -> tuple[float, float, int]:
    """(seconds, slowest append in seconds, appends that failed) for one run in a fresh journal."""
    sys.path.insert(0, root)
    from bot.store.spool import Spool

    path = os.path.join(tempfile.mkdtemp(prefix="spool-bench-"), "spool.sqlite3")
    Spool(path).counts()
    ctx = multiprocessing.get_context("spawn")
    results, stop = ctx.Queue(), threading.Event()
    procs = [ctx.Process(target=_append, args=(root, path, f"9{p}", PER_APPENDER, results))
             for p in range(APPENDER_PROCESSES)]
    threads = [threading.Thread(target=_append, args=(root, path, f"8{t}", PER_APPENDER, results))
               for t in range(APPENDERS_THREADS)]
    replayers = [threading.Thread(target=_replay, args=(path, stop, f"r{r}")) for r in range(REPLAYERS)]
    started = time.monotonic()
    for worker in (*procs, *threads, *replayers):
        worker.start()
    got = [results.get(timeout=120) for _ in range(APPENDER_PROCESSES + APPENDERS_THREADS)]
    for worker in (*procs, *threads):
        worker.join(60)
    stop.set()
    for worker in replayers:
        worker.join(60)
    return time.monotonic() - started, max(w for w, _ in got), sum(f for _, f in got)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--root", default=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    args = parser.parse_args()
    for _ in range(args.runs):
        took, worst, failed = run_once(os.path.abspath(args.root))
        print(f"{took:5.1f} s, slowest append {worst * 1000:6.0f} ms, appends that failed: {failed}")


if __name__ == "__main__":
    main()
