"""Waiting for a file lock without sleeping through the moments it is free."""

from __future__ import annotations

import fcntl
import time
from typing import Callable


def poll_flock(fd: int, left: Callable[[], float | None]) -> bool:
    """Lock ``fd`` exclusively (``flock``), trying every 50 us to 1 ms while ``left()`` seconds remain
    (None: no bound); whether it was won.

    A blocked SQLite writer sleeps in its busy handler (1, 2, 5 ... 100 ms) and the lock often sits
    free meanwhile; polling a file lock this often hands it over within a millisecond instead. Used by
    the SQLite writer lock (``bot.store.db.WriterFile``) and the outage spool's gate.
    """
    pause = 0.00005
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            remaining = left()
            if remaining is not None and remaining <= 0:
                return False
            time.sleep(pause if remaining is None else min(pause, remaining))
            pause = min(pause * 2, 0.001)
