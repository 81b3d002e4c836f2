"""The database handle: one engine per app, sessions per unit of work, and bounded waits.

A database that refuses is easy: the error comes at once. One that accepts a connection and
never answers is the dangerous case, because a request thread would wait on it for as long as
TCP allows while Twilio gives up after 15 seconds. So every wait is bounded:

- a **deadline** per request (``Database.deadline``, thread-local): when a connection is checked
  out, a watchdog is armed for the time left; when it fires, a PostgreSQL connection's socket is
  shut down (the blocked call fails at once; ``cancel()`` would need the same dead network) and a
  SQLite statement is interrupted; SQLite's busy timeout ends within the time left, and the
  per-process SQLite writer mutex is waited on for no longer;
- connect and pool timeouts (PostgreSQL ``connect_timeout``, SQLAlchemy ``pool_timeout``);
- a **breaker**: after a failure that took more than ``SLOW_FAILURE`` seconds, sessions fail at
  once (``StorageUnavailable``) for ``COOLDOWN`` seconds, then one session probes. So during a
  hang only a few requests per process wait; the others answer from the core straight away.

``is_outage`` tells a failing database (keep the message in the spool and try later) from a
message the database cannot take (a poisoned entry: dead-letter it after a few tries).
"""

from __future__ import annotations

import fcntl
import heapq
import itertools
import logging
import os
import socket
import sqlite3
import threading
import time
from contextlib import contextmanager, nullcontext
from enum import StrEnum
from pathlib import Path
from typing import Callable, Iterator

from sqlalchemy import create_engine, event, exc as sa_exc, inspect
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from bot.core import states
from bot.store.flock import poll_flock
from bot.store.models import Base

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT = 2  # seconds; libpq's minimum
POOL_TIMEOUT = 2.0  # seconds waiting for a pooled connection
SQLITE_BUSY_TIMEOUT = 15.0  # seconds, when no deadline is set (CLI, migrations, the dispatcher)
# SQLite's busy timeout is set to end BUSY_HEADROOM_MS before the deadline, and kept while it ends no later
# than the deadline and at most BUSY_SLACK_MS before it: set again when it would overrun or give up much too
# early, not at every checkout and write phase (a statement each, whose SQL no statement cache holds).
BUSY_HEADROOM_MS = 25
BUSY_SLACK_MS = 250
SLOW_FAILURE = 1.0  # a failure that took this long opens the breaker...
COOLDOWN = 2.0  # ...for this long, then one session probes
# A pooled PostgreSQL connection idle longer than this is pinged at checkout; one reused sooner is
# not (a round trip per request under load). The webhook retries a text whose first statement met
# a connection that died meanwhile (``StaleConnection``), so a restart costs it nothing either way.
PING_IDLE = 1.0  # seconds
SESSION_SECONDS = 30.0  # the bound for sessions outside a request (dispatcher, replayer) in long-running processes
# SQLite errors after which a pooled connection is useless even once the disk is fine again
# (a connection opened while the file was read-only stays read-only).
_SQLITE_BROKEN = ("disk I/O error", "readonly database", "unable to open database file")


class StorageUnavailable(Exception):
    """Sessions are being refused at once after a slow failure (the breaker is open)."""

    def __init__(self, message: str = "database skipped after a slow failure (breaker open)"):
        super().__init__(message)


class StaleConnection(Exception):
    """A pooled connection was found dead at the first statement of a unit of work: nothing was
    written, and the pool has been invalidated, so the work can start again on a new connection."""

    def __init__(self, message: str = "pooled connection found dead before any write"):
        super().__init__(message)


class DeadlineExceeded(Exception):
    """This request's time for database work ran out."""

    def __init__(self, message: str = "time for database work ran out"):
        super().__init__(message)


def is_outage(exc: BaseException) -> bool:
    """Whether ``exc`` says the database failed (try again later) rather than that this data cannot be stored.

    Connection, timeout and operational errors, and schema or SQL errors (a half-deployed
    release) are outages: every message would fail alike. Data, integrity and encoding errors,
    and any other exception, belong to the message being stored.
    """
    if isinstance(exc, (StorageUnavailable, DeadlineExceeded, StaleConnection, sa_exc.TimeoutError,
                        sa_exc.DisconnectionError)):
        return True
    if isinstance(exc, sa_exc.DBAPIError):
        return exc.connection_invalidated or isinstance(exc, (sa_exc.OperationalError, sa_exc.InterfaceError,
                                                              sa_exc.ProgrammingError, sa_exc.InternalError))
    return isinstance(exc, (ConnectionError, TimeoutError))


class Breaker:
    """Skip the database for a while after a slow failure; let one caller probe when the while is over."""

    def __init__(self, slow: float = SLOW_FAILURE, cooldown: float = COOLDOWN):
        self.slow = slow
        self.cooldown = cooldown
        self._lock = threading.Lock()
        self._open_until = 0.0
        self._probing = False

    @property
    def open(self) -> bool:
        """Whether sessions are being refused right now."""
        return self._open_until > 0.0

    def refusing(self) -> bool:
        """Whether a session asking now would be refused (open and cooling down, or another caller
        probing), without taking the probe slot: lets a caller skip queueing for the database."""
        with self._lock:
            return bool(self._open_until) and (self._probing or time.monotonic() < self._open_until)

    def allow(self) -> bool:
        """Whether a session may try the database now (closed, or the one probe after the cool-down)."""
        with self._lock:
            if self._open_until == 0.0:
                return True
            if self._probing or time.monotonic() < self._open_until:
                return False
            self._probing = True
            return True

    def succeeded(self) -> None:
        with self._lock:
            if self._open_until:
                logger.warning("database answering again: breaker closed")
            self._open_until, self._probing = 0.0, False

    def failed(self, elapsed: float, timed_out: bool) -> None:
        with self._lock:
            if self._probing or timed_out or elapsed >= self.slow:
                if not self._open_until:
                    logger.error("database slow to fail (%.1f s): skipping it for %.0f s at a time", elapsed,
                                 self.cooldown)
                self._open_until = time.monotonic() + self.cooldown
            self._probing = False

    def released(self) -> None:
        """A session that never reached the database: free the probe slot."""
        with self._lock:
            self._probing = False


class Watchdog:
    """One thread per process that runs callbacks at deadlines (cheaper than a timer per request)."""

    def __init__(self):
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, list]] = []
        self._seq = itertools.count()
        self._pid = None

    def arm(self, when: float, callback: Callable[[], None]) -> list:
        """Run ``callback`` at monotonic time ``when`` unless disarmed first; returns the handle."""
        handle = [callback]
        with self._cond:
            if self._pid != os.getpid():  # first use in this process (or after a fork)
                self._pid = os.getpid()
                self._heap = []
                threading.Thread(target=self._run, name="db-watchdog", daemon=True).start()
            heapq.heappush(self._heap, (when, next(self._seq), handle))
            if self._heap[0][2] is handle:
                self._cond.notify()  # the new deadline comes first: the thread must wake earlier
        return handle

    @staticmethod
    def disarm(handle: list) -> None:
        handle[0] = None

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    while self._heap and self._heap[0][2][0] is None:
                        heapq.heappop(self._heap)  # disarmed: nothing to wait for
                    if self._heap and self._heap[0][0] <= time.monotonic():
                        break
                    self._cond.wait(None if not self._heap else self._heap[0][0] - time.monotonic())
                _, _, handle = heapq.heappop(self._heap)
                callback, handle[0] = handle[0], None
            if callback is not None:
                try:
                    callback()
                except Exception:  # noqa: BLE001 - the watchdog must outlive one bad abort
                    logger.exception("could not abort a database call past its deadline")


class DeadlineLock:
    """A mutex waited on for no longer than the caller's deadline (SQLite's one writer per process).

    While the breaker refuses sessions (the database failed slowly, or one caller is probing it)
    a waiter gives up at once instead of queueing behind the prober for its whole deadline: the
    answer (from the core, the text in the spool) must not wait on a database known to be failing.
    """

    SLICE = 0.05  # seconds between looks at the breaker while waiting

    def __init__(self, db: "Database"):
        self._lock = threading.Lock()
        self._db = db

    def __enter__(self):
        db = self._db
        while True:
            if db.breaker.refusing():
                raise StorageUnavailable()
            left = db.remaining()
            wait = self.SLICE if left is None else max(0.0, min(self.SLICE, left))
            if self._lock.acquire(timeout=wait):
                return self
            if left is not None and left <= wait:
                raise DeadlineExceeded("time ran out waiting for the SQLite writer lock")

    def __exit__(self, *exc) -> None:
        self._lock.release()


class WriterFile:
    """SQLite's one writer across processes: a file lock beside the database, waited on for no longer
    than the caller's deadline.

    Without it, a process that finds another's write in progress sleeps in SQLite's busy handler (1,
    2, 5, 10... ms) and the database often sits unlocked meanwhile; ``flock`` is polled every 50 us
    to 1 ms instead. Writers that do not take it (the CLI, the dispatcher) still meet SQLite's own
    lock and busy handler, so correctness never depends on it. Callers hold the process's
    ``DeadlineLock`` already, so one thread per process waits here.
    """

    def __init__(self, db: "Database", path: str):
        self._db = db
        self._path: str | None = path  # None once the file could not be opened
        self._fd: int | None = None
        self._pid: int | None = None
        self._held = False

    def __enter__(self):
        fd = self._file()
        if fd is None:
            return self
        if not poll_flock(fd, self._db.remaining):
            raise DeadlineExceeded("time ran out waiting for the SQLite writer lock")
        self._held = True
        return self

    def __exit__(self, *exc) -> None:
        if self._held:
            self._held = False
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def _file(self) -> int | None:
        """This process's descriptor of the lock file (a forked child opens its own)."""
        if self._path is not None and self._pid != os.getpid():
            try:
                self._fd, self._pid, self._held = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600), os.getpid(), False
            except OSError as exc:
                logger.warning("SQLite writer lock file unavailable (%s): processes queue in SQLite's busy handler",
                               type(exc).__name__)
                self._path = None
        return self._fd if self._path is not None else None


def make_engine(url: str) -> Engine:
    """The engine for ``url`` with the app's driver settings (timeouts; SQLite in WAL mode).

    The benchmark's durable floor (bench/floor_app.py) uses it too, so both write alike.
    """
    # hide_parameters: a failed INSERT must never print a message body or phone number in a log.
    kwargs: dict = {"hide_parameters": True}
    sqlite = url.startswith("sqlite")
    if sqlite:
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT, "check_same_thread": False}
    else:
        kwargs["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT}
        kwargs["pool_timeout"] = POOL_TIMEOUT
    engine = create_engine(url, **kwargs)
    if sqlite:
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


# pysqlite binds an exact str, int, float or bytes as it is and anything else through its adapters: for a
# member of one of the core's StrEnums (Direction.IN, DecisionKind.CRISIS...: str subclasses) it looks for a
# registered adapter, then asks its protocol class for ``__adapt__`` (a lookup that fails: Python builds an
# AttributeError and drops it), then binds the member's text. Adapted by ``str.__str__`` (the member's text as
# a plain str) the same text is bound without the failed lookup; a text binds 15-30 of them.
for _kind in vars(states).values():
    if isinstance(_kind, type) and issubclass(_kind, StrEnum) and _kind is not StrEnum:
        sqlite3.register_adapter(_kind, str.__str__)


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    # WAL lets the dashboard read while the webhook writes; foreign keys are off by default.
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


class Unit:
    """One transaction on a Core connection (``Database.unit``), used where a ``Session`` was: ``connection()``
    is the connection itself, and anything else is asked of an ORM session made at first use and bound to it
    (it joins the transaction, whose commit stays :meth:`commit`'s).

    Measured on the webhook: the session's own machinery (its transaction's state changes, connection
    lookups, the flush check and detach at commit) for texts that never touch an ORM object."""

    __slots__ = ("_conn", "_transaction", "_session", "_autocommit")

    def __init__(self, conn, transaction, autocommit=None):
        self._conn = conn
        self._transaction = transaction
        self._session: Session | None = None
        self._autocommit = autocommit  # the psycopg connection while it reads in autocommit (Database.unit)

    def transactional(self) -> None:
        """End the reads' autocommit: the statements from here on share one transaction (BEGIN is sent
        with the first)."""
        if self._autocommit is not None:
            self._autocommit.autocommit = False
            self._autocommit = None

    def connection(self):
        return self._conn

    @property
    def orm(self) -> Session:
        if self._session is None:
            self._session = Session(bind=self._conn, expire_on_commit=False)
        return self._session

    def __getattr__(self, name: str):
        return getattr(self.orm, name)

    def commit(self) -> None:
        """Flush the ORM session's changes, if one was made, and commit the transaction."""
        if self._session is not None:
            self._session.commit()  # a flush: the transaction it joined is not its to commit
        self._transaction.commit()

    def close(self) -> None:
        if self._session is not None:
            self._session.close()


class Database:
    """An engine and a session factory for one database URL, with bounded waits."""

    def __init__(self, url: str, session_seconds: float | None = None):
        self.url = url
        # A bound for any session run outside a deadline (dispatcher passes, background replays):
        # a connection the network black-holed is cut instead of stalling its thread for good.
        self.session_seconds = session_seconds
        self.sqlite = url.startswith("sqlite")
        self.engine: Engine = make_engine(url)
        self.postgres = self.engine.dialect.name == "postgresql"  # data-modifying CTEs (one statement, many rows)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        self.breaker = Breaker()
        self.watchdog = Watchdog()
        self._local = threading.local()
        event.listen(self.engine, "connect", self._on_connect)
        event.listen(self.engine, "checkout", self._on_checkout)
        event.listen(self.engine, "checkin", self._on_checkin)
        event.listen(self.engine, "handle_error", self._on_error)
        # SQLite has one writer. Threads of one process queue on this mutex instead of on SQLite's
        # busy handler, whose back-off sleeps (up to 100 ms each) dominated p99 under load.
        self.write_lock = DeadlineLock(self) if self.sqlite else nullcontext()
        file = url.split("///", 1)[-1] if self.sqlite else ""
        self.writer_file = WriterFile(self, f"{file}-writer") if file and file != ":memory:" else nullcontext()

    # -- deadlines ------------------------------------------------------------------------
    def remaining(self) -> float | None:
        """Seconds left for database work in this thread, or None when unbounded."""
        until = getattr(self._local, "until", None)
        return None if until is None else until - time.monotonic()

    def push_deadline(self, seconds: float) -> float | None:
        """Bound this thread's database work to ``seconds`` from now (never loosens an outer bound)."""
        previous = getattr(self._local, "until", None)
        until = time.monotonic() + seconds
        self._local.until = until if previous is None else min(previous, until)
        return previous

    def pop_deadline(self, previous: float | None) -> None:
        """Restore the bound :meth:`push_deadline` replaced."""
        self._local.until = previous

    @contextmanager
    def deadline(self, seconds: float) -> Iterator[None]:
        """Database work inside the block ends within ``seconds`` (or raises ``DeadlineExceeded``)."""
        previous = self.push_deadline(seconds)
        try:
            yield
        finally:
            self.pop_deadline(previous)

    # -- sessions -------------------------------------------------------------------------
    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session whose transaction commits on success and rolls back on error."""
        with self._bounded():
            with self.sessions() as s:
                with s.begin():
                    yield s

    @contextmanager
    def unit(self, autocommit_reads: bool = False) -> Iterator["Unit"]:
        """A :meth:`session` for the webhook's write path: its transaction on a Core connection, the ORM session
        made only when a caller asks for more than :meth:`Unit.connection` (most texts never do).

        ``autocommit_reads`` (the webhook's, whose writes all go through :meth:`writing`): on PostgreSQL the
        reads before :meth:`writing` run in the driver's autocommit (each its own snapshot,
        as under READ COMMITTED inside a transaction, and no locks either way), so no BEGIN goes before them;
        the write phase begins the transaction, or, for a text written by one statement, sends that statement
        alone (one statement is one transaction): a routine text is two round trips, not four. The connection
        leaves in the pool's usual mode (one that cannot be set back is dropped)."""
        with self._bounded():
            with self.engine.connect() as conn:
                raw = None
                if self.postgres and autocommit_reads:
                    raw = conn.connection.driver_connection
                    if raw.info.transaction_status == _PG_IDLE:
                        raw.autocommit = True
                    else:  # in a transaction already (the checkout's ping began one): this text reads in it
                        raw = None
                try:
                    with conn.begin() as transaction:
                        unit = Unit(conn, transaction, raw)
                        try:
                            yield unit
                        finally:
                            unit.close()
                finally:
                    if raw is not None and raw.autocommit:
                        try:
                            raw.autocommit = False
                        except Exception:  # noqa: BLE001 - never pooled in autocommit
                            conn.invalidate()

    @contextmanager
    def _bounded(self) -> Iterator[None]:
        """A unit of work under the deadline and the breaker, which it tells how the database answered."""
        left = self.remaining()
        if left is not None and left <= 0:
            raise DeadlineExceeded()
        if not self.breaker.allow():
            raise StorageUnavailable()
        bounded = left is None and self.session_seconds is not None
        previous = self.push_deadline(self.session_seconds) if bounded else None
        started = time.monotonic()
        try:
            yield
        except BaseException as exc:
            if is_outage(exc):
                self.breaker.failed(time.monotonic() - started, isinstance(exc, DeadlineExceeded) or
                                    self._timed_out())
            elif not isinstance(exc, sa_exc.SQLAlchemyError):
                self.breaker.released()  # the caller's own exception (a 404, say): says nothing about the database
            else:
                self.breaker.succeeded()  # the database answered, with an error about this data
            raise
        else:
            self.breaker.succeeded()
        finally:
            if bounded:
                self.pop_deadline(previous)

    @contextmanager
    def writing(self, s: Session, single: bool = False) -> Iterator[None]:
        """The write phase of a :meth:`session`: under SQLite's writer lock file, committed before it is
        released. Reads before it (pysqlite begins the transaction at the first write; a :meth:`unit` on
        PostgreSQL reads in autocommit) keep no other process waiting. ``single``: the phase sends one
        statement, which a :meth:`unit` on PostgreSQL sends without a BEGIN and COMMIT around it."""
        with self.writer_file:
            if self.sqlite:
                self._bound_busy_wait(s)
            elif not single and isinstance(s, Unit):
                s.transactional()
            yield
            s.commit()

    def _bound_busy_wait(self, s: Session) -> None:
        """SQLite's busy timeout bounded again by what is left now: it was at checkout, but the wait for the
        writer lock file came after, and the watchdog's interrupt does not wake SQLite's busy handler, so a
        write that met another connection's lock waited a whole timeout more (answers at 5 s, not 2.5)."""
        left = self.remaining()
        if left is None:
            return
        if left <= 0:
            raise DeadlineExceeded("time ran out waiting for the SQLite writer lock")
        pooled = s.connection().connection
        _bound_busy_timeout(pooled.driver_connection, pooled.info, left)

    def _timed_out(self) -> bool:
        left = self.remaining()
        return left is not None and left <= 0

    def create_all(self) -> None:
        """Create every table that does not exist yet."""
        Base.metadata.create_all(self.engine)

    def missing_tables(self) -> list[str]:
        """Tables the models define that the database lacks."""
        have = set(inspect(self.engine).get_table_names())
        return sorted(t for t in Base.metadata.tables if t not in have)

    # -- pool events ----------------------------------------------------------------------
    def _on_connect(self, dbapi_conn, record) -> None:
        record.info["fresh"] = True
        if self.sqlite:
            record.info["busy_ms"] = int(SQLITE_BUSY_TIMEOUT * 1000)  # make_engine's connect timeout

    def _on_checkout(self, dbapi_conn, record, _proxy) -> None:
        fresh = record.info.pop("fresh", False)
        idle = time.monotonic() - record.info.get("checked_in", 0.0)
        left = self.remaining()
        if left is not None:
            if left <= 0:
                raise DeadlineExceeded()
            self._on_checkin(dbapi_conn, record)  # a retried checkout: one watch per connection
            record.info["watch"] = self.watchdog.arm(time.monotonic() + left, _aborter(dbapi_conn, self.sqlite))
        if self.sqlite:
            _bound_busy_timeout(dbapi_conn, record.info, SQLITE_BUSY_TIMEOUT if left is None else left)
        elif not fresh and idle >= PING_IDLE:
            # The pre-ping, under the watchdog, for a connection that sat in the pool for a while: one to
            # a database that went away is replaced; one to a database that hangs is cut at the deadline.
            try:
                cur = dbapi_conn.cursor()
                cur.execute("SELECT 1")
                cur.close()
            except Exception as exc:  # noqa: BLE001
                if self._timed_out():
                    raise DeadlineExceeded() from exc
                raise sa_exc.DisconnectionError("pooled connection failed its ping") from exc

    def _on_checkin(self, _dbapi_conn, record) -> None:
        if record is not None:
            record.info["checked_in"] = time.monotonic()
            handle = record.info.pop("watch", None)
            if handle is not None:
                Watchdog.disarm(handle)

    @staticmethod
    def _on_error(ctx) -> None:
        if sqlite_broken(ctx.original_exception):
            ctx.is_disconnect = True  # drop the connection: a new one sees the disk as it is now


_PG_IDLE = 0  # psycopg.pq.TransactionStatus.IDLE (libpq's PQTRANS_IDLE), without importing psycopg for SQLite


def _bound_busy_timeout(dbapi_conn, info: dict, left: float) -> None:
    """SQLite's busy timeout on ``dbapi_conn`` (whose pool record's ``info`` is given) ending no later than
    ``left`` seconds from now: set to ``BUSY_HEADROOM_MS`` short of it, unless the one set already ends in
    time and at most ``BUSY_SLACK_MS`` early. So a busy wait never outlasts the deadline, and gives up at
    most a quarter of a second before it (a text that waited 2 s for a lock goes to the spool either way)."""
    left_ms = max(0, int(left * 1000))
    busy_ms = info.get("busy_ms")
    if busy_ms is not None and left_ms - BUSY_SLACK_MS <= busy_ms <= left_ms:
        return
    busy_ms = max(0, left_ms - BUSY_HEADROOM_MS)
    dbapi_conn.execute(f"PRAGMA busy_timeout = {busy_ms}")
    info["busy_ms"] = busy_ms


def sqlite_broken(exc: BaseException) -> bool:
    """Whether a SQLite error leaves its connection useless even once the disk is fine again."""
    return isinstance(exc, sqlite3.OperationalError) and any(m in str(exc) for m in _SQLITE_BROKEN)


def _aborter(dbapi_conn, sqlite: bool) -> Callable[[], None]:
    """What the watchdog does to a connection past its deadline."""
    if sqlite:
        return dbapi_conn.interrupt  # thread-safe: the running statement fails with "interrupted"
    try:
        fd = dbapi_conn.fileno()
    except Exception:  # noqa: BLE001
        return lambda: None

    def cut() -> None:
        # Shut the socket down (not close: the fd stays the driver's), so the blocked call returns.
        if getattr(dbapi_conn, "closed", True) or dbapi_conn.fileno() != fd:
            return
        logger.error("database call past its deadline: cutting the connection")
        s = socket.socket(fileno=os.dup(fd))
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        finally:
            s.close()

    return cut
