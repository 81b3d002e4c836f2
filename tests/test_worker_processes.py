"""``helpline worker`` as real processes against a local fake Twilio: one pass, a killed worker, two at once."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl
from uuid import uuid4

import pytest
from sqlalchemy import select, update

from bot.config import Settings
from bot.core.engine import Inbound
from bot.staff.accounts import add_staff
from bot.store.models import Escalation, Heartbeat, Outbox, utcnow
from bot.web import create_app
from conftest import ACCOUNT_SID, CLINIC_NUMBER, TEXTER, TOKEN

pytestmark = pytest.mark.storage  # dispatcher leases across processes

REPO = Path(__file__).resolve().parent.parent
MESSAGES_PATH = f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
WAIT = 20.0  # seconds: the bound on every wait in this module


def helpline_command() -> list[str]:
    """The installed ``helpline`` script beside this interpreter (the venv's), else the module."""
    for candidate in (Path(sys.executable).with_name("helpline"), REPO / ".venv" / "bin" / "helpline"):
        if candidate.exists():
            return [str(candidate)]
    return [sys.executable, "-m", "bot.cli"]


class FakeTwilio:
    """Twilio's Messages endpoint on 127.0.0.1: records each POST and answers 201 with a fresh SID."""

    def __init__(self, hang_first: bool = False, delay: float = 0.0):
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        self.release = threading.Event()  # lets a hung first request finish
        self.hang_first = hang_first
        self.delay = delay
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length") or 0)
                form = dict(parse_qsl(self.rfile.read(length).decode()))
                sid = "SM" + uuid4().hex
                with fake.lock:
                    first = not fake.requests
                    fake.requests.append({"path": self.path, "form": form, "sid": sid,
                                          "auth": self.headers.get("Authorization", "")})
                if fake.hang_first and first:
                    fake.release.wait(WAIT * 2)
                elif fake.delay:
                    time.sleep(fake.delay)  # widen the window in which two workers overlap
                if self.path != MESSAGES_PATH:
                    status, payload = 404, {"code": 20404, "message": "not found", "status": 404}
                else:
                    status, payload = 201, {"sid": sid, "status": "queued", "to": form.get("To"),
                                            "from": form.get("From"), "body": form.get("Body"),
                                            "account_sid": ACCOUNT_SID, "num_segments": "1"}
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass  # the caller was killed while we hung

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def received(self) -> list[dict]:
        with self.lock:
            return list(self.requests)

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake():
    server = FakeTwilio()
    yield server
    server.close()


@pytest.fixture
def env(tmp_path, fake) -> dict:
    """The worker's environment: the instance folder, Twilio credentials, the fake API's URL."""
    environ = {k: v for k, v in os.environ.items()
               if not k.startswith(("TWILIO_", "HELPLINE_")) and k != "DATABASE_URL"}
    environ.update(HELPLINE_INSTANCE_DIR=str(tmp_path / "instance"), TWILIO_ACCOUNT_SID=ACCOUNT_SID,
                   TWILIO_AUTH_TOKEN=TOKEN, TWILIO_PHONE_NUMBER=CLINIC_NUMBER, HELPLINE_TWILIO_API_URL=fake.url,
                   PYTHONUNBUFFERED="1")
    return environ


@pytest.fixture
def app(env):
    """The app on the workers' database (schema created), for setting up staff and escalations."""
    app = create_app(Settings.from_env(env))
    app.extensions["helpline"].db.create_all()
    yield app
    app.extensions["helpline"].db.engine.dispose()


def add_staff_members(app, phones: dict[str, bool]) -> None:
    with app.extensions["helpline"].db.session() as s:
        for i, (phone, on_call) in enumerate(phones.items()):
            add_staff(s, f"Staff {i}", f"staff{i}@clinic.test", phone, "correct horse battery", on_call=on_call)


def crisis(app, sender: str = TEXTER) -> int:
    """An emergency text through the service, as the webhook would deliver it."""
    outcome = app.extensions["helpline"].helpline.handle(
        Inbound(sender=sender, body="I took 30 valium", message_id="SM" + uuid4().hex))
    assert outcome.stored and outcome.escalation_id
    return outcome.escalation_id


def rows(app) -> list[Outbox]:
    with app.extensions["helpline"].db.session() as s:
        return list(s.scalars(select(Outbox).order_by(Outbox.id)))


def wait_until(predicate, timeout: float = WAIT) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def start_worker(env: dict, log: Path, *args: str) -> subprocess.Popen:
    with open(log, "wb") as out:
        return subprocess.Popen([*helpline_command(), "worker", *args], env=env, cwd=REPO,
                                stdout=out, stderr=subprocess.STDOUT)


def run_once(env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([*helpline_command(), "worker", "--once"], env=env, cwd=REPO, capture_output=True,
                          text=True, timeout=WAIT)


def stop(procs: list[subprocess.Popen]) -> None:
    """Stop workers started by this test: SIGTERM, then SIGKILL if they linger."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def test_worker_once_sends_exactly_one_page_per_on_call_staff_member(app, env, fake):
    add_staff_members(app, {"+15555550901": True, "+15555550902": True, "+15555550903": False})
    esc_id = crisis(app)

    done = run_once(env)

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "sent 2"
    received = fake.received()
    assert sorted(r["form"]["To"] for r in received) == ["+15555550901", "+15555550902"]
    expected_auth = "Basic " + base64.b64encode(f"{ACCOUNT_SID}:{TOKEN}".encode()).decode()
    for r in received:
        assert r["path"] == MESSAGES_PATH and r["auth"] == expected_auth
        assert r["form"]["From"] == CLINIC_NUMBER
        assert "EMERGENCY" in r["form"]["Body"] and f"/dashboard/escalations/{esc_id}" in r["form"]["Body"]
        assert "valium" not in r["form"]["Body"]
    pages = rows(app)
    assert all(p.status == "sent" for p in pages)
    assert {p.twilio_sid for p in pages} == {r["sid"] for r in received}
    with app.extensions["helpline"].db.session() as s:
        assert s.get(Escalation, esc_id).pages_sent == 2
    # Logs above DEBUG never show a full number.
    for number in (TEXTER, "+15555550901", "+15555550902"):
        assert number[2:] not in done.stderr

    again = run_once(env)
    assert again.returncode == 0 and again.stdout.strip() == "sent 0"
    assert len(fake.received()) == 2


def test_page_claimed_by_a_killed_worker_is_sent_by_the_next_worker(app, env, fake, tmp_path):
    fake.hang_first = True
    add_staff_members(app, {"+15555550901": True})
    crisis(app)
    [page] = rows(app)
    worker = start_worker(env, tmp_path / "worker.log", "--interval", "0.2")
    try:
        assert wait_until(lambda: len(fake.received()) >= 1), (tmp_path / "worker.log").read_text()
        [page] = rows(app)
        assert page.status == "sending"  # claimed, its request hanging in the fake Twilio

        worker.kill()  # kill -9 mid-send
        worker.wait(timeout=10)
        assert worker.returncode == -signal.SIGKILL
        assert rows(app)[0].status == "sending"

        # The lease runs out (time moved on in the database rather than waited for).
        with app.extensions["helpline"].db.session() as s:
            s.execute(update(Outbox).where(Outbox.id == page.id).values(
                lease_until=utcnow() - timedelta(seconds=1)))
        done = run_once(env)

        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "sent 1"
        received = fake.received()
        assert [r["form"]["To"] for r in received] == ["+15555550901", "+15555550901"]
        [page] = rows(app)
        assert page.status == "sent" and page.twilio_sid == received[1]["sid"]
    finally:
        stop([worker])


def test_two_workers_send_each_of_ten_pages_exactly_once(app, env, fake, tmp_path):
    fake.delay = 0.05
    phones = [f"+1555555{910 + i:04d}" for i in range(10)]
    add_staff_members(app, {phone: True for phone in phones})
    crisis(app)
    assert len(rows(app)) == 10
    workers = []
    try:
        for n in range(2):
            workers.append(start_worker(env, tmp_path / f"worker{n}.log", "--interval", "0.1"))

        all_sent = wait_until(lambda: all(r.status == "sent" for r in rows(app)))
        # Both workers were alive and polling the same queue.
        assert wait_until(lambda: len(heartbeats(app)) >= 2), [p.read_text() for p in tmp_path.glob("*.log")]
        stop(workers)

        assert all_sent, [(r.id, r.status) for r in rows(app)]
        sends = Counter(r["form"]["To"] for r in fake.received())
        assert sends == Counter(phones)  # every page, and each exactly once
        assert len({r.twilio_sid for r in rows(app)}) == 10
        assert all(w.returncode == 0 for w in workers)
    finally:
        stop(workers)


def heartbeats(app) -> list[str]:
    with app.extensions["helpline"].db.session() as s:
        return list(s.scalars(select(Heartbeat.name)))
