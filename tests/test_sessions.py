"""Dashboard sessions and logins under attack: revocation, equal cost, slowing without locking out.

Each test here failed on the build the break test ran against (issue 10).
"""

from __future__ import annotations

import hashlib

import pytest
from sqlalchemy import select

from bot.cli import main
from bot.staff.accounts import add_staff
from bot.store.models import AuditLog, Escalation, Staff
from staffclient import PASSWORD, csrf_token, login, post

ANN = "ann@clinic.test"
CRISIS = "I took 30 valium"


@pytest.fixture
def app(app):
    app.config["WTF_CSRF_ENABLED"] = True
    return app


@pytest.fixture
def ann(db):
    with db.session() as s:
        add_staff(s, "Ann Alvarez", ANN, "+15555550901", PASSWORD, on_call=True, admin=True)


def browser(app, ip: str = "198.51.100.1"):
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = ip
    return client


def actions(db) -> list[str]:
    with db.session() as s:
        return list(s.scalars(select(AuditLog.action).order_by(AuditLog.id)))


def session_cookie(client) -> str:
    return client.get_cookie("session").value


def with_cookie(app, value: str):
    client = app.test_client()
    client.set_cookie("session", value)
    return client


# --- sessions end on the server -----------------------------------------------------------------

def test_a_poll_leaves_the_session_cookie_alone_so_a_shown_message_does_not_come_back(app, ann):
    """The queue polls every few seconds. A poll that answered with the session cookie it was sent
    could land after a page had shown (and so removed) a message from that cookie, and put the
    message back: "You are now OFF call." reappeared beside "You are now ON call." in the browser."""
    client = browser(app)
    assert login(client, ANN).status_code == 302
    assert post(client, "/dashboard/on-call", {"staff": "1", "on": "off"}).status_code == 302
    with client.session_transaction() as cookie:
        assert cookie["_flashes"] == [("success", "You are now OFF call.")]
    poll = client.get("/dashboard/queue/poll")
    assert poll.status_code == 200
    assert "session=" not in poll.headers.get("Set-Cookie", "")


def test_a_session_cookie_saved_before_logout_no_longer_works(app, db, sms, ann):
    sms.send(CRISIS)
    client = browser(app)
    assert login(client, ANN).status_code == 302
    token = csrf_token(client, "/dashboard/")
    saved = session_cookie(client)  # what someone copies off the machine: the cookie and the page's token
    assert with_cookie(app, saved).get("/dashboard/").status_code == 200
    assert post(client, "/dashboard/logout").status_code == 302

    stolen = with_cookie(app, saved)
    assert stolen.get("/dashboard/").status_code == 302  # to the login page
    resp = stolen.post("/dashboard/escalations/1/claim", data={"csrf_token": token})
    assert resp.status_code in (302, 401)
    with db.session() as s:
        assert s.get(Escalation, 1).status == "open"
    assert actions(db)[-1] == "logout"


def test_a_password_change_ends_every_session_of_the_account(app, db, ann, runner, monkeypatch, settings):
    monkeypatch.setenv("HELPLINE_INSTANCE_DIR", str(settings.instance_dir))
    monkeypatch.setenv("DATABASE_URL", settings.database_url or "")
    phone, laptop = browser(app), browser(app, "198.51.100.2")
    for client in (phone, laptop):
        assert login(client, ANN).status_code == 302
    saved = session_cookie(phone)
    result = runner.invoke(main, ["staff", "password", ANN, "--password-stdin"], input="a brand new password\n")
    assert result.exit_code == 0 and "2 session(s) ended" in result.output
    for client in (phone, laptop, with_cookie(app, saved)):
        assert client.get("/dashboard/").status_code == 302
    assert login(browser(app), ANN).status_code == 401
    assert login(browser(app), ANN, "a brand new password").status_code == 302
    with db.session() as s:
        [entry] = s.scalars(select(AuditLog).where(AuditLog.action == "password_changed")).all()
        assert entry.detail == "2 session(s) ended" and entry.staff_id is not None


def test_removing_a_staff_member_ends_their_sessions(app, db, ann, runner, monkeypatch, settings):
    monkeypatch.setenv("HELPLINE_INSTANCE_DIR", str(settings.instance_dir))
    monkeypatch.setenv("DATABASE_URL", settings.database_url or "")
    client = browser(app)
    login(client, ANN)
    saved = session_cookie(client)
    assert runner.invoke(main, ["staff", "remove", ANN]).exit_code == 0
    with db.session() as s:  # even if the account came back, the old session would not
        s.scalar(select(Staff)).active = True
    assert with_cookie(app, saved).get("/dashboard/").status_code == 302


# --- a login costs the same for any email -------------------------------------------------------

@pytest.mark.real_password_hashing
def test_a_login_does_the_same_password_work_for_known_and_unknown_emails(app, ann, monkeypatch):
    calls = []
    real = hashlib.scrypt

    def spy(password, **params):
        calls.append(tuple(sorted(params.items())))
        return real(password, **params)

    login(browser(app), "warm-up@clinic.test", "x")  # the dummy hash is made once per process, on first use
    monkeypatch.setattr(hashlib, "scrypt", spy)
    work = {}
    for email in (ANN, "nobody@clinic.test"):
        calls.clear()
        assert login(browser(app), email, "a wrong password").status_code == 401
        work[email] = [(k, v) for call in calls for k, v in call if k != "salt"]
    assert work[ANN] and work[ANN] == work["nobody@clinic.test"]


# --- slow a guesser, never lock out the real user -----------------------------------------------

def test_five_wrong_passwords_from_one_address_do_not_lock_the_user_out_elsewhere(app, ann):
    attacker = browser(app, "203.0.113.66")
    for _ in range(5):
        assert login(attacker, ANN, "guess guess guess").status_code == 401
    assert login(attacker, ANN).status_code == 429
    assert login(browser(app, "198.51.100.1"), ANN).status_code == 302


def test_guessing_from_many_addresses_slows_new_devices_but_not_the_users_own(app, db, ann):
    own = browser(app, "198.51.100.1")
    assert login(own, ANN).status_code == 302
    post(own, "/dashboard/logout")
    for n in range(10):  # a botnet: one guess per address, so no address is ever locked
        assert login(browser(app, f"203.0.113.{n + 1}"), ANN, "guess guess guess").status_code == 401
    fresh = [login(browser(app, f"192.0.2.{n + 1}"), ANN, "guess guess guess").status_code for n in range(5)]
    assert fresh[0] == 401 and fresh[1:] == [429] * 4  # one try per 10 seconds from new devices
    assert login(own, ANN).status_code == 302  # the browser Ann used before is never slowed
    assert login(browser(app, "198.51.100.9"), ANN).status_code == 429  # a new device of Ann's waits...
    assert "login_refused" in actions(db)


def test_an_admin_unlock_lets_a_new_device_in_and_is_audited(app, db, ann, runner, monkeypatch, settings):
    monkeypatch.setenv("HELPLINE_INSTANCE_DIR", str(settings.instance_dir))
    monkeypatch.setenv("DATABASE_URL", settings.database_url or "")
    monkeypatch.setenv("SECRET_KEY", app.config["SECRET_KEY"])
    for n in range(10):
        login(browser(app, f"203.0.113.{n + 1}"), ANN, "guess guess guess")
    same = browser(app, "203.0.113.1")
    for _ in range(5):
        login(same, ANN, "guess guess guess")
    assert login(browser(app, "198.51.100.9"), ANN).status_code == 429
    assert login(same, ANN).status_code == 429
    result = runner.invoke(main, ["staff", "unlock", ANN])
    assert result.exit_code == 0, result.output
    assert login(browser(app, "198.51.100.9"), ANN).status_code == 302
    assert login(same, ANN).status_code == 302  # the account+address lock is cleared too
    with db.session() as s:
        [entry] = s.scalars(select(AuditLog).where(AuditLog.action == "login_unlocked")).all()
        assert entry.staff_id is not None and entry.detail == "by an admin"


def test_an_unknown_email_is_slowed_exactly_like_a_known_one(app, ann):
    statuses = {}
    for email in (ANN, "nobody@clinic.test"):
        for n in range(10):
            login(browser(app, f"203.0.113.{n + 1}"), email, "guess guess guess")
        statuses[email] = [login(browser(app, f"192.0.2.{n + 1}"), email, "guess guess guess").status_code
                           for n in range(3)]
    assert statuses[ANN] == statuses["nobody@clinic.test"] == [401, 429, 429]
