"""A local journal for messages the database could not take: nothing in it is lost or stranded.

When storage fails, the message (and so any escalation it carries) is written here before the
texter is answered, then replayed into the database once it answers again. The journal is a
SQLite file of its own (``instance/spool.sqlite3``, synchronous=FULL: each entry is fsync'd),
so any number of threads and processes on one host append and replay safely: every entry is
one row, appended in its own transaction and deleted only after the database has stored it.

- **Order:** entries are replayed one at a time, oldest first, by one replayer at a time (a
  lease row in the journal).
- **Exactly once:** an entry keeps its MessageSid; a Twilio retry during the outage is not
  journalled twice, and a replay of a message the database did store (the answer was lost,
  say) is a duplicate the service recognises and skips.
- **Dead letters:** an entry that fails ``DEAD_AFTER`` times for a reason other than the
  outage (a value the database refuses) is set aside as dead, so it cannot block the entries
  behind it. ``/healthz``, the dashboard banner and ``helpline check`` count dead letters;
  ``helpline spool`` lists, shows and retries them.
- **Limits during an outage:** ``hit`` counts events per (limit, keyed subject) in the journal, so
  unstored messages count toward the flood limits even while the database is down.

The file lives in the instance folder, beside the SQLite database, with the same protection
(mode 0600). A ``spool.jsonl`` left by an older release is imported on first use.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import sqlite3
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterable, Sequence

from bot.core.engine import Inbound
from bot.store.flock import poll_flock

logger = logging.getLogger(__name__)

DEAD_AFTER = 3  # tries that fail for a reason other than the outage
LEASE_SECONDS = 30.0
HITS_KEPT = timedelta(days=1)
GATE_WAIT = 10.0  # seconds a write waits for the gate before it queues in SQLite's own busy handler
PENDING, DEAD = "pending", "dead"
_INBOUND_FIELDS = {f.name for f in fields(Inbound)}

SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id TEXT UNIQUE,
    sender TEXT NOT NULL,
    received_at TEXT NOT NULL,
    payload TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    severity TEXT
);
CREATE INDEX IF NOT EXISTS entries_state ON entries (state, id);
CREATE INDEX IF NOT EXISTS entries_sender ON entries (sender, state);
CREATE TABLE IF NOT EXISTS hits (name TEXT NOT NULL, key TEXT NOT NULL, at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS hits_key ON hits (name, key, at);
CREATE TABLE IF NOT EXISTS lease (name TEXT PRIMARY KEY, holder TEXT, until REAL NOT NULL DEFAULT 0);
INSERT OR IGNORE INTO lease (name, holder, until) VALUES ('replay', NULL, 0);
"""


@dataclass(frozen=True)
class Entry:
    """One journalled message: what arrived, when, the caller's limits it counted against, how replay went."""

    id: int
    msg: Inbound
    received_at: datetime
    limits: tuple[tuple[str, int, float, str], ...]  # (limit name, max, window seconds, subject)
    state: str
    attempts: int
    error: str | None
    severity: str | None  # the core's verdict, noted when a try fails: a dead letter may be a crisis


@dataclass(frozen=True)
class Counts:
    """What the journal holds: waiting entries, dead letters (and how many of them escalate), the oldest wait."""

    pending: int
    dead: int
    oldest_pending: datetime | None
    dead_crises: int = 0


def _sender(address: str) -> str:
    # ASCII always (a lone surrogate must not stop a message from being journalled).
    return json.dumps(address)


def _age(path: Path) -> float:
    try:
        return time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


def _iso(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).isoformat()


class Spool:
    """The journal file; one SQLite connection per thread, opened on first use."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self.legacy = self.path.with_name("spool.jsonl")
        self._local = threading.local()

    # -- connection ----------------------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            return conn
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=10, isolation_level=None)
        # chmod, never open()+close(): closing any descriptor of the file drops this process's SQLite locks.
        os.chmod(self.path, 0o600)
        self._local.conn, self._local.pid, self._local.gate, self._local.depth = conn, os.getpid(), None, 0
        with self._gate():
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")  # an entry is on disk before the texter is answered
            conn.executescript(SCHEMA)
            self._import_legacy(conn)
        return conn

    @contextmanager
    def _gate(self):
        """Take the journal's writer gate: a file lock beside it, one holder across threads and processes.

        SQLite alone makes a writer that finds the journal locked sleep in its busy handler (1, 2, 5 ...
        100 ms), and under load writers that keep arriving can take the lock every time it falls free
        while an append sleeps, until its timeout passes and a text is not spooled. Waiting here polls
        every 50 us to 1 ms instead. Reentrant within a thread; a gate that cannot be opened, or is not
        won in ``GATE_WAIT`` seconds, leaves the write to SQLite's own lock, which is what keeps it correct.
        """
        local = self._local
        if local.depth:
            local.depth += 1
            try:
                yield
            finally:
                local.depth -= 1
            return
        fd = self._gate_fd()
        deadline = time.monotonic() + GATE_WAIT
        held = fd is not None and poll_flock(fd, lambda: deadline - time.monotonic())
        if fd is not None and not held:
            logger.warning("spool gate not won in %.0f s: this write queues in SQLite's busy handler", GATE_WAIT)
        local.depth = 1
        try:
            yield
        finally:
            local.depth = 0
            if held:
                fcntl.flock(fd, fcntl.LOCK_UN)

    def _gate_fd(self) -> int | None:
        # One descriptor per thread: flock locks belong to an open file, so threads of one process exclude
        # each other only through descriptors of their own.
        if getattr(self._local, "gate", None) is None:
            try:
                # A file object, so the descriptor closes when the thread's state goes.
                self._local.gate = open(f"{self.path}-gate", "ab", opener=lambda p, f: os.open(p, f, 0o600))
            except OSError as exc:
                logger.warning("spool gate unavailable (%s): writers queue in SQLite's busy handler",
                               type(exc).__name__)
                return None
        return self._local.gate.fileno()

    def _write(self, sql: str, params: Sequence = ()) -> sqlite3.Cursor:
        conn = self._conn()
        with self._gate():
            return conn.execute(sql, params)

    # -- appending -----------------------------------------------------------------------
    def append(self, msg: Inbound, received_at: datetime, limits: Iterable[tuple[str, int, float, str]] = ()) -> bool:
        """Durably record one message (once per MessageSid); False if even that failed."""
        payload = json.dumps({**asdict(msg), "limits": [list(x) for x in limits]})  # ASCII: surrogates survive
        try:
            self._write("INSERT OR IGNORE INTO entries (message_id, sender, received_at, payload) VALUES (?, ?, ?, ?)",
                        (msg.message_id, _sender(msg.sender), _iso(received_at), payload))
            return True
        except (OSError, sqlite3.Error):
            logger.critical("could not write the spool %s either", self.path, exc_info=True)
            return False

    def hit(self, name: str, key: str, window: timedelta, now: datetime) -> int:
        """Count one event for (limit, keyed subject); returns the events in the window ending now."""
        at = now.timestamp()
        conn = self._conn()
        with self._gate():
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute("INSERT INTO hits (name, key, at) VALUES (?, ?, ?)", (name, key, at))
                count = conn.execute("SELECT count(*) FROM hits WHERE name = ? AND key = ? AND at > ?",
                                     (name, key, at - window.total_seconds())).fetchone()[0]
                conn.execute("DELETE FROM hits WHERE at < ?", (at - HITS_KEPT.total_seconds(),))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return count

    # -- reading -------------------------------------------------------------------------
    def pending(self, sender: str | None = None) -> bool:
        """Whether anything (from this sender) waits to be replayed."""
        try:
            if sender is None:
                row = self._conn().execute("SELECT 1 FROM entries WHERE state = ? LIMIT 1", (PENDING,)).fetchone()
            else:
                row = self._conn().execute("SELECT 1 FROM entries WHERE sender = ? AND state = ? LIMIT 1",
                                           (_sender(sender), PENDING)).fetchone()
        except sqlite3.Error:
            logger.exception("could not read the spool %s", self.path)
            return False
        return row is not None

    def counts(self) -> Counts:
        """Pending and dead entries, and when the oldest pending one arrived."""
        rows = dict(self._conn().execute("SELECT state, count(*) FROM entries GROUP BY state").fetchall())
        oldest = self._conn().execute("SELECT min(received_at) FROM entries WHERE state = ?", (PENDING,)).fetchone()[0]
        crises = self._conn().execute("SELECT count(*) FROM entries WHERE state = ? AND severity IS NOT NULL",
                                      (DEAD,)).fetchone()[0] if rows.get(DEAD) else 0
        return Counts(rows.get(PENDING, 0), rows.get(DEAD, 0), datetime.fromisoformat(oldest) if oldest else None,
                      crises)

    def next_pending(self, after: int = 0) -> Entry | None:
        """The oldest pending entry after id ``after``."""
        row = self._conn().execute("SELECT * FROM entries WHERE state = ? AND id > ? ORDER BY id LIMIT 1",
                                   (PENDING, after)).fetchone()
        return self._entry(row) if row else None

    def entry(self, entry_id: int) -> Entry | None:
        row = self._conn().execute("SELECT * FROM entries WHERE id = ?", (entry_id,)).fetchone()
        return self._entry(row) if row else None

    def entries(self, state: str | None = None) -> list[Entry]:
        """Every entry (in one state), oldest first."""
        if state is None:
            rows = self._conn().execute("SELECT * FROM entries ORDER BY id").fetchall()
        else:
            rows = self._conn().execute("SELECT * FROM entries WHERE state = ? ORDER BY id", (state,)).fetchall()
        return [self._entry(r) for r in rows]

    @staticmethod
    def _entry(row) -> Entry:
        entry_id, _, _, received_at, payload, state, attempts, error, severity = row
        data = json.loads(payload)
        limits = tuple(tuple(x) for x in data.pop("limits", []))
        msg = Inbound(**{k: v for k, v in data.items() if k in _INBOUND_FIELDS})
        return Entry(entry_id, msg, datetime.fromisoformat(received_at), limits, state, attempts, error, severity)

    # -- replaying -----------------------------------------------------------------------
    def lease(self, holder: str, wait: float = 0.0, ttl: float = LEASE_SECONDS) -> bool:
        """Become the one replayer (renews a lease already held); waits up to ``wait`` seconds."""
        deadline = time.monotonic() + wait
        while True:
            now = time.time()
            # Look before taking the write lock: replayers polling a lease someone else holds must not
            # queue for the lock every 50 ms, or a webhook's append waiting behind them can starve past
            # its timeout (seen under load: "database is locked", a text not spooled). The UPDATE still
            # decides, atomically.
            row = self._conn().execute("SELECT holder, until FROM lease WHERE name = 'replay'").fetchone()
            won = 0
            if row is not None and (row[1] < now or row[0] == holder):
                won = self._write("UPDATE lease SET holder = ?, until = ? WHERE name = 'replay' AND "
                                  "(until < ? OR holder = ?)", (holder, now + ttl, now, holder)).rowcount
            if won or time.monotonic() >= deadline:
                return bool(won)
            time.sleep(0.05)

    def release(self, holder: str) -> None:
        self._write("UPDATE lease SET holder = NULL, until = 0 WHERE name = 'replay' AND holder = ?", (holder,))

    def delete(self, entry_id: int) -> None:
        """Forget an entry the database has stored."""
        self._write("DELETE FROM entries WHERE id = ?", (entry_id,))

    def failed(self, entry_id: int, error: str, severity: str | None = None, dead_after: int = DEAD_AFTER) -> bool:
        """Count a try that failed for this entry's own sake; True when it is now a dead letter."""
        self._write("UPDATE entries SET attempts = attempts + 1, error = ?, severity = ?, "
                    "state = CASE WHEN attempts + 1 >= ? THEN ? ELSE state END WHERE id = ?",
                    (error[:500], severity, dead_after, DEAD, entry_id))
        row = self._conn().execute("SELECT state FROM entries WHERE id = ?", (entry_id,)).fetchone()
        return row is not None and row[0] == DEAD

    def retry(self, entry_id: int, clean: bool = False) -> bool:
        """Put a dead letter back in line (``clean``: drop what no database can store from its text first)."""
        entry = self.entry(entry_id)
        if entry is None:
            return False
        payload = None
        if clean:
            from bot.store.text import storable
            data = {**asdict(entry.msg), "body": storable(entry.msg.body), "sender": storable(entry.msg.sender),
                    "limits": [list(x) for x in entry.limits]}
            payload = json.dumps(data)
        self._write("UPDATE entries SET state = ?, attempts = 0, payload = coalesce(?, payload) WHERE id = ?",
                    (PENDING, payload, entry_id))
        return True

    def drop(self, entry_id: int) -> bool:
        """Delete an entry for good (an operator's decision; the caller records who and why)."""
        return self._write("DELETE FROM entries WHERE id = ?", (entry_id,)).rowcount == 1

    # -- the old JSON-lines spool --------------------------------------------------------
    def _import_legacy(self, conn: sqlite3.Connection) -> None:
        """Take over a ``spool.jsonl`` (and claimed ``.replay`` files) written by an older release."""
        # An ".import" file is one a process claimed and then died importing (a minute is plenty).
        stale = [p for p in self.legacy.parent.glob(self.legacy.name + ".*.import") if _age(p) > 60]
        for path in [self.legacy, *self.legacy.parent.glob(self.legacy.name + ".*.replay"), *stale]:
            if path == self.path:
                continue
            claimed = path.with_name(f"{self.legacy.name}.{os.getpid()}.{threading.get_ident()}.import")
            try:
                os.replace(path, claimed)  # exactly one process takes each file
                lines = claimed.read_text(encoding="utf-8", errors="replace").splitlines()
            except FileNotFoundError:
                continue
            imported = 0
            for raw in lines:
                try:
                    data = json.loads(raw)
                    received_at = datetime.fromisoformat(data.pop("received_at"))
                    msg = Inbound(**{k: v for k, v in data.items() if k in _INBOUND_FIELDS})
                except (ValueError, TypeError, KeyError):
                    logger.error("skipping a damaged line of the old spool")
                    continue
                conn.execute("INSERT OR IGNORE INTO entries (message_id, sender, received_at, payload) "
                             "VALUES (?, ?, ?, ?)", (msg.message_id, _sender(msg.sender), _iso(received_at),
                                                     json.dumps({**asdict(msg), "limits": []})))
                imported += 1
            claimed.unlink()
            logger.warning("imported %d message(s) from the old spool file %s", imported, path.name)
