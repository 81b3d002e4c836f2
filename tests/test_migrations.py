"""Alembic migrations build exactly the models' schema, and production start-up needs them."""

import dataclasses

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from bot.store import migrate
from bot.store.db import Database
from bot.store.models import Base
from bot.web import UnmigratedDatabase, create_app
from conftest import SMS

pytestmark = pytest.mark.storage  # Alembic migrations


@pytest.fixture
def empty_db(settings):
    db = Database(settings.sqlalchemy_url)
    yield db
    db.engine.dispose()


def test_upgrade_builds_the_models_schema_with_no_difference(empty_db):
    assert migrate.current(empty_db) is None and migrate.pending(empty_db)
    migrate.upgrade(empty_db)
    assert migrate.current(empty_db) == migrate.head() and not migrate.pending(empty_db)
    with empty_db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_the_start_check_reads_the_same_revisions_as_alembic(empty_db):
    # migrate.head() and current() read the files and the table without importing Alembic.
    assert migrate.head() == ScriptDirectory.from_config(migrate.alembic_config("sqlite://")).get_current_head()
    for _ in range(2):  # empty, then migrated
        with empty_db.engine.connect() as conn:
            assert migrate.current(empty_db) == MigrationContext.configure(conn).get_current_revision()
        migrate.upgrade(empty_db)


def test_upgrade_is_idempotent(empty_db):
    migrate.upgrade(empty_db)
    migrate.upgrade(empty_db)
    assert not migrate.pending(empty_db)


def test_production_start_refuses_an_unmigrated_schema_and_says_what_to_run(settings, empty_db):
    with pytest.raises(UnmigratedDatabase, match="helpline db upgrade"):
        create_app(settings, refuse_insecure=True)
    migrate.upgrade(empty_db)
    create_app(settings, refuse_insecure=True)


@pytest.mark.sqlite_only  # one run is enough: the database URL is replaced anyway
def test_with_the_database_unreachable_the_server_starts_and_crisis_texters_are_answered(settings):
    down = dataclasses.replace(settings, database_url="postgresql+psycopg://nobody@127.0.0.1:1/none")
    app = create_app(down, refuse_insecure=True)  # starts: refusing would silence crisis replies
    client = app.test_client()
    assert client.get("/healthz").get_json()["checks"]["database"].startswith("unreachable")
    sms = SMS(client)
    crisis = sms.send("my brother took all his pills and won't wake up")
    assert crisis.status == 200 and "911" in crisis.text
    routine = sms.send("what are your hours")
    assert routine.status == 200 and "(562) 573-1504" in routine.text and "trouble" in routine.text
