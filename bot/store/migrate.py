"""Schema migrations with Alembic: upgrade to head, and tell whether a database is current.

Only :func:`upgrade` and :func:`alembic_config` import Alembic. Every web worker checks its
schema at start (:func:`pending`), and Alembic with Mako and Pygments behind it would stay in
each worker's memory (about 10 MB) for that one check: the check reads the revision ids from the
migration files and the ``alembic_version`` table directly (``tests/test_migrations.py`` checks
both against Alembic's own answers).
"""

from __future__ import annotations

import ast
from pathlib import Path

from sqlalchemy import inspect, text

from bot.store.db import Database

MIGRATIONS = Path(__file__).parent / "migrations"
VERSION_TABLE = "alembic_version"  # Alembic's default, which env.py keeps


def alembic_config(url: str):
    """An Alembic config for this package's migrations and the given database."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(db: Database, revision: str = "head") -> None:
    """Create or upgrade the schema (SQLite or PostgreSQL)."""
    from alembic import command

    cfg = alembic_config(db.url)
    with db.engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, revision)


def _revision_ids(path: Path) -> tuple[str, str | tuple[str, ...] | None]:
    """A migration file's ``revision`` and ``down_revision`` (read, not imported)."""
    found = {}
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            if node.targets[0].id in ("revision", "down_revision"):
                found[node.targets[0].id] = ast.literal_eval(node.value)
    return found["revision"], found.get("down_revision")


def head() -> str:
    """The newest revision this code knows: the one no migration revises."""
    revisions, revised = set(), set()
    for path in (MIGRATIONS / "versions").glob("*.py"):
        rev, down = _revision_ids(path)
        revisions.add(rev)
        revised.update(down if isinstance(down, (tuple, list)) else [down] if down else [])
    heads = revisions - revised
    if len(heads) != 1:
        raise RuntimeError(f"migrations have {len(heads)} heads, expected one: {sorted(heads)}")
    return heads.pop()


def current(db: Database) -> str | None:
    """The database's revision (None for an empty or pre-Alembic database)."""
    with db.engine.connect() as connection:
        if not inspect(connection).has_table(VERSION_TABLE):
            return None
        rows = connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars().all()
    if len(rows) > 1:
        raise RuntimeError(f"the database has {len(rows)} schema revisions, expected one: {sorted(rows)}")
    return rows[0] if rows else None


def pending(db: Database) -> bool:
    """Whether the database needs ``helpline db upgrade``."""
    return current(db) != head()
