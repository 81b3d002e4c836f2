"""The Core statements of the helpline's write path (bot.service): one lookup before a text is decided,
then the inserts and updates that store it, and on PostgreSQL the fused statements that write a routine
text, or a text that opens an escalation with its pages, in one round trip (data-modifying CTEs).

Built once at import (or once per shape, cached), so SQLAlchemy compiles each only once. The write path
runs them with :func:`run`, straight on the DBAPI cursor.
"""

from __future__ import annotations

import re
from functools import lru_cache
from operator import itemgetter
from typing import Sequence

from sqlalchemy import bindparam, func, literal_column, select, true
from sqlalchemy.exc import DBAPIError

from bot.store.db import sqlite_broken
from bot.store.models import Contact, Escalation, Message, Outbox, is_open

MESSAGES = Message.__table__
CONTACTS = Contact.__table__
ESCALATIONS = Escalation.__table__
OUTBOX = Outbox.__table__
_seen = MESSAGES.alias("seen")
_open = ESCALATIONS.alias("open_escalation")
# One round trip for everything a text needs before it is decided: a stored copy (a retry), the
# sender, and the sender's open escalation. The one-row SELECT keeps a row when neither exists.
LOOKUP = (select(_seen.c.id.label("seen_id"), _seen.c.escalation_id.label("seen_escalation_id"),
                 CONTACTS.c.id.label("contact_id"), CONTACTS.c.channel, CONTACTS.c.language,
                 CONTACTS.c.opted_out, _open.c.id.label("escalation_id"),
                 _open.c.status.label("escalation_status"), _open.c.severity.label("escalation_severity"))
          .select_from(select(literal_column("1").label("one")).subquery("one")
                       .outerjoin(_seen, _seen.c.sid == bindparam("sid"))
                       .outerjoin(CONTACTS, CONTACTS.c.address == bindparam("address"))
                       .outerjoin(_open, (_open.c.contact_id == CONTACTS.c.id) & is_open(_open.c.status))))
NEW_CONTACT = CONTACTS.insert().returning(CONTACTS.c.id)  # columns: the parameters given
NEW_MESSAGE = MESSAGES.insert().returning(MESSAGES.c.id)
JOIN_ESCALATION = MESSAGES.update().where(MESSAGES.c.id == bindparam("message_id"))
NEW_ESCALATION = ESCALATIONS.insert().returning(ESCALATIONS.c.id)
NEW_REPLY = MESSAGES.insert()
NEW_PAGE = OUTBOX.insert()
# One more text in an open escalation: the database adds one, so texts joining it at once from two
# processes both count (a value read before the write phase and written back would lose one).
COUNT_IN = (ESCALATIONS.update().where(ESCALATIONS.c.id == bindparam("escalation_id"))
            .values(message_count=ESCALATIONS.c.message_count + 1, updated_at=bindparam("now")))
TOUCH = CONTACTS.update().where(CONTACTS.c.id == bindparam("contact_id"))  # SET: the parameters given
# A sender's last few inbound texts since a time, newest first (bot.service.recent_texts).
RECENT = (select(MESSAGES.c.severity, MESSAGES.c.body)
          .where(MESSAGES.c.contact_id == bindparam("contact_id"), MESSAGES.c.direction == bindparam("direction"),
                 MESSAGES.c.created_at >= bindparam("since"))
          .order_by(MESSAGES.c.id.desc()).limit(bindparam("limit")))


_NEW_CONTACT_COLUMNS = ("address", "channel", "created_at", "last_seen_at", "language", "opted_out", "opted_out_at")
_INBOUND_COLUMNS = ("direction", "sid", "body", "media_count", "kind", "severity", "crisis_kind", "rule", "topic",
                    "language", "escalation_id", "created_at")
_REPLY_COLUMNS = ("direction", "body", "kind", "escalation_id", "language", "media_count", "created_at")


def _params(table, prefix: str, names: Sequence[str]) -> dict:
    """Typed bind parameters ``prefix + name`` for ``names`` (every column with a default is named, so
    SQLAlchemy adds no default parameters of its own, whose names would clash between two inserts)."""
    return {name: bindparam(prefix + name, type_=table.c[name].type) for name in names}


def _sender_and_inbound(new_contact: bool, touched: tuple[str, ...]):
    """The sender's row (inserted, or its ``touched`` columns updated) and the inbound message, as CTEs of
    one PostgreSQL statement: (the CTEs the statement must add, the inbound CTE returning its id and
    contact id)."""
    extra = []
    values = _params(MESSAGES, "m_", _INBOUND_COLUMNS)
    if new_contact:
        sender = (CONTACTS.insert().values(_params(CONTACTS, "c_", _NEW_CONTACT_COLUMNS))
                  .returning(CONTACTS.c.id).cte("sender"))
        inbound = MESSAGES.insert().from_select(["contact_id", *values], select(sender.c.id, *values.values()))
    else:
        extra.append(CONTACTS.update().where(CONTACTS.c.id == bindparam("c_id"))
                     .values(_params(CONTACTS, "c_", touched)).returning(CONTACTS.c.id).cte("sender"))
        inbound = MESSAGES.insert().values(contact_id=bindparam("m_contact_id", type_=MESSAGES.c.contact_id.type),
                                            **values)
    return extra, inbound.returning(MESSAGES.c.id, MESSAGES.c.contact_id).cte("inbound")


def _reply_to(inbound):
    """The bot's reply (``r_*``) to the inbound CTE's message, to its sender."""
    out = _params(MESSAGES, "r_", _REPLY_COLUMNS)
    return (MESSAGES.insert().from_select(["contact_id", "reply_to_id", *out],
                                          select(inbound.c.contact_id, inbound.c.id, *out.values()))
            .returning(MESSAGES.c.id).cte("reply"))


@lru_cache(maxsize=None)
def routine_statement(new_contact: bool, touched: tuple[str, ...], reply: bool):
    """One PostgreSQL statement for a routine text: the sender's row, the inbound message, the reply.

    ``new_contact``: insert the sender (``c_*`` parameters) and take its id from the insert; else
    update the ``touched`` columns of sender ``c_id`` (the inbound row names ``m_contact_id``, so a
    sender that vanished meanwhile fails the foreign key, as the separate statements did). ``reply``:
    also the bot's reply (``r_*``), pointing at the inbound row. Returns (contact id, inbound id).
    Data-modifying CTEs all run, referenced or not, in the one statement's transaction.
    """
    extra, inbound = _sender_and_inbound(new_contact, touched)
    if reply:
        extra.append(_reply_to(inbound))
    return select(inbound.c.contact_id, inbound.c.id).add_cte(*extra)


_PAGE_COLUMNS = ("kind", "to_address", "body", "escalation_id", "staff_id", "page_round", "next_attempt_at",
                 "created_at", "status", "attempts", "local")
# A new escalation's id, drawn before its text is written (its pages name it): see bot.staff.paging.
NEXT_ESCALATION_ID = func.nextval(func.pg_get_serial_sequence(ESCALATIONS.name, ESCALATIONS.c.id.name))
DRAW_ESCALATION_ID = select(NEXT_ESCALATION_ID.label("escalation_id"))


@lru_cache(maxsize=None)
def opening_statement(new_contact: bool, touched: tuple[str, ...], columns: tuple[str, ...], page_count: int,
                      reply: bool):
    """One PostgreSQL statement for a text that opens an escalation: the sender's row and the inbound message
    as :func:`routine_statement` writes them (the inbound row's ``m_escalation_id`` the new escalation's id,
    drawn before), the escalation (``e_*``: ``columns``, its id among them; its sender and first message
    taken from the inbound row), its ``page_count`` page rows (``p0_*``, ``p1_*``...) and with ``reply`` the
    bot's reply (``r_*``). Returns (contact id, inbound id, escalation id).

    The rows point at each other (the message at its escalation, the escalation at its first message): a
    foreign key is checked at the end of the statement, when both exist."""
    extra, inbound = _sender_and_inbound(new_contact, touched)
    values = _params(ESCALATIONS, "e_", columns)
    escalation = (ESCALATIONS.insert()
                  .from_select(["contact_id", "first_message_id", *values],
                               select(inbound.c.contact_id, inbound.c.id, *values.values()))
                  .returning(ESCALATIONS.c.id).cte("escalation"))
    extra.append(escalation)
    for n in range(page_count):  # one single-row INSERT each: a multi-row VALUES would not be in SQLAlchemy's cache
        extra.append(OUTBOX.insert().values(_params(OUTBOX, f"p{n}_", _PAGE_COLUMNS))
                     .returning(OUTBOX.c.id).cte(f"page{n}"))
    if reply:
        extra.append(_reply_to(inbound))
    return (select(inbound.c.contact_id, inbound.c.id, escalation.c.id)
            .select_from(inbound.join(escalation, true())).add_cte(*extra))


# -- the statements above, run on the DBAPI cursor ---------------------------------------------------
# Measured in one process over 3,000 texts from new senders: Helpline.handle took 0.78 ms a text through
# SQLAlchemy's execution machinery (compiled-cache lookup, execution context, parameter and result
# objects, for each of 4-6 statements) and 0.61 ms this way; under gunicorn 5-9% more texts a second.


class _Row(tuple):
    """A result row with its columns as attributes (``found.seen_id``), like SQLAlchemy's ``Row``.

    A statement's row class (:func:`_row_class`) reads each column through a property, as a namedtuple does:
    through ``__getattr__`` alone, every column read first failed the normal lookup, and Python builds the
    AttributeError's message before calling it (about 0.5 us a read, 5-10 reads a text)."""

    __slots__ = ()
    names: dict[str, int] = {}

    def __getattr__(self, name: str):
        try:
            return self[self.names[name]]
        except KeyError:
            raise AttributeError(name) from None


def _row_class(description) -> type[_Row]:
    """The row class for a cursor's ``description``: a property per column whose name ``tuple`` does not
    use already (a column named ``count`` reads as the tuple's method, as it did through ``__getattr__``)."""
    names = {d[0]: i for i, d in enumerate(description)}
    columns = {name: property(itemgetter(i)) for name, i in names.items() if not hasattr(tuple, name)}
    return type("Row", (_Row,), {"__slots__": (), "names": names, **columns})


class _Prepared:
    """One statement compiled for one dialect and one set of parameter names: its SQL, the order of its
    parameters with their bind processors, the values it holds itself (an IN list) and the Python
    defaults of the columns it leaves out (filled at each run, as SQLAlchemy does)."""

    def __init__(self, statement, dialect, keys: tuple[str, ...]):
        self.statement = statement  # held, so the id() in this entry's key is never another statement's
        compiled = statement.compile(dialect=dialect, column_keys=list(keys))
        if compiled.update_prefetch:
            raise ValueError("an UPDATE with Python-side onupdate values does not run on the cursor")
        if compiled.post_compile_params or compiled.literal_execute_params:
            raise ValueError("a statement completed at execution (an expanding IN) does not run on the cursor")
        self.sql = compiled.string
        self.order: tuple[int, ...] | None = None
        self.cursor = None  # the driver connection's own cursor
        if compiled.positional:  # SQLite's qmark: a list in this order
            self.names = tuple(compiled.positiontup)
        else:  # psycopg: pyformat rewritten as $1, $2... once, run on a RawCursor (see _numbered)
            from psycopg import RawCursor  # here: a SQLite app never imports psycopg
            self.cursor = RawCursor
            self.names = tuple(dict.fromkeys(compiled.bind_names.values()))
            escaped = [compiled.escaped_bind_names.get(n, n) for n in self.names]
            self.sql, numbered = _numbered(self.sql)
            if sorted(numbered) != sorted(escaped):
                raise ValueError("a parameter the SQL does not write as %(name)s")
            self.order = tuple(escaped.index(k) for k in numbered)
        binds = compiled.binds
        self.processors = tuple(binds[n].type.dialect_impl(dialect).bind_processor(dialect) for n in self.names)
        self.defaults = tuple((c.key, c.default) for c in compiled.insert_prefetch)
        left_out = set(keys) | {k for k, _ in self.defaults}
        self.held = {n: binds[n].value for n in self.names if n not in left_out}
        self.returns = bool(compiled.returning) or statement.is_select
        self.row: type[_Row] | None = None  # named from the cursor's first description

    def args(self, params: dict) -> list:
        values = params
        if self.held or self.defaults:
            values = {**self.held, **{k: d.arg if d.is_scalar else d.arg(None) for k, d in self.defaults}, **params}
        out = []
        for name, process in zip(self.names, self.processors):
            value = values[name]
            out.append(value if process is None or value is None else process(value))
        return out if self.order is None else [out[i] for i in self.order]


_PYFORMAT = re.compile(r"%\((\w+)\)s|%%")


def _numbered(sql: str) -> tuple[str, tuple[str, ...]]:
    """psycopg's ``%(name)s`` placeholders as PostgreSQL's own ``$1, $2...`` (a name used twice keeps its
    number; ``%%`` is a percent sign again), and the names in number order.

    psycopg parses a ``%(name)s`` query at every execution, from a cache only while it is at most 4,096
    bytes with at most 50 parameters; a text that opens an escalation is one statement with more (measured:
    +13% instructions a text). A ``RawCursor`` sends ``$n`` queries as they are."""
    order: dict[str, int] = {}

    def number(m: re.Match) -> str:
        if m.group(1) is None:
            return "%"
        return f"${order.setdefault(m.group(1), len(order) + 1)}"

    return _PYFORMAT.sub(number, sql), tuple(order)


_PREPARED: dict[tuple, _Prepared | None] = {}  # None: run through SQLAlchemy
_UNSEEN = object()


def _listened(dispatch) -> bool:
    """Whether something listens to the statements the engine sends (the engine's own listeners: a
    connection's are looked up on a new dispatcher per connection, which cost more than a statement)."""
    return bool(dispatch.before_cursor_execute or dispatch.after_cursor_execute)


def run(conn, statement, params: dict, every: bool = False):
    """``conn.execute(statement, params).first()`` (``.all()`` with ``every``), without SQLAlchemy's
    per-execution work where the driver allows.

    The SQL is compiled once per statement, dialect and set of parameter names, then run on the DBAPI
    cursor of the same connection (SQLite's and psycopg's alike), so in the same transaction, with the same
    bind processing and column defaults. A failure raises what SQLAlchemy would (``IntegrityError``,
    ``OperationalError``..., parameters hidden), and a connection the error broke is dropped from the pool
    as ``Database`` has SQLAlchemy do. Rows are tuples with the columns as attributes. A statement the
    cursor cannot run as compiled (an expanding IN) goes through SQLAlchemy, and on psycopg so does every
    statement while something listens to the engine's SQL (``before_cursor_execute``: the tests that count
    PostgreSQL's round trips); SQLite's cursor statements were never shown to listeners, and the check
    cost SQLite 0.7% a text.
    """
    dialect = conn.dialect
    key = (id(statement), dialect.name, tuple(params))
    prepared = _PREPARED.get(key, _UNSEEN)
    if prepared is _UNSEEN:
        try:
            prepared = _Prepared(statement, dialect, key[2])
        except ValueError:
            prepared = None
        _PREPARED[key] = prepared
    if prepared is None or (not dialect.positional and _listened(conn.engine.dispatch)):
        result = conn.execute(statement, params)
        if not result.returns_rows:
            return [] if every else None
        return result.all() if every else result.first()
    args = prepared.args(params)
    raw = conn.connection.driver_connection
    cursor = raw.cursor() if prepared.cursor is None else prepared.cursor(raw)
    try:
        cursor.execute(prepared.sql, args)
        values = (cursor.fetchall() if every else cursor.fetchone()) if prepared.returns else None
    except dialect.loaded_dbapi.Error as exc:
        cursor.close()  # before an invalidation closes the connection under it
        broken = sqlite_broken(exc) or dialect.is_disconnect(exc, raw, cursor)
        if broken:
            conn.invalidate(exc)
        raise DBAPIError.instance(prepared.sql, None, exc, dialect.loaded_dbapi.Error, hide_parameters=True,
                                  connection_invalidated=broken, dialect=dialect) from exc
    if values and prepared.row is None:
        prepared.row = _row_class(cursor.description)
    cursor.close()
    if every:
        return [prepared.row(v) for v in values or ()]
    return None if values is None else prepared.row(values)
