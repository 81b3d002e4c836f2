"""The database failing under a running app: bounded answers, the spool, replay, dead letters, limits.

Faults are real: PostgreSQL behind a TCP proxy that refuses or hangs (tests/faultproxy.py), and a
SQLite file made unwritable or write-locked by another connection. The multi-process version
with counts is tests/test_fault_harness.py.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import logging
import multiprocessing
import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from bot.cli import main
from bot.core.engine import Inbound
from bot.staff.accounts import add_staff
from bot.store.models import Escalation, Message, Outbox, aware, utcnow
from bot.store import spool as spool_module
from bot.store.spool import Spool
from bot.web import create_app
from conftest import SMS, TEXTER, make_healthy
from faultproxy import HANG, REFUSE, DatabaseFault, FaultProxy, can_make_unwritable

CRISIS = "I took 30 valium"
ROUTINE = "what are your hours"
BOUND = 5.0  # seconds: every answer, whatever the database does (Twilio gives up at 15)


class Faulty:
    """An app whose database can be made to refuse or hang, and recover."""

    def __init__(self, settings, database_url):
        self.proxy = None
        if database_url is not None:
            self.proxy = FaultProxy()
            settings = dataclasses.replace(settings, database_url=database_url.replace(
                "127.0.0.1:5432", f"127.0.0.1:{self.proxy.port}"))
        self.settings = settings
        self.app = create_app(settings)
        self.app.config["TESTING"] = True
        self.ext = self.app.extensions["helpline"]
        self.ext.db.create_all()
        self.sms = SMS(self.app.test_client())
        self.file = settings.instance_dir / "helpline.sqlite3"
        self.switch = DatabaseFault(self.proxy, self.file)

    @property
    def db(self):
        return self.ext.db

    @property
    def spool(self) -> Spool:
        return self.ext.helpline.spool

    def fault(self, mode: str) -> None:
        if self.proxy is None and mode == REFUSE and not can_make_unwritable():
            pytest.skip("chattr is not available to make the SQLite file unwritable")
        self.switch.set(mode)

    def recover(self) -> None:
        self.switch.recover()
        self.db.breaker.succeeded()  # as after the cool-down's probe: the tests need not wait for it

    def close(self) -> None:
        self.recover()
        self.db.engine.dispose()
        if self.proxy is not None:
            self.proxy.close()


@pytest.fixture
def faulty(settings, database_url):
    f = Faulty(settings, database_url)
    with f.db.session() as s:
        add_staff(s, "Ann", "ann@clinic.test", "+15555550901", "correct horse battery", on_call=True)
    yield f
    f.close()


def count(db, model, *where) -> int:
    with db.session() as s:
        return s.scalar(select(func.count()).select_from(model).where(*where))


def timed(fn, *args, **kwargs):
    started = time.monotonic()
    result = fn(*args, **kwargs)
    return result, time.monotonic() - started


# --- bounded answers ----------------------------------------------------------------------------

@pytest.mark.parametrize("mode", [REFUSE, HANG])
def test_a_failing_database_still_gets_the_crisis_reply_out_within_5_seconds(faulty, mode):
    faulty.fault(mode)
    reply, took = timed(faulty.sms.send, CRISIS, sid="SM" + "a" * 32)
    assert reply.status == 200 and "911" in reply.text and "988" in reply.text
    assert took < BOUND
    routine, took = timed(faulty.sms.send, ROUTINE, sender="+15555550177")
    assert routine.status == 200 and "(562) 573-1504" in routine.text and took < BOUND
    assert faulty.spool.counts().pending == 2

    faulty.recover()
    faulty.sms.send(ROUTINE, sender="+15555550178")  # the next text replays the spool first
    assert faulty.spool.counts().pending == 0
    with faulty.db.session() as s:
        [esc] = s.scalars(select(Escalation)).all()
        first = s.get(Message, esc.first_message_id)
        assert first.sid == "SM" + "a" * 32 and first.body == CRISIS and esc.page_round == 0
        assert s.scalar(select(func.count()).select_from(Outbox).where(Outbox.kind == "page")) == 1
    assert count(faulty.db, Message, Message.direction == "in") == 3


def test_after_a_slow_failure_the_next_texts_skip_the_database_until_it_answers(faulty):
    faulty.fault(HANG)
    _, first = timed(faulty.sms.send, ROUTINE)
    assert first < BOUND
    assert faulty.db.breaker.open
    replies = [timed(faulty.sms.send, CRISIS, sender=f"+1555555{n:04d}") for n in range(5)]
    # Answered from the core without waiting on the database (a hung wait is seconds long).
    assert all("911" in r.text and took < 1.0 for r, took in replies)
    assert faulty.spool.counts().pending == 6
    faulty.recover()
    assert faulty.ext.helpline.replay_spool() == 6
    assert count(faulty.db, Escalation) == 5


def test_the_database_recovers_by_itself_and_pooled_connections_are_replaced(faulty):
    # (After a hang too: the fault harness recovers from both.)
    faulty.sms.send(ROUTINE)  # connections in the pool before the fault
    faulty.fault(REFUSE)
    faulty.sms.send(CRISIS, sender="+15555550166")
    faulty.recover()
    time.sleep(0.1)
    for n in range(3):
        reply = faulty.sms.send(ROUTINE, sender=f"+15555550{n:03d}")
        assert "trouble" not in reply.text
    assert count(faulty.db, Message, Message.direction == "in") == 5 and faulty.spool.counts().pending == 0


# --- the spool under concurrency ----------------------------------------------------------------

def _append_many(path: str, prefix: str, n: int) -> None:
    spool = Spool(path)
    for i in range(n):
        spool.append(Inbound(sender=f"+1555{prefix}{i:05d}", body=f"text {i}", message_id=f"SM{prefix}{i:029d}"),
                     utcnow())


def test_threads_and_processes_append_while_others_replay_and_nothing_is_lost_or_doubled(faulty):
    spool, helpline = faulty.spool, faulty.ext.helpline
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_append_many, args=(str(spool.path), f"9{p}", 40)) for p in range(2)]
    threads = [threading.Thread(target=_append_many, args=(str(spool.path), f"8{t}", 40)) for t in range(4)]
    replaying = threading.Event()
    stored = []

    def replayer():
        while not replaying.is_set():
            stored.append(helpline.replay_spool(budget=1.0, wait=0.2))

    replayers = [threading.Thread(target=replayer) for _ in range(3)]
    for w in (*procs, *threads, *replayers):
        w.start()
    for w in (*procs, *threads):
        w.join(60)
    replaying.set()
    for r in replayers:
        r.join(60)
    stored.append(helpline.replay_spool(budget=30))
    assert sum(stored) == 240
    assert spool.counts().pending == 0
    with faulty.db.session() as s:
        sids = s.execute(select(Message.sid, func.count()).where(Message.direction == "in")
                         .group_by(Message.sid)).all()
    assert len(sids) == 240 and {n for _, n in sids} == {1}


def test_a_spool_writer_waits_for_the_gate_and_goes_on_when_it_is_released(tmp_path):
    spool = Spool(tmp_path / "spool.sqlite3")
    spool.counts()
    gate = tmp_path / "spool.sqlite3-gate"
    assert gate.exists() and gate.stat().st_mode & 0o777 == 0o600
    done = threading.Event()

    def append():
        _append_many(str(spool.path), "71", 1)
        done.set()

    with open(gate, "ab") as held:  # another process's writer, in the middle of its write
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        writer = threading.Thread(target=append)
        writer.start()
        assert not done.wait(0.3)  # queued at the gate, not in the journal
        assert spool.counts().pending == 0
        fcntl.flock(held.fileno(), fcntl.LOCK_UN)
    writer.join(10)
    assert done.is_set() and spool.counts().pending == 1


def test_a_gate_nobody_releases_only_delays_a_spool_write(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(spool_module, "GATE_WAIT", 0.2)
    spool = Spool(tmp_path / "spool.sqlite3")
    with open(tmp_path / "spool.sqlite3-gate", "ab") as stuck:  # a writer hung holding the gate
        fcntl.flock(stuck.fileno(), fcntl.LOCK_EX)
        assert spool.append(Inbound(sender=TEXTER, body="text", message_id="SM" + "5" * 32), utcnow())
        assert spool.hit("texts", "k", timedelta(minutes=1), utcnow()) == 1
    assert spool.counts().pending == 1 and "spool gate not won" in caplog.text


def test_replay_goes_oldest_first_and_a_replayed_crisis_pages_once(faulty):
    faulty.fault(REFUSE)
    faulty.sms.send("where are you located", sid="SM" + "1" * 32)
    faulty.sms.send(CRISIS, sid="SM" + "2" * 32)
    faulty.sms.send("is anyone there", sid="SM" + "3" * 32)
    faulty.sms.send(CRISIS, sid="SM" + "2" * 32)  # Twilio retrying during the outage: journalled once
    assert faulty.spool.counts().pending == 3
    faulty.recover()
    assert faulty.ext.helpline.replay_spool() == 3
    with faulty.db.session() as s:
        rows = s.scalars(select(Message).where(Message.direction == "in").order_by(Message.id)).all()
        assert [m.sid[2] for m in rows] == ["1", "2", "3"]
        [esc] = s.scalars(select(Escalation)).all()
        assert esc.first_message_id == rows[1].id and esc.message_count == 2
        assert s.scalar(select(func.count()).select_from(Outbox).where(Outbox.kind == "page")) == 1
        # Replayed texts were answered when they came: no second answer is stored.
        assert s.scalar(select(func.count()).select_from(Message).where(Message.direction == "out")) == 0


# --- dead letters -------------------------------------------------------------------------------

POISON = "I took 30 valium \ud800"  # a lone surrogate: no database driver can encode it


def poisoned(faulty) -> None:
    """A spool entry the database cannot take (as journalled by a release without edge cleaning)."""
    faulty.spool.append(Inbound(sender="+15555550144", body=POISON, message_id="SM" + "e" * 32), utcnow())


def test_a_poisoned_entry_goes_to_the_dead_letters_and_never_blocks_the_others(faulty, caplog):
    make_healthy(faulty.app)
    faulty.fault(REFUSE)
    faulty.sms.send(CRISIS, sender="+15555550101")
    poisoned(faulty)
    faulty.sms.send(CRISIS, sender="+15555550102")
    faulty.recover()
    with caplog.at_level(logging.INFO):
        for _ in range(3):
            faulty.ext.helpline.replay_spool()
    held = faulty.spool.counts()
    assert (held.pending, held.dead, held.dead_crises) == (0, 1, 1)
    assert count(faulty.db, Escalation) == 2  # both real crises, stored on the first pass
    assert "ESCALATION" not in caplog.text or "\ud800" not in caplog.text
    assert "moved to the dead letters" in caplog.text and "EMERGENCY" in caplog.text

    health = faulty.app.test_client().get("/healthz").get_json()
    assert health["status"] == "degraded" and health["checks"]["spool_dead"] == 1
    assert any("could not be stored, 1 of them escalating" in p for p in health["checks"]["problems"])


def test_the_spool_command_lists_shows_and_retries_a_dead_letter_cleaned(faulty, runner, monkeypatch):
    for name, value in {"HELPLINE_INSTANCE_DIR": str(faulty.settings.instance_dir),
                        "DATABASE_URL": faulty.settings.database_url or "", "SECRET_KEY": "test-secret"}.items():
        monkeypatch.setenv(name, value)
    poisoned(faulty)
    for _ in range(3):
        faulty.ext.helpline.replay_spool()
    [dead] = faulty.spool.entries("dead")

    listed = runner.invoke(main, ["spool", "list"])
    assert listed.exit_code == 0 and f"#{dead.id}" in listed.output and "EMERGENCY" in listed.output
    assert "***-0144" in listed.output and "+15555550144" not in listed.output and "valium" not in listed.output
    shown = runner.invoke(main, ["spool", "show", str(dead.id)])
    assert "characters a database refuses: 1 at [17]" in shown.output and "valium" not in shown.output
    assert runner.invoke(main, ["check"]).output.count("could not be stored") == 1

    retried = runner.invoke(main, ["spool", "retry", "--clean", str(dead.id)])
    assert retried.exit_code == 0, retried.output
    assert faulty.spool.counts().dead == 0
    with faulty.db.session() as s:
        [esc] = s.scalars(select(Escalation)).all()
        assert esc.severity == "emergency" and s.get(Message, esc.first_message_id).body == "I took 30 valium \ufffd"


def test_a_spool_left_by_the_old_release_is_imported_not_lost(faulty):
    legacy = faulty.settings.instance_dir / "spool.jsonl"
    legacy.write_text(json.dumps({"received_at": utcnow().isoformat(), "sender": TEXTER, "body": CRISIS,
                                  "channel": "sms", "message_id": "SM" + "0" * 31 + "9", "media_count": 0}) + "\n")
    Spool(faulty.spool.path).pending()  # any process opening the spool takes the old file over
    assert not legacy.exists()
    faulty.ext.helpline.replay_spool()
    assert count(faulty.db, Escalation) == 1


# --- limits while the database is down ----------------------------------------------------------

def test_unstored_texts_count_toward_the_reply_limit_during_and_after_the_outage(settings, database_url):
    f = Faulty(dataclasses.replace(settings, reply_limit_per_hour=3), database_url)
    try:
        f.fault(REFUSE)
        replies = [f.sms.send(ROUTINE).text for _ in range(5)]
        assert [("trouble" in (r or "")) for r in replies] == [True, True, True, False, False]
        for _ in range(4):
            assert "911" in f.sms.send(CRISIS, sender="+15555550188").text  # a crisis reply is never limited
        f.recover()
        assert f.ext.helpline.replay_spool() == 9
        # The replayed texts were answered: the hour's replies are used up.
        assert "limit" in f.sms.send(ROUTINE).text
    finally:
        f.close()


def test_a_crisis_texted_three_times_in_an_outage_is_one_escalation_paged_once_at_replay(faulty):
    faulty.fault(REFUSE)
    for _ in range(3):
        assert "911" in faulty.sms.send(CRISIS).text
    faulty.recover()
    faulty.ext.helpline.replay_spool()
    with faulty.db.session() as s:
        [esc] = s.scalars(select(Escalation)).all()
        assert esc.message_count == 3 and esc.page_round == 0
        assert s.scalar(select(func.count()).select_from(Outbox).where(Outbox.kind == "page")) == 1
        # Paged at replay time, not at the time the text came: no immediate re-page.
        assert utcnow() - aware(esc.last_paged_at) < timedelta(minutes=1)


# --- web chat through an outage -----------------------------------------------------------------

def chat(faulty, ip: str = "203.0.113.9") -> tuple[dict, dict]:
    client = faulty.app.test_client()
    started = client.post("/chat/api/start", json={}, environ_base={"REMOTE_ADDR": ip}).get_json()
    return started, {"Authorization": f"Bearer {started['token']}"}


def say(faulty, auth: dict, text: str, ip: str = "203.0.113.9"):
    return faulty.app.test_client().post("/chat/api/messages", json={"text": text}, headers=auth,
                                         environ_base={"REMOTE_ADDR": ip})


def test_web_chat_survives_an_outage_like_sms(faulty):
    # (The fault harness runs the same through a hang, with the offline token path past the deadline.)
    started, auth = chat(faulty)
    faulty.fault(REFUSE)
    resp, took = timed(say, faulty, auth, "i took 30 valium")
    assert resp.status_code == 200 and took < BOUND
    data = resp.get_json()
    assert "911" in data["reply"] and data["escalated"] is True
    assert [m["text"] for m in data["messages"]] == [data["reply"]]
    client = faulty.app.test_client()
    assert client.get("/chat/api/messages", headers=auth).status_code in (200, 503)  # an unwritable file still reads
    down = client.post("/chat/api/start", json={})
    assert down.status_code == 503 and "(562) 573-1504" in down.get_json()["message"]
    assert "911" in down.get_json()["message"] and "988" in down.get_json()["message"]

    faulty.recover()
    faulty.ext.helpline.replay_spool()
    with faulty.db.session() as s:
        [esc] = s.scalars(select(Escalation)).all()
        assert esc.channel == "web" and esc.contact.address == f"web:{started['conversation']}"
        assert s.scalar(select(func.count()).select_from(Outbox).where(Outbox.kind == "page")) == 1
    messages = client.get("/chat/api/messages", headers=auth, query_string={"history": 1}).get_json()["messages"]
    assert [m["text"] for m in messages if m["kind"] == "visitor"] == ["i took 30 valium"]


def test_during_an_outage_a_forged_or_expired_chat_token_is_not_trusted(faulty):
    _, auth = chat(faulty)
    faulty.fault(REFUSE)
    token = auth["Authorization"].split()[1]
    public_id, expiry, nonce, mac = token.split(".")
    forged = f"{int(public_id) + 1:016d}.{expiry}.{nonce}.{mac}"
    expired = f"{public_id}.{int(time.time()) - 1}.{nonce}.{mac}"
    for bad in (forged, expired, "an-old-style-token"):
        # 503 when the database cannot be asked; 401 when it can still be read (an unwritable SQLite file).
        assert say(faulty, {"Authorization": f"Bearer {bad}"}, "i took 30 valium").status_code in (401, 503)
    assert faulty.spool.counts().pending == 0


def test_chat_limits_hold_while_the_database_is_down_but_never_for_a_crisis(faulty):
    _, auth = chat(faulty)
    faulty.fault(REFUSE)
    codes = [say(faulty, auth, "what are your hours").status_code for _ in range(14)]
    assert codes.count(200) == 12 and codes[12:] == [429, 429]
    crisis = say(faulty, auth, "i took 30 valium")
    assert crisis.status_code == 200 and "911" in crisis.get_json()["reply"]
    assert faulty.spool.counts().pending == 13  # refused messages are not kept, as when the database is up


def test_waiters_for_the_sqlite_writer_mutex_give_up_at_once_while_the_breaker_refuses(tmp_path):
    """A probe waiting on a locked database holds the process's writer mutex; the texts behind it
    must not queue for their whole deadline (their answers would then wait twice)."""
    from bot.store.db import Database, DeadlineExceeded, StorageUnavailable
    db = Database(f"sqlite:///{tmp_path / 'x.sqlite3'}")
    inside, release = threading.Event(), threading.Event()

    def probe():
        with db.deadline(10), db.write_lock:
            inside.set()
            release.wait(10)

    holder = threading.Thread(target=probe)
    holder.start()
    try:
        assert inside.wait(5)
        db.breaker.failed(3.0, True)  # a slow failure: sessions are refused for a while
        started = time.monotonic()
        with pytest.raises(StorageUnavailable), db.deadline(2.5):
            with db.write_lock:
                pass
        assert time.monotonic() - started < 1.0  # at once, not after the 2.5 s deadline
        db.breaker.succeeded()  # the database answers again: waiting is bounded by the deadline as before
        with pytest.raises(DeadlineExceeded), db.deadline(0.2):
            with db.write_lock:
                pass
    finally:
        release.set()
        holder.join()
        db.engine.dispose()
