"""Shared fixtures: an app on a real SQLite file, a signed-webhook helper, the core bot."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
import os
from itertools import count
from pathlib import Path
from uuid import uuid4

import pytest
from click.testing import CliRunner
from twilio.request_validator import RequestValidator

from bot.config import DEFAULT_REPLIES_DIR, Settings
from bot.core.engine import get_bot
from bot.web import create_app

TOKEN = "test-auth-token"
ACCOUNT_SID = "AC" + "0" * 32
CLINIC_NUMBER = "+15625731504"
TEXTER = "+15555550100"


@dataclass
class Reply:
    """A parsed TwiML answer to one webhook call."""

    status: int
    content_type: str
    text: str | None  # the <Message> body, None when Twilio is told to send nothing
    raw: str


class SMS:
    """Sends correctly signed Twilio Messaging webhooks to the test client."""

    def __init__(self, client, token: str = TOKEN, base_url: str = "http://localhost"):
        self.client = client
        self.token = token
        self.base_url = base_url
        self._sids = count(1)

    def params(self, body: str | None = "", sender: str = TEXTER, sid: str | None = None, **extra) -> dict:
        """The form Twilio would post (plus any extra fields)."""
        params = {
            "MessageSid": sid or f"SM{next(self._sids):032d}",
            "AccountSid": "AC" + "0" * 32,
            "From": sender,
            "To": CLINIC_NUMBER,
            "NumMedia": "0",
            "NumSegments": "1",
            "ApiVersion": "2010-04-01",
        }
        if body is not None:
            params["Body"] = body
        params.update({k: str(v) for k, v in extra.items()})
        return params

    def signature(self, params: dict, url: str) -> str:
        """X-Twilio-Signature for this URL and form, as Twilio computes it."""
        return RequestValidator(self.token).compute_signature(url, params)

    def post(self, params: dict, signed_url: str | None = None, headers: dict | None = None,
             path: str = "/sms", sign: bool = True, **kwargs) -> Reply:
        """Post a form, signed for ``signed_url`` (the URL Twilio believes it called)."""
        hdrs = dict(headers or {})
        if sign:
            hdrs["X-Twilio-Signature"] = self.signature(params, signed_url or self.base_url + path)
        resp = self.client.post(path, data=params, headers=hdrs, **kwargs)
        raw = resp.get_data(as_text=True)
        text = None
        if resp.status_code == 200 and raw.startswith("<?xml"):
            node = ET.fromstring(raw).find("Message")
            text = node.text if node is not None else None
        return Reply(resp.status_code, resp.headers.get("Content-Type", ""), text, raw)

    def send(self, body: str | None = "", sender: str = TEXTER, sid: str | None = None, **extra) -> Reply:
        """Send one signed text and return the parsed reply."""
        return self.post(self.params(body, sender, sid, **extra))


POSTGRES_URL = os.environ.get("HELPLINE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REQUIRE_POSTGRES = os.environ.get("HELPLINE_REQUIRE_POSTGRES") == "1"


def pytest_configure(config):
    config.addinivalue_line("markers", "storage: about storage itself (transactions, locks, SQL); also runs on PostgreSQL")
    config.addinivalue_line("markers", "real_password_hashing: hash passwords with production's scrypt")
    config.addinivalue_line("markers", "sqlite_only: relies on SQLite itself (triggers, files); not run on PostgreSQL")
    config.addinivalue_line("markers", "solo: starts its own servers and holds them to deadlines; `make test` runs these "
                                       "after the rest, one at a time, so no other test competes for the CPU")


def pytest_generate_tests(metafunc):
    """Tests about storage run on SQLite and PostgreSQL; every other test once, on SQLite."""
    if "database_url" in metafunc.fixturenames:
        legs = ["sqlite", "postgresql"] if metafunc.definition.get_closest_marker("storage") else ["sqlite"]
        metafunc.parametrize("database_url", legs, indirect=True)


@pytest.fixture(autouse=True)
def fast_password_hashing(request, monkeypatch):
    """Tests hash passwords with one round of PBKDF2 instead of scrypt (the dashboard tests spent most of
    their time hashing); a test marked ``real_password_hashing`` keeps production's method."""
    if request.node.get_closest_marker("real_password_hashing") is None:
        from bot.staff import accounts
        monkeypatch.setattr(accounts, "PASSWORD_METHOD", "pbkdf2:sha256:1")


@pytest.fixture(scope="session")
def postgres_admin():
    """An engine on the machine's PostgreSQL, or a visible skip when there is none (a failure in CI)."""
    from sqlalchemy import create_engine, text
    engine = create_engine(POSTGRES_URL, connect_args={"connect_timeout": 3}, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001
        engine.dispose()
        message = f"PostgreSQL not reachable at {POSTGRES_URL} ({type(exc).__name__}): PostgreSQL tests skipped"
        if REQUIRE_POSTGRES:
            pytest.fail(message.replace("skipped", "REQUIRED (HELPLINE_REQUIRE_POSTGRES=1)"), pytrace=False)
        pytest.skip(message)
    yield engine
    engine.dispose()


@pytest.fixture
def database_url(request, tmp_path: Path) -> str | None:
    """A SQLite file, or (for tests marked ``storage``, a second time) a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        return None  # the instance folder's SQLite file
    if request.node.get_closest_marker("sqlite_only"):
        pytest.skip("SQLite-specific test")
    from sqlalchemy import text
    admin = request.getfixturevalue("postgres_admin")
    schema = f"t_{uuid4().hex[:16]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))

    def drop():
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))

    request.addfinalizer(drop)
    sep = "&" if "?" in POSTGRES_URL else "?"
    return f"{POSTGRES_URL}{sep}options=-csearch_path%3D{schema}"


@pytest.fixture
def settings(tmp_path: Path, database_url) -> Settings:
    """Production-like settings: a real auth token, SQLite or PostgreSQL, a temporary instance folder."""
    return Settings(database_url=database_url, twilio_auth_token=TOKEN, twilio_account_sid=ACCOUNT_SID, twilio_phone_number=CLINIC_NUMBER,
                    secret_key="test-secret", instance_dir=tmp_path, replies_dir=DEFAULT_REPLIES_DIR)


@pytest.fixture
def app(settings: Settings):
    """The app with its schema created."""
    app = create_app(settings)
    app.config["TESTING"] = True
    app.extensions["helpline"].db.create_all()
    yield app
    app.extensions["helpline"].db.engine.dispose()


@pytest.fixture
def client(app):
    """Flask's test client."""
    return app.test_client()


@pytest.fixture
def sms(client) -> SMS:
    """Signed-webhook helper bound to the test client."""
    return SMS(client)


@pytest.fixture
def db(app):
    """The app's database handle (real SQLite)."""
    return app.extensions["helpline"].db


@pytest.fixture(scope="session")
def bot():
    """The pure core with the shipped content."""
    return get_bot(str(DEFAULT_REPLIES_DIR))


@pytest.fixture
def runner() -> CliRunner:
    """Click's CLI runner."""
    return CliRunner()


def make_healthy(app, email: str = "oncall@clinic.test", phone: str = "+15555550900"):
    """Give an app what /healthz wants: an on-call staff member and a live dispatcher heartbeat."""
    from bot.staff.accounts import add_staff, find
    from bot.store.models import Heartbeat, utcnow
    db = app.extensions["helpline"].db
    with db.session() as s:
        if find(s, email) is None:
            add_staff(s, "On Call", email, phone, "correct horse battery", on_call=True)
        s.merge(Heartbeat(name="test", beat_at=utcnow()))
    return app
