"""Where one webhook request's time goes, in-process and uncontended (one thread, no server).

The real app (``create_app`` with a SQLite file, an on-call staff member, the reply cap off)
answers signed requests through Flask's test client while the bench wraps the stages with
timers. Each stage is charged its own time only (a wrapped stage inside another is subtracted
from it), so the shares add up to the request:

- Flask/Werkzeug: routing, form parsing, the rest of the request (``app.wsgi_app`` less the rest)
- signature validation: ``bot.web.twilio_adapter.signature_matches`` (Twilio's ``RequestValidator``)
- DB transaction: ``Helpline._handle_stored`` less the stages below (SQLAlchemy + SQLite)
- paging: ``page_recipients`` and ``page_text`` (who is paged and what the page says; the outbox
  rows are part of the DB transaction)
- triage / topic matching / language / decide rest: parts of ``Bot.decide``
- logging: ``Logger._log`` (records that pass the level, written to a file as under gunicorn)
- TwiML: ``twiml()``

Under load the picture differs (waits for the SQLite write lock): see profile_webhook.py.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from common import SECRET_KEY, TOKEN, sign_all

BASE = "http://127.0.0.1:9"


class _Clock:
    def __init__(self):
        self.own: dict[str, float] = {}
        self.stack: list[list] = []  # [label, start, children]

    def wrap(self, label: str, fn):
        clock = self

        def timed(*a, **kw):
            clock.stack.append([label, time.perf_counter(), 0.0])
            try:
                return fn(*a, **kw)
            finally:
                lab, start, children = clock.stack.pop()
                spent = time.perf_counter() - start
                clock.own[lab] = clock.own.get(lab, 0.0) + spent - children
                if clock.stack:
                    clock.stack[-1][2] += spent

        timed.__wrapped__ = fn
        return timed


def run(tmp: Path, texts, quick: bool, log) -> dict:
    import bot.web.twilio_adapter as adapter

    import bot.service as service
    import bot.web.sms as sms
    from bot.config import Settings
    from bot.core.engine import Bot
    from bot.core.language import LanguageDetector
    from bot.core.topics import TopicMatcher
    from bot.staff.accounts import add_staff
    from bot.web import create_app

    n = 600 if quick else 1500
    warm = 200
    instance = tmp / "stages"
    instance.mkdir()
    settings = Settings(twilio_auth_token=TOKEN, secret_key=SECRET_KEY, instance_dir=instance, public_url=BASE,
                        reply_limit_per_hour=0)
    root = logging.getLogger()
    saved = [(h, getattr(h, "stream", None)) for h in root.handlers]
    app = create_app(settings)
    logfile = open(tmp / "stages.log", "a")
    for h in root.handlers:
        if isinstance(h, logging.StreamHandler):
            h.setStream(logfile)
    ext = app.extensions["helpline"]
    ext.db.create_all()
    with ext.db.session() as s:
        add_staff(s, "Bench On Call", "oncall@bench.test", "+15625550111", "bench password 1234", on_call=True)
    client = app.test_client()
    reqs = sign_all(texts, BASE + "/sms", first=9_000_000, count=n + warm, seed=21)

    clock = _Clock()
    patches = [
        (adapter, "signature_matches", "signature validation"),
        (service.Helpline, "_handle_stored", "DB transaction (SQLAlchemy + SQLite)"),
        (service, "page_recipients", "paging: recipients, page text"),
        (service, "page_text", "paging: recipients, page text"),
        (Bot, "decide", "decide: rest"),
        (Bot, "triage", "decide: triage"),
        (TopicMatcher, "match", "decide: topic matching"),
        (LanguageDetector, "detect", "decide: language"),
        (logging.Logger, "_log", "logging"),
        (sms, "twiml", "TwiML"),
    ]
    originals = []
    try:
        for owner, name, label in patches:
            fn = getattr(owner, name)
            originals.append((owner, name, fn))
            setattr(owner, name, clock.wrap(label, fn))
        app.wsgi_app = clock.wrap("Flask/Werkzeug, form parsing, rest", app.wsgi_app)
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        for i, r in enumerate(reqs):
            if i == warm:
                clock.own.clear()
                t0 = time.perf_counter()
            resp = client.post("/sms", data=r.body, headers={**headers, "X-Twilio-Signature": r.signature})
            if resp.status_code != 200:
                raise RuntimeError(f"webhook answered {resp.status_code}")
        total = time.perf_counter() - t0
    finally:
        for owner, name, fn in reversed(originals):
            setattr(owner, name, fn)
        for h, stream in saved:
            if stream is not None and isinstance(h, logging.StreamHandler):
                h.setStream(stream)
        logfile.close()
        ext.db.engine.dispose()
    charged = sum(clock.own.values())
    stages = sorted(clock.own.items(), key=lambda kv: -kv[1])
    log(f"  in-process: {n / total:,.0f} req/s on one thread, {1000 * total / n:.2f} ms per request")
    return {"n": n, "ms_per_request": 1000 * total / n, "charged_ms": 1000 * charged / n,
            "stages": [(label, 1000 * s / n, s / charged) for label, s in stages]}
