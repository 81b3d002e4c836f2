"""The durable floor: bare Flask plus one durable INSERT of the text, then a fixed TwiML reply.

Served by the same gunicorn command line as the real app (``gunicorn floor_app:app`` from
``bench/``). It stores what "nothing is lost" needs at the least (MessageSid, sender, body, time;
MessageSid unique) through ``bot.store.db.make_engine``: the app's driver and settings (SQLite
in WAL mode with synchronous=NORMAL and the same busy timeout; PostgreSQL through the same
SQLAlchemy URL and psycopg). So the webhook's distance to it is what the helpline stores and
decides beyond the text itself, not the price of durability.

``FLOOR_DATABASE_URL`` names the database; ``python floor_app.py URL`` creates its one table.
"""

import os
import sys
from datetime import datetime, timezone

from flask import Flask, request
from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table, Text, insert
from sqlalchemy.exc import IntegrityError

from bare_app import fixed_twiml, healthz
from bot.store.db import make_engine

metadata = MetaData()
floor_messages = Table(
    "floor_messages", metadata,
    Column("id", Integer, primary_key=True),
    Column("sid", String(64), unique=True),
    Column("sender", String(64)),
    Column("body", Text),
    Column("created_at", DateTime(timezone=True)),
)

app = Flask(__name__)
_engine = None


def engine():
    global _engine
    if _engine is None:  # per worker, after gunicorn forks
        _engine = make_engine(os.environ["FLOOR_DATABASE_URL"])
    return _engine


@app.post("/sms")
def sms():
    """One INSERT in its own transaction (a retried MessageSid is a no-op), then fixed TwiML."""
    form = request.form
    try:
        with engine().begin() as conn:
            conn.execute(insert(floor_messages).values(sid=form["MessageSid"], sender=form["From"],
                                                       body=form.get("Body", ""),
                                                       created_at=datetime.now(timezone.utc)))
    except IntegrityError:
        pass  # a retry: stored already
    return fixed_twiml()


app.add_url_rule("/healthz", view_func=healthz)


def create(url: str) -> None:
    eng = make_engine(url)
    try:
        metadata.create_all(eng)
    finally:
        eng.dispose()


def stored(url: str) -> int:
    from sqlalchemy import func, select
    eng = make_engine(url)
    try:
        with eng.connect() as conn:
            return conn.scalar(select(func.count()).select_from(floor_messages))
    finally:
        eng.dispose()


if __name__ == "__main__":
    create(sys.argv[1])
