"""The staff and escalation commands of ``helpline``: accounts, on-call, removal and the JSON list."""

from __future__ import annotations

import json

import click
import pytest
from sqlalchemy import select
from werkzeug.security import check_password_hash

from bot.cli import main
from bot.config import Settings
from bot.core.engine import Inbound
from bot.staff import actions
from bot.staff.accounts import authenticate
from bot.store.db import Database
from bot.store.models import Staff
from bot.web import create_app
from conftest import TEXTER

PASSWORD = "a long password"
DANA = "+15555550901"
SAM = "+15555550902"
KEYS = {"id", "status", "severity", "created_at", "claimed_by", "pages_sent"}


@pytest.fixture(autouse=True)
def instance(monkeypatch, tmp_path, runner):
    """A clean environment with its database in tmp_path, schema created by the CLI."""
    for name in ("DATABASE_URL", "HELPLINE_REPLIES_DIR", "HELPLINE_PUBLIC_URL", "HELPLINE_DEV", "SECRET_KEY",
                 "HELPLINE_TRUSTED_PROXIES", "HELPLINE_TWILIO_API_URL", "TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN",
                 "TWILIO_PHONE_NUMBER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HELPLINE_INSTANCE_DIR", str(tmp_path))
    result = runner.invoke(main, ["db", "upgrade"])
    assert result.exit_code == 0, result.output
    return tmp_path


@pytest.fixture
def database():
    """The database the commands use."""
    db = Database(Settings.from_env().sqlalchemy_url)
    yield db
    db.engine.dispose()


def add(runner, email="dana@clinic.test", phone=DANA, password=PASSWORD, name="Dana Diaz", *extra):
    return runner.invoke(main, ["staff", "add", "--name", name, "--email", email, "--phone", phone,
                                "--password-stdin", *extra], input=password + "\n")


def all_staff(db) -> list[Staff]:
    with db.session() as s:
        return list(s.scalars(select(Staff).order_by(Staff.id)))


def escalations_json(runner, *args) -> list[dict]:
    result = runner.invoke(main, ["escalations", "--json", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.mark.real_password_hashing  # production's method, as README promises
def test_staff_add_stores_only_a_password_hash_and_never_prints_the_password(runner, database, instance):
    result = add(runner, "Dana@Clinic.test", DANA, PASSWORD, "Dana Diaz", "--on-call")

    assert result.exit_code == 0, result.output
    assert "added dana@clinic.test (on call)" in result.output
    assert PASSWORD not in result.output
    [dana] = all_staff(database)
    assert (dana.name, dana.email, dana.phone, dana.on_call, dana.active) == (
        "Dana Diaz", "dana@clinic.test", DANA, True, True)
    assert dana.password_hash != PASSWORD and PASSWORD not in dana.password_hash
    assert check_password_hash(dana.password_hash, PASSWORD) and dana.password_hash.startswith("scrypt:")
    database.engine.dispose()
    for path in instance.glob("helpline.sqlite3*"):
        assert PASSWORD.encode() not in path.read_bytes()
    with database.session() as s:
        assert authenticate(s, "dana@clinic.test", PASSWORD).id == dana.id


@pytest.mark.parametrize("phone", ["555-0901", "5555550901", "+0555550901", "+1 555 555 0901", "+1555"])
def test_staff_add_rejects_a_phone_not_in_e164_form(runner, database, phone):
    result = add(runner, phone=phone)

    assert result.exit_code != 0
    assert "E.164" in result.output
    assert all_staff(database) == []


def test_staff_add_rejects_a_short_password(runner, database):
    result = add(runner, password="short")

    assert result.exit_code != 0
    assert "at least 10 characters" in result.output
    assert "short\n" not in result.output
    assert all_staff(database) == []


def test_staff_add_rejects_a_duplicate_email(runner, database):
    assert add(runner).exit_code == 0

    result = add(runner, email="DANA@clinic.test", phone=SAM, name="Another Dana")

    assert result.exit_code != 0
    assert "already exists" in result.output
    assert [p.phone for p in all_staff(database)] == [DANA]


def test_staff_list_masks_phones_and_shows_who_is_on_call(runner):
    assert add(runner, "sam@clinic.test", SAM, PASSWORD, "Sam Soto").exit_code == 0
    assert add(runner, "dana@clinic.test", DANA, PASSWORD, "Dana Diaz", "--on-call").exit_code == 0

    result = runner.invoke(main, ["staff", "list"])

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert len(lines) == 2
    assert "dana@clinic.test" in lines[0] and "***-0901" in lines[0] and "ON CALL" in lines[0]
    assert "sam@clinic.test" in lines[1] and "***-0902" in lines[1] and "ON CALL" not in lines[1]
    assert DANA not in result.output and SAM not in result.output and "5555550901" not in result.output


def test_staff_on_call_off_takes_a_member_off_call(runner, database):
    assert add(runner, "dana@clinic.test", DANA, PASSWORD, "Dana Diaz", "--on-call").exit_code == 0

    result = runner.invoke(main, ["staff", "on-call", "dana@clinic.test", "off"])

    assert result.exit_code == 0, result.output
    assert "off call" in result.output
    assert all_staff(database)[0].on_call is False
    assert "ON CALL" not in runner.invoke(main, ["staff", "list"]).output

    assert runner.invoke(main, ["staff", "on-call", "DANA@clinic.test", "on"]).exit_code == 0
    assert all_staff(database)[0].on_call is True


def test_staff_on_call_refuses_an_unknown_email(runner):
    result = runner.invoke(main, ["staff", "on-call", "nobody@clinic.test", "on"])

    assert result.exit_code != 0
    assert "no active staff member" in result.output


def test_staff_remove_deactivates_but_keeps_the_row(runner, database):
    assert add(runner, "dana@clinic.test", DANA, PASSWORD, "Dana Diaz", "--on-call").exit_code == 0

    result = runner.invoke(main, ["staff", "remove", "dana@clinic.test"])

    assert result.exit_code == 0, result.output
    [dana] = all_staff(database)
    assert dana.active is False and dana.on_call is False
    assert "dana@clinic.test" not in runner.invoke(main, ["staff", "list"]).output
    with database.session() as s:
        assert authenticate(s, "dana@clinic.test", PASSWORD) is None
    again = runner.invoke(main, ["staff", "remove", "dana@clinic.test"])
    assert again.exit_code != 0 and "no active staff member" in again.output
    assert runner.invoke(main, ["staff", "on-call", "dana@clinic.test", "on"]).exit_code != 0


def test_escalations_json_lists_stable_fields_and_filters_by_status(runner, database):
    assert add(runner, "dana@clinic.test", DANA, PASSWORD, "Dana Diaz", "--on-call").exit_code == 0
    app = create_app(Settings.from_env())
    helpline = app.extensions["helpline"].helpline
    try:
        first = helpline.handle(Inbound(sender=TEXTER, body="I took 30 valium", message_id="SM" + "1" * 32))
        second = helpline.handle(Inbound(sender="+15555550177", body="I want to kill myself",
                                         message_id="SM" + "2" * 32))
    finally:
        app.extensions["helpline"].db.engine.dispose()
    assert first.escalation_id and second.escalation_id

    rows = escalations_json(runner)

    assert [r["id"] for r in rows] == [first.escalation_id, second.escalation_id]
    for row in rows:
        assert set(row) == KEYS
        assert row["status"] == "open" and row["claimed_by"] is None and row["pages_sent"] == 0
        assert isinstance(row["created_at"], str) and row["created_at"][:4].isdigit()
    assert [r["severity"] for r in rows] == ["emergency", "urgent"]
    assert escalations_json(runner, "--status", "resolved") == []

    [dana] = all_staff(database)
    assert actions.claim(database, second.escalation_id, dana)
    actions.resolve(database, second.escalation_id, dana, "referred_988")

    [resolved] = escalations_json(runner, "--status", "resolved")
    assert resolved["id"] == second.escalation_id and resolved["status"] == "resolved"
    assert resolved["claimed_by"] == "Dana Diaz" and set(resolved) == KEYS
    assert [r["id"] for r in escalations_json(runner)] == [first.escalation_id]
    both = escalations_json(runner, "--status", "open", "--status", "resolved")
    assert {r["id"] for r in both} == {first.escalation_id, second.escalation_id}
    assert TEXTER not in runner.invoke(main, ["escalations"]).output


def _commands(group: click.Group, prefix: tuple[str, ...] = ()):
    for name, command in group.commands.items():
        yield (*prefix, name)
        if isinstance(command, click.Group):
            yield from _commands(command, (*prefix, name))


@pytest.mark.parametrize("path", [(), *_commands(main)], ids=lambda p: " ".join(p) or "helpline")
def test_every_command_has_help(runner, path):
    result = runner.invoke(main, [*path, "--help"])

    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output


def test_the_staff_commands_exist():
    names = {" ".join(p) for p in _commands(main)}
    assert {"staff add", "staff list", "staff on-call", "staff remove", "worker", "escalations",
            "db upgrade"} <= names
