"""The fault harness: the shipped server under load while its database refuses, hangs and recovers.

gunicorn with the shipped config (2 workers x 4 threads, gthread), a ``helpline worker``, a fake
Twilio, and the database behind a fault: PostgreSQL through a TCP proxy (tests/faultproxy.py)
that refuses or hangs; SQLite made unwritable (``chattr +i``) or write-locked by another
connection. In each fault, 200 signed texts (a third of them crises) and 40 web chat messages
go 8 at a time, with a poisoned spool entry among them; then the fault ends and the harness
counts: every crisis answered with 911/988, every answer within 5 s, every message stored
exactly once, one escalation per crisis conversation, one page round each, the poisoned entry
in the dead letters and shown on /healthz and the dashboard.

The measured counts are printed (``pytest -s``) and quoted in the README's reliability section.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
from sqlalchemy import func, select
from twilio.request_validator import RequestValidator

from bot.core.engine import Inbound, get_bot
from bot.config import DEFAULT_REPLIES_DIR
from bot.staff.accounts import add_staff
from bot.store.db import Database
from bot.store.models import Contact, Escalation, Message, Outbox, utcnow
from bot.store.spool import Spool
from conftest import ACCOUNT_SID, CLINIC_NUMBER, TOKEN
from faultproxy import HANG, REFUSE, DatabaseFault, FaultProxy, can_make_unwritable
from test_worker_processes import FakeTwilio, helpline_command

REPO = Path(__file__).resolve().parent.parent
GUNICORN = REPO / ".venv" / "bin" / "gunicorn"
BOUND = 5.0  # seconds: the promise; Twilio itself gives up at 15
TWILIO_TIMEOUT = 15.0
CONCURRENCY = 8
SENDERS, TEXTS_EACH, CRISIS_SENDERS = 50, 4, 34  # 200 texts, 68 of them crises (a third)
CHATS, CHAT_EACH, CRISIS_CHATS = 10, 4, 4  # 40 chat messages
ON_CALL = "+15555550901"
PASSWORD = "correct horse battery"
CRISES = ["I took 30 valium", "my brother took all his pills and won't wake up", "i want to kill myself tonight",
          "me tomé 30 pastillas de valium", "he is not breathing"]
ROUTINE = ["what are your hours", "how much does detox cost", "is valium withdrawal dangerous",
           "do you take insurance", "where are you located"]
POISON = "I took 30 valium \ud800"  # no database driver can encode a lone surrogate

pytestmark = [pytest.mark.skipif(not GUNICORN.exists(), reason="gunicorn is not installed in .venv"), pytest.mark.solo]


@dataclass
class Answer:
    kind: str  # sms or chat
    who: str  # the sender's number, or the chat's conversation id
    crisis: bool
    status: int
    text: str
    seconds: float


@dataclass
class Phase:
    """One fault's traffic and what came back."""

    name: str
    answers: list[Answer] = field(default_factory=list)
    crisis_senders: set[str] = field(default_factory=set)
    routine_senders: set[str] = field(default_factory=set)
    sids: list[str] = field(default_factory=list)
    chats: dict[str, bool] = field(default_factory=dict)  # conversation id -> is a crisis conversation
    start_refused: dict = field(default_factory=dict)
    spooled: int = 0  # entries waiting in the spool when the fault ended


class Cluster:
    """gunicorn + a dispatcher + a fake Twilio, on SQLite or on PostgreSQL behind the fault proxy."""

    def __init__(self, database_url: str | None, tmp_path: Path):
        self.tmp = tmp_path
        self.instance = tmp_path / "instance"
        self.sqlite_file = self.instance / "helpline.sqlite3"
        self.proxy = FaultProxy() if database_url else None
        self.switch = DatabaseFault(self.proxy, self.sqlite_file)
        self.fake = FakeTwilio()
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.public = f"http://127.0.0.1:{port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TWILIO_", "HELPLINE_")) and k != "DATABASE_URL"}
        env.update(SECRET_KEY="fault-harness-secret", TWILIO_AUTH_TOKEN=TOKEN, TWILIO_ACCOUNT_SID=ACCOUNT_SID,
                   TWILIO_PHONE_NUMBER=CLINIC_NUMBER, HELPLINE_PUBLIC_URL=self.public,
                   HELPLINE_TWILIO_API_URL=self.fake.url, HELPLINE_INSTANCE_DIR=str(self.instance),
                   HELPLINE_BIND=f"127.0.0.1:{port}", HELPLINE_WEB_WORKERS="2", HELPLINE_WEB_THREADS="4",
                   HELPLINE_TRUSTED_PROXIES="1", PYTHONUNBUFFERED="1")
        if database_url:
            env["DATABASE_URL"] = database_url.replace("127.0.0.1:5432", f"127.0.0.1:{self.proxy.port}")
        subprocess.run([*helpline_command(), "db", "upgrade"], env=env, check=True, timeout=60, capture_output=True)
        self.db = Database(database_url or f"sqlite:///{self.sqlite_file}")  # the harness's own, never faulted
        with self.db.session() as s:
            add_staff(s, "On Call", "oncall@clinic.test", ON_CALL, PASSWORD, on_call=True)
        self.logs = tmp_path / "logs"
        self.logs.mkdir()
        self.procs = [
            subprocess.Popen([str(GUNICORN), "-c", "gunicorn.conf.py", "app:app"], cwd=REPO, env=env,
                             stdout=open(self.logs / "web.log", "w"), stderr=subprocess.STDOUT, start_new_session=True),
            subprocess.Popen([*helpline_command(), "worker", "--interval", "0.2"], cwd=REPO, env=env,
                             stdout=open(self.logs / "worker.log", "w"), stderr=subprocess.STDOUT,
                             start_new_session=True),
        ]
        self.spool = Spool(self.instance / "spool.sqlite3")
        _wait(lambda: self.health() is not None, "gunicorn to answer", 60)

    # -- faults --------------------------------------------------------------------------
    def fault(self, mode: str) -> None:
        self.switch.set(mode)

    def recover(self) -> None:
        self.switch.recover()

    def close(self) -> None:
        self.recover()
        for proc in self.procs:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        self.db.engine.dispose()
        self.fake.close()
        if self.proxy is not None:
            self.proxy.close()

    # -- requests ------------------------------------------------------------------------
    def health(self) -> dict | None:
        try:
            return requests.get(self.public + "/healthz", timeout=10).json()
        except requests.RequestException:
            return None

    def text(self, sender: str, body: str, sid: str) -> requests.Response:
        params = {"MessageSid": sid, "AccountSid": ACCOUNT_SID, "From": sender, "To": CLINIC_NUMBER, "Body": body,
                  "NumMedia": "0", "NumSegments": "1", "ApiVersion": "2010-04-01"}
        url = self.public + "/sms"
        return requests.post(url, data=params, timeout=TWILIO_TIMEOUT,
                             headers={"X-Twilio-Signature": RequestValidator(TOKEN).compute_signature(url, params)})

    def start_chat(self, visitor: str) -> requests.Response:
        return requests.post(self.public + "/chat/api/start", json={}, timeout=TWILIO_TIMEOUT,
                             headers={"X-Forwarded-For": visitor})

    def chat(self, token: str, visitor: str, text: str) -> requests.Response:
        return requests.post(self.public + "/chat/api/messages", json={"text": text}, timeout=TWILIO_TIMEOUT,
                             headers={"Authorization": f"Bearer {token}", "X-Forwarded-For": visitor})

    def dashboard_banner(self) -> str:
        sess = requests.Session()
        token = re.search(r'name="csrf-token" content="([^"]+)"', sess.get(self.public + "/dashboard/login").text)
        sess.post(self.public + "/dashboard/login", data={"email": "oncall@clinic.test", "password": PASSWORD,
                                                          "csrf_token": token.group(1)}, timeout=10)
        return sess.get(self.public + "/dashboard/", timeout=10).text


def _wait(predicate, what: str, timeout: float):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


def run_phase(cluster: Cluster, name: str, mode: str, n: int) -> Phase:
    """Chats open, the fault starts, 240 messages go 8 at a time (a poisoned entry joins them), recovery."""
    phase = Phase(name)
    visitors = {}
    for c in range(CHATS):
        visitor = f"198.51.{100 + n}.{c + 1}"
        started = cluster.start_chat(visitor).json()
        visitors[started["conversation"]] = (started["token"], visitor)
        phase.chats[started["conversation"]] = c < CRISIS_CHATS
    tasks = []
    for k in range(TEXTS_EACH):
        for s in range(SENDERS):
            sender = f"+1555{n}{s:06d}"
            crisis = s < CRISIS_SENDERS and k in (1, 3)  # crisis conversations: routine, crisis, routine, crisis
            (phase.crisis_senders if s < CRISIS_SENDERS else phase.routine_senders).add(sender)
            sid = f"SM{n:02d}{s:04d}{k:02d}" + "0" * 24
            phase.sids.append(sid)
            body = (CRISES if crisis else ROUTINE)[(s + k) % 5]
            tasks.append(("sms", sender, body, crisis, sid))
        for conversation, crisis_chat in list(phase.chats.items()):
            crisis = crisis_chat and k in (0, 2)
            tasks.append(("chat", conversation, (CRISES if crisis else ROUTINE)[k % 5], crisis, None))
    # A poisoned entry joins the spool mid-way: as journalled by a release that let a lone surrogate through.
    poison_at = len(tasks) // 2

    def send(i: int) -> Answer:
        kind, who, body, crisis, sid = tasks[i]
        if i == poison_at and mode == REFUSE:
            cluster.spool.append(Inbound(sender=f"+1555{n}999999", body=POISON, message_id=f"SM{n:02d}" + "f" * 30),
                                 utcnow())
        started = time.monotonic()
        if kind == "sms":
            resp = cluster.text(who, body, sid)
            text = (re.search(r"<Message>(.*?)</Message>", resp.text, re.S) or [None, ""])[1]
        else:
            token, visitor = visitors[who]
            resp = cluster.chat(token, visitor, body)
            text = (resp.json().get("reply") or "") if resp.headers.get("Content-Type", "").startswith(
                "application/json") else ""
        return Answer(kind, who, crisis, resp.status_code, text, time.monotonic() - started)

    cluster.fault(mode)
    try:
        with ThreadPoolExecutor(max_workers=CONCURRENCY) as pool:
            phase.answers = list(pool.map(send, range(len(tasks))))
        refused = cluster.start_chat(f"198.51.{100 + n}.250")
        phase.start_refused = {"status": refused.status_code, "message": refused.json().get("message", "")}
        phase.spooled = cluster.spool.counts().pending
    finally:
        cluster.recover()
    return phase


def counts(cluster: Cluster, phase: Phase) -> dict:
    """What the database holds for one phase's traffic, and how its answers went."""
    answers = phase.answers
    crises = [a for a in answers if a.crisis]
    with cluster.db.session() as s:
        rows = s.execute(select(Message.sid, func.count()).where(Message.sid.in_(phase.sids))
                         .group_by(Message.sid)).all()
        chat_contacts = {f"web:{c}" for c in phase.chats}
        chat_rows = s.scalar(select(func.count()).select_from(Message).join(Contact)
                             .where(Contact.address.in_(chat_contacts), Message.direction == "in"))
        by_contact = Counter(s.scalars(select(Contact.address).join(Escalation, Escalation.contact_id == Contact.id)
                                       .where(Contact.address.in_(phase.crisis_senders | phase.routine_senders
                                                                  | chat_contacts))).all())
        escalations = s.scalars(select(Escalation).join(Contact).where(
            Contact.address.in_(set(by_contact)))).all()
        pages = Counter(s.scalars(select(Outbox.escalation_id).where(
            Outbox.kind == "page", Outbox.escalation_id.in_([e.id for e in escalations]))).all())
        rounds = {e.id: e.page_round for e in escalations}
    sent = Counter(int(m.group(1)) for r in cluster.fake.received()
                   if (m := re.search(r"#(\d+)", r["form"].get("Body", ""))) and int(m.group(1)) in rounds)
    crisis_conversations = phase.crisis_senders | {f"web:{c}" for c, crisis in phase.chats.items() if crisis}
    return {
        "phase": phase.name,
        "texts": sum(a.kind == "sms" for a in answers), "chat_messages": sum(a.kind == "chat" for a in answers),
        "crises": len(crises),
        "crises_answered_911_988": sum(a.status == 200 and "911" in a.text and "988" in a.text for a in crises),
        "answers_200": sum(a.status == 200 for a in answers),
        "slowest_answer_s": round(max(a.seconds for a in answers), 2),
        "median_answer_s": round(sorted(a.seconds for a in answers)[len(answers) // 2], 3),
        "answers_over_5s": sum(a.seconds >= BOUND for a in answers),
        "texts_stored": len(rows), "texts_stored_twice": sum(n > 1 for _, n in rows),
        "chat_messages_stored": chat_rows,
        "crisis_conversations": len(crisis_conversations),
        "escalations": sum(by_contact.values()),
        "crisis_conversations_with_one_escalation": sum(by_contact[c] == 1 for c in crisis_conversations),
        "routine_conversations_escalated": sum(1 for c in by_contact if c not in crisis_conversations),
        "page_rows_per_escalation": sorted(set(pages[e] for e in rounds)),
        "page_rounds": sorted(set(rounds.values())),
        "pages_at_twilio_per_escalation": sorted(set(sent[e] for e in rounds)),
        "chat_start_in_fault": phase.start_refused.get("status"),
        "spooled_in_fault": phase.spooled,
    }


@pytest.fixture
def cluster(database_url, tmp_path):
    c = Cluster(database_url, tmp_path)
    yield c
    c.close()


def test_fault_harness_database_refusing_then_hanging(cluster, database_url, capsys):
    if database_url is None and not can_make_unwritable():
        pytest.skip("chattr is needed to make the SQLite file unwritable")
    bot = get_bot(str(DEFAULT_REPLIES_DIR))
    assert all(bot.decide(Inbound(sender="x", body=b)).triage.pages for b in CRISES)
    assert not any(bot.decide(Inbound(sender="x", body=b)).triage.escalate for b in ROUTINE)
    backend = "postgresql" if database_url else "sqlite"
    report = []
    for n, (mode, label) in enumerate([(REFUSE, "refusing" if database_url else "unwritable file"),
                                       (HANG, "hanging" if database_url else "write lock held")], start=1):
        phase = run_phase(cluster, f"{backend}: {label}", mode, n)
        expected = len(phase.crisis_senders) + CRISIS_CHATS
        _wait(lambda: cluster.spool.counts().pending == 0, "the spool to drain after recovery", 90)
        _wait(lambda: counts(cluster, phase)["escalations"] >= expected
              and len(cluster.fake.received()) >= sum(r["escalations"] for r in report) + expected,
              "every page to reach Twilio", 60)
        time.sleep(1.0)  # a duplicate page would arrive now
        c = counts(cluster, phase)
        report.append(c)

        assert c["crises_answered_911_988"] == c["crises"] == 2 * CRISIS_SENDERS + 2 * CRISIS_CHATS
        assert c["answers_200"] == len(phase.answers) and c["answers_over_5s"] == 0
        assert c["texts_stored"] == SENDERS * TEXTS_EACH and c["texts_stored_twice"] == 0
        assert c["chat_messages_stored"] == CHATS * CHAT_EACH
        assert c["crisis_conversations_with_one_escalation"] == c["crisis_conversations"] == c["escalations"]
        assert c["routine_conversations_escalated"] == 0
        assert c["page_rows_per_escalation"] == [1] and c["page_rounds"] == [0]
        assert c["pages_at_twilio_per_escalation"] == [1]
        assert c["chat_start_in_fault"] == 503 and "911" in phase.start_refused["message"]
        # The fault was real: nothing reached the database while it lasted (the poisoned entry joins in one).
        assert c["spooled_in_fault"] == len(phase.answers) + (mode == REFUSE)

    # The poisoned entry: everything else stored (above), it alone in the dead letters, and said so.
    held = cluster.spool.counts()
    assert (held.pending, held.dead, held.dead_crises) == (0, 1, 1)
    health = cluster.health()
    assert health["status"] == "degraded" and health["checks"]["spool_dead"] == 1
    assert any("could not be stored, 1 of them escalating" in p for p in health["checks"]["problems"])
    assert "MESSAGES NOT STORED" in cluster.dashboard_banner()

    # A forged log line through a MessageSid is refused, and the log has one line per record.
    forged = cluster.text("+15550000001", "hi", "SM" + "1" * 32 + "\n2026-01-01 CRITICAL forged record")
    assert forged.status_code == 400
    web_log = (cluster.logs / "web.log").read_text()
    assert not any(line.startswith("2026-01-01 CRITICAL forged") for line in web_log.splitlines())
    assert "+15551" not in web_log and "kill myself" not in web_log  # no numbers or bodies in the log

    with capsys.disabled():
        for c in report:
            print("\nFAULT HARNESS " + json.dumps(c))
