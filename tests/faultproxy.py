"""A TCP proxy on 127.0.0.1 in front of PostgreSQL that can refuse, hang and recover.

- ``up``: bytes flow both ways.
- ``refuse``: the listening socket is closed (new connections get ECONNREFUSED) and every open
  connection is reset, as when the database host goes away.
- ``hang``: new connections are accepted and existing ones stay open, but nothing is forwarded
  in either direction: a database that accepts and never answers (a network black hole, a
  stuck server). On recovery the hung connections are reset (their clients have given up).

Also SQLite faults for the same tests: the database file made unwritable (``chattr +i``; root
ignores permission bits) and the write lock held by another process.
"""

from __future__ import annotations

import shutil
import socket
import sqlite3
import struct
import subprocess
import threading
from pathlib import Path

UP, REFUSE, HANG = "up", "refuse", "hang"


class FaultProxy:
    """Forward 127.0.0.1:<port> to ``target``; switch faults with :meth:`set`."""

    def __init__(self, target: tuple[str, int] = ("127.0.0.1", 5432)):
        self.target = target
        self.mode = UP
        self._cond = threading.Condition()
        self._conns: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self._listen()

    # -- control -------------------------------------------------------------------------
    def set(self, mode: str) -> None:
        """Switch to ``up``, ``refuse`` or ``hang``."""
        with self._cond:
            previous, self.mode = self.mode, mode
            # Connections that sat through a hang are dead to their clients; taken in the same lock as
            # the switch, so one accepted during the hang cannot slip through unreset.
            stale, self._conns = (list(self._conns), set()) if previous == HANG and mode != HANG else ([], self._conns)
            self._cond.notify_all()
        for conn in stale:
            _reset(conn)
        if mode == REFUSE:
            self._close_listener()
            self._reset_all()
        elif previous == REFUSE:
            self._listen()

    def close(self) -> None:
        self.set(REFUSE)

    # -- plumbing ------------------------------------------------------------------------
    def _listen(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(128)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _close_listener(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            try:
                listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            listener.close()

    def _reset_all(self) -> None:
        with self._cond:
            conns, self._conns = list(self._conns), set()
            self._cond.notify_all()
        for conn in conns:
            _reset(conn)

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            with self._cond:
                self._conns.add(client)
                hang = self.mode == HANG
            if hang:
                continue  # accepted, never answered
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                _reset(client)
                continue
            with self._cond:
                self._conns.add(upstream)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                with self._cond:
                    while self.mode == HANG and src in self._conns:
                        self._cond.wait()  # hold the bytes: nothing gets through
                    if src not in self._conns:
                        break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with self._cond:
                self._conns.discard(src)
                self._conns.discard(dst)
            _reset(src)
            _reset(dst)


def _reset(sock: socket.socket) -> None:
    """Close with RST, as a vanished host's kernel would.

    Shut down first: close() alone leaves a socket open while another thread is blocked in recv()
    on it, and the client would never hear of it.
    """
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


# -- SQLite faults ------------------------------------------------------------------------------

def can_make_unwritable() -> bool:
    """Whether ``chattr`` works here (root on ext4 and the like)."""
    return shutil.which("chattr") is not None


def unwritable(path: Path, on: bool) -> None:
    """Make a SQLite database file (and its WAL) unwritable, or writable again.

    ``chattr +i``: even root cannot write, and writes through descriptors already open fail too
    (open connections get "disk I/O error", new ones "attempt to write a readonly database").
    The ``-shm`` index stays writable: it is memory-mapped, and SQLite needs it to read at all.
    """
    for f in (path, path.with_name(path.name + "-wal")):
        if f.exists():
            subprocess.run(["chattr", "+i" if on else "-i", str(f)], check=True, capture_output=True)


class WriteLockHolder:
    """Another process's connection that takes SQLite's write lock and keeps it: writers wait, then fail."""

    def __init__(self, path: Path):
        self.conn = sqlite3.connect(path, timeout=10, isolation_level=None, check_same_thread=False)

    def hold(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")

    def release(self) -> None:
        self.conn.execute("ROLLBACK")

    def close(self) -> None:
        self.conn.close()


class DatabaseFault:
    """One switch for a database fault: PostgreSQL through a FaultProxy, or a SQLite file.

    ``set(REFUSE)`` refuses connections (SQLite: the file made unwritable), ``set(HANG)`` leaves
    requests waiting (SQLite: another connection holds the write lock); ``recover()`` undoes either.
    """

    def __init__(self, proxy: FaultProxy | None, sqlite_file: Path):
        self.proxy = proxy
        self.sqlite_file = sqlite_file
        self.lock: WriteLockHolder | None = None
        self.frozen = False

    def set(self, mode: str) -> None:
        if mode == UP:
            self.recover()
        elif self.proxy is not None:
            self.proxy.set(mode)
        elif mode == HANG:
            self.lock = WriteLockHolder(self.sqlite_file)
            self.lock.hold()
        else:
            unwritable(self.sqlite_file, True)
            self.frozen = True

    def recover(self) -> None:
        if self.proxy is not None:
            self.proxy.set(UP)
        if self.lock is not None:
            self.lock.release()
            self.lock.close()
            self.lock = None
        if self.frozen:
            unwritable(self.sqlite_file, False)
            self.frozen = False
