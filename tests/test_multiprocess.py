"""Many processes, one truth: gunicorn workers and dispatchers against one PostgreSQL.

Starts real processes (gunicorn with several workers, two ``helpline worker``s), fires
concurrent signed webhooks including duplicate deliveries of the same MessageSid, races two
staff claims through different web workers, then checks the database and the fake Twilio's log.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from sqlalchemy import func, select
from twilio.request_validator import RequestValidator

from bot.staff.accounts import add_staff
from bot.store.db import Database
from bot.store.models import AuditLog, Escalation, Message, Outbox
from conftest import ACCOUNT_SID, CLINIC_NUMBER, TOKEN
from test_worker_processes import WAIT, FakeTwilio, helpline_command

REPO = Path(__file__).resolve().parent.parent
GUNICORN = REPO / ".venv" / "bin" / "gunicorn"
STAFF = {"ann@clinic.test": "+15555550901", "bob@clinic.test": "+15555550902"}
PASSWORD = "correct horse battery"
CONVERSATIONS = 12
pytestmark = [pytest.mark.solo, pytest.mark.skipif(not GUNICORN.exists(), reason="gunicorn is not installed in .venv"),
              pytest.mark.storage]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, what: str, timeout: float = WAIT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def postgres_url(database_url):
    """A fresh PostgreSQL schema (this test is about PostgreSQL; SQLite runs it as one process)."""
    url = database_url
    if url is None:
        pytest.skip("multi-process test runs on PostgreSQL")
    return url


@pytest.fixture
def cluster(postgres_url, tmp_path):
    """gunicorn (3 workers) + 2 dispatchers + a fake Twilio, all on 127.0.0.1."""
    fake = FakeTwilio(delay=0.05)
    port = free_port()
    public = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TWILIO_", "HELPLINE_")) and k != "DATABASE_URL"}
    env.update(DATABASE_URL=postgres_url, SECRET_KEY="multi-process-test-secret", TWILIO_AUTH_TOKEN=TOKEN,
               TWILIO_ACCOUNT_SID=ACCOUNT_SID, TWILIO_PHONE_NUMBER=CLINIC_NUMBER, HELPLINE_PUBLIC_URL=public,
               HELPLINE_TWILIO_API_URL=fake.url, HELPLINE_INSTANCE_DIR=str(tmp_path / "instance"),
               HELPLINE_BIND=f"127.0.0.1:{port}", HELPLINE_WEB_WORKERS="3", PYTHONUNBUFFERED="1")
    subprocess.run([*helpline_command(), "db", "upgrade"], env=env, check=True, timeout=WAIT, capture_output=True)
    db = Database(postgres_url)
    with db.session() as s:
        for email, phone in STAFF.items():
            add_staff(s, email.split("@")[0].title(), email, phone, PASSWORD, on_call=True)
    logs = tmp_path / "logs"
    logs.mkdir()
    procs = [subprocess.Popen([str(GUNICORN), "-c", "gunicorn.conf.py", "app:app"], cwd=REPO, env=env,
                              stdout=open(logs / "web.log", "w"), stderr=subprocess.STDOUT, start_new_session=True)]
    for i in range(2):
        procs.append(subprocess.Popen([*helpline_command(), "worker", "--interval", "0.1"], cwd=REPO, env=env,
                                      stdout=open(logs / f"worker{i}.log", "w"), stderr=subprocess.STDOUT,
                                      start_new_session=True))
    try:
        wait_for(lambda: _up(public), "gunicorn to answer /healthz")
        yield public, db, fake, logs
    finally:
        for proc in procs:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        db.engine.dispose()
        fake.close()


def _up(public: str) -> bool:
    try:
        return requests.get(public + "/healthz", timeout=1).status_code == 200
    except requests.RequestException:
        return False


def signed_post(public: str, params: dict) -> requests.Response:
    url = public + "/sms"
    sig = RequestValidator(TOKEN).compute_signature(url, params)
    return requests.post(url, data=params, headers={"X-Twilio-Signature": sig}, timeout=WAIT)


def test_many_processes_behave_like_one(cluster):
    public, db, fake, logs = cluster
    deliveries = []
    for n in range(CONVERSATIONS):
        sender = f"+1555777{n:04d}"
        for k, body in enumerate(("I took 30 valium", "please help me he is not breathing")):
            params = {"MessageSid": f"SM{n:04d}{k}{'0' * 27}", "From": sender, "To": CLINIC_NUMBER,
                      "Body": body, "NumMedia": "0", "AccountSid": ACCOUNT_SID}
            deliveries += [params, params, params]  # Twilio retries: the same MessageSid three times
    with ThreadPoolExecutor(max_workers=16) as pool:
        replies = list(pool.map(lambda p: signed_post(public, p), deliveries))

    assert all(r.status_code == 200 for r in replies), [r.status_code for r in replies]
    by_sid: dict[str, set[str]] = {}
    for params, reply in zip(deliveries, replies):
        by_sid.setdefault(params["MessageSid"], set()).add(reply.text)
    assert all(len(texts) == 1 for texts in by_sid.values())  # retries get the identical reply
    assert all("911" in next(iter(texts)) for texts in by_sid.values())

    expected_pages = CONVERSATIONS * len(STAFF)
    wait_for(lambda: len(fake.received()) >= expected_pages, "every page to reach Twilio")
    time.sleep(1.0)  # any duplicate send would arrive now
    with db.session() as s:
        sids = s.execute(select(Message.sid, func.count()).where(Message.direction == "in")
                         .group_by(Message.sid)).all()
        assert len(sids) == 2 * CONVERSATIONS and all(count == 1 for _, count in sids)
        per_contact = s.execute(select(Escalation.contact_id, func.count()).group_by(Escalation.contact_id)).all()
        assert len(per_contact) == CONVERSATIONS and all(count == 1 for _, count in per_contact)
        pages = s.scalars(select(Outbox).where(Outbox.kind == "page")).all()
        assert len(pages) == expected_pages and {p.status for p in pages} == {"sent"}
    sent = Counter((r["form"]["To"], re.search(r"#(\d+)", r["form"]["Body"]).group(1)) for r in fake.received())
    assert len(sent) == expected_pages and set(sent.values()) == {1}  # each page exactly once

    # Two staff click "claim" at the same moment, through whichever web workers answer them.
    with db.session() as s:
        esc_id = s.scalars(select(Escalation.id).order_by(Escalation.id)).first()
    sessions = [login(public, email) for email in STAFF]
    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(lambda sess: claim(public, sess, esc_id), sessions))
    with db.session() as s:
        esc = s.get(Escalation, esc_id)
        assert esc.status == "claimed" and esc.claimed_by_id is not None
        claims = s.scalars(select(AuditLog.staff_id).where(AuditLog.action == "claim",
                                                           AuditLog.escalation_id == esc_id)).all()
        assert claims == [esc.claimed_by_id]  # one winner, and the loser was told so
    web_log = (logs / "web.log").read_text()
    assert "+1555777" not in web_log and "I took 30 valium" not in web_log


def login(public: str, email: str) -> tuple[requests.Session, str]:
    sess = requests.Session()
    page = sess.get(public + "/dashboard/login", timeout=WAIT).text
    token = re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)
    resp = sess.post(public + "/dashboard/login", data={"email": email, "password": PASSWORD, "csrf_token": token},
                     timeout=WAIT, allow_redirects=False)
    assert resp.status_code == 302
    queue = sess.get(public + "/dashboard/", timeout=WAIT).text
    return sess, re.search(r'name="csrf-token" content="([^"]+)"', queue).group(1)


def claim(public: str, session: tuple[requests.Session, str], esc_id: int) -> int:
    sess, token = session
    return sess.post(f"{public}/dashboard/escalations/{esc_id}/claim", data={"csrf_token": token},
                     timeout=WAIT, allow_redirects=False).status_code
