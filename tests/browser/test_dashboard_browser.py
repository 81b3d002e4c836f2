"""The staff dashboard in real Chromium (Playwright): live queue, alert, claim, reply, resolve, no XSS.

Runs the real app on 127.0.0.1 with a temporary SQLite file, a dispatcher whose SMS sender is a
collecting fake (the process boundary), and signed Twilio webhooks over HTTP. Uses the Debian
browser at /usr/bin/chromium; `playwright install` is never needed. Without playwright or that
browser the module is skipped, unless HELPLINE_REQUIRE_BROWSER=1 (CI) makes it an error.
"""

from __future__ import annotations

import os
import re
import threading
import urllib.parse
import urllib.request
from itertools import count
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
REQUIRED = os.environ.get("HELPLINE_REQUIRE_BROWSER") == "1"
# Screenshots go to build/screenshots, so `make test` leaves the working tree unchanged;
# `make screenshots` sets HELPLINE_SCREENSHOTS=docs to refresh the README's pictures.
ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / (os.environ.get("HELPLINE_SCREENSHOTS") or "build/screenshots")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


def _missing() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install -e '.[test]')"
    if not os.path.exists(CHROMIUM):
        return f"{CHROMIUM} is missing (apt-get install chromium)"
    return None


_REASON = _missing()
if _REASON:
    if REQUIRED:
        pytest.fail(f"HELPLINE_REQUIRE_BROWSER=1 but {_REASON}", pytrace=False)
    pytest.skip(f"browser tests skipped: {_REASON}", allow_module_level=True)

from playwright.sync_api import expect, sync_playwright  # noqa: E402
from sqlalchemy import select  # noqa: E402
from twilio.request_validator import RequestValidator  # noqa: E402
from werkzeug.serving import make_server  # noqa: E402

from bot.config import DEFAULT_REPLIES_DIR, Settings  # noqa: E402
from bot.staff.accounts import add_staff  # noqa: E402
from bot.staff.dispatcher import Dispatcher  # noqa: E402
from bot.store.models import Escalation, Message, Outbox  # noqa: E402
from bot.web import create_app  # noqa: E402

TOKEN = "browser-test-auth-token"
EMAIL, PASSWORD = "ann@clinic.test", "correct horse battery"
XSS = "<script>window.__xss=1</script>"


class FakeSender:
    """Collects what the dispatcher would have sent through Twilio."""

    local = False

    def __init__(self):
        self.sent: list[tuple[str, str]] = []
        self._sids = count(1)

    def send(self, to: str, body: str) -> str:
        self.sent.append((to, body))
        return f"SMFAKE{next(self._sids):026d}"


class LiveServer:
    """The real app served over HTTP on a free port, plus a running dispatcher."""

    def __init__(self, instance: Path):
        self.settings = Settings(twilio_auth_token=TOKEN, twilio_account_sid="AC" + "0" * 32,
                                 twilio_phone_number="+15625731504", secret_key="browser-test-secret",
                                 instance_dir=instance, replies_dir=DEFAULT_REPLIES_DIR)
        self.app = create_app(self.settings)
        self.ext = self.app.extensions["helpline"]
        self.ext.db.create_all()
        with self.ext.db.session() as s:
            add_staff(s, "Ann Alvarez", EMAIL, "+15555550901", PASSWORD, on_call=True)
        self.server = make_server("127.0.0.1", 0, self.app, threaded=True)
        self.base = f"http://127.0.0.1:{self.server.server_port}"
        self.sender = FakeSender()
        self.stop = threading.Event()
        dispatcher = Dispatcher(self.ext.db, self.settings, self.ext.helpline.bot.content, sender=self.sender,
                                name="browser-test")
        self.threads = [threading.Thread(target=self.server.serve_forever, daemon=True),
                        threading.Thread(target=dispatcher.run, args=(self.stop, 0.5), daemon=True)]
        for t in self.threads:
            t.start()
        self._sids = count(1)

    def text(self, body: str, sender: str = "+15555550100") -> int:
        """Send a signed Twilio webhook to the live server, as Twilio would."""
        params = {"MessageSid": f"SM{next(self._sids):032d}", "AccountSid": "AC" + "0" * 32, "From": sender,
                  "To": "+15625731504", "Body": body, "NumMedia": "0"}
        url = self.base + "/sms"
        req = urllib.request.Request(url, data=urllib.parse.urlencode(params).encode(), method="POST", headers={
            "X-Twilio-Signature": RequestValidator(TOKEN).compute_signature(url, params),
            "Content-Type": "application/x-www-form-urlencoded"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status

    def close(self):
        self.stop.set()
        self.server.shutdown()
        for t in self.threads:
            t.join(10)
        self.ext.db.engine.dispose()


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    server = LiveServer(tmp_path_factory.mktemp("browser-instance"))
    yield server
    server.close()


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, live):
    """A fresh browser profile at laptop size; fails the test on any CSP violation or script error."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    pg = context.new_page()
    problems: list[str] = []
    pg.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
    pg.on("pageerror", lambda err: problems.append(str(err)))
    pg.set_default_timeout(15_000)
    yield pg
    context.close()
    assert not [p for p in problems if "Content Security Policy" in p or "Refused" in p], problems
    assert not problems, problems


def log_in(page, live):
    page.goto(live.base + "/dashboard/")
    expect(page).to_have_url(re.compile(r"/dashboard/login"))
    page.get_by_label("Email").fill(EMAIL)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Escalation queue")).to_be_visible()
    # The first poll has run: from here on a new escalation id raises the alert.
    page.wait_for_selector("body[data-live=ready]")


def test_a_crisis_appears_live_and_is_claimed_answered_and_resolved(page, live):
    DOCS.mkdir(parents=True, exist_ok=True)
    log_in(page, live)
    page.get_by_role("button", name="Enable sound").click()
    expect(page.locator("#sound-toggle")).to_have_text("Sound on")
    page.evaluate("window.__noReload = 1")

    assert live.text("I took 30 valium and I'm shaking") == 200
    card = page.locator("[data-escalation-id]")
    expect(card).to_have_count(1, timeout=10_000)  # arrived by polling, not by a reload
    assert page.evaluate("window.__noReload") == 1
    expect(card).to_contain_text("EMERGENCY")
    expect(card).to_contain_text("***-0100")
    expect(card).not_to_contain_text("5555550100")
    alert = page.locator("#new-alert")
    expect(alert).to_be_visible()
    expect(alert).to_contain_text("NEW ESCALATION #")
    assert "NEW ESCALATION" in page.title() or page.get_attribute("body", "data-alerts") == "1"
    assert page.get_attribute("body", "data-alerts") == "1"
    expect(card).to_contain_text(re.compile(r"Pages sent: 1"), timeout=10_000)  # the dispatcher paged Ann
    page.screenshot(path=str(DOCS / "dashboard-queue.png"))

    card.get_by_role("button", name="Claim").click()
    expect(page.locator(".flash-success")).to_contain_text("You claimed escalation")
    expect(page.locator("#status-panel")).to_contain_text("Ann Alvarez")
    with live.ext.db.session() as s:
        esc = s.scalar(select(Escalation))
        assert esc.status == "claimed"

    # A texter-supplied script arrives live and is shown as text; it never runs.
    page.evaluate("window.__noReload = 2")
    live.text(XSS)
    shown = page.locator("#transcript .msg-texter .msg-body", has_text=XSS)
    expect(shown).to_be_visible(timeout=10_000)
    assert page.evaluate("window.__noReload") == 2
    assert page.evaluate("window.__xss") is None
    page.reload()
    expect(page.locator("#transcript .msg-texter .msg-body", has_text=XSS)).to_be_visible()
    assert page.evaluate("window.__xss") is None

    page.get_by_label(re.compile("Reply to the texter")).fill("This is Ann at Solace Hills. Are you somewhere safe?")
    page.get_by_role("button", name="Send reply").click()
    expect(page.locator(".flash-success")).to_contain_text("Reply queued for sending.")
    expect(page.locator("#transcript .msg-staff")).to_contain_text("Are you somewhere safe?")
    page.screenshot(path=str(DOCS / "dashboard-escalation.png"))
    with live.ext.db.session() as s:
        assert s.scalar(select(Message).where(Message.kind == "staff")) is not None
        assert s.scalar(select(Outbox).where(Outbox.kind == "reply")).to_address == "+15555550100"

    page.get_by_label("Resolve with outcome").select_option("reached_safe")
    page.get_by_label(re.compile("^Note")).fill("Talked by phone; with family now.")
    page.get_by_role("button", name="Resolve").click()
    expect(page.locator(".flash-success")).to_contain_text("resolved")
    expect(page.locator("[data-escalation-id]")).to_have_count(0)
    with live.ext.db.session() as s:
        esc = s.scalar(select(Escalation))
        assert (esc.status, esc.outcome) == ("resolved", "reached_safe")
    assert any(to == "+15555550901" for to, _ in live.sender.sent)  # the page went to Ann's phone


def test_a_training_text_from_the_test_texter_shows_the_bot_reply_and_queues_unpaged(page, live):
    log_in(page, live)
    page.get_by_role("link", name="Test texter").click()
    page.get_by_label("Number").fill("+15550004321")
    page.get_by_role("button", name="Switch number").click()
    page.get_by_label("Message from the texter").fill("i want to end my life tonight")
    page.get_by_role("button", name="Send as texter").click()
    expect(page.locator("#transcript .msg-bot")).to_contain_text("988")
    page.get_by_role("link", name=re.compile(r"^Queue")).click()
    card = page.locator("[data-escalation-id]", has_text="***-4321")
    expect(card).to_contain_text("TRAINING")
    expect(card).to_contain_text("nobody is paged")
    with live.ext.db.session() as s:
        esc = s.scalar(select(Escalation).where(Escalation.channel == "test"))
        assert s.scalar(select(Outbox).where(Outbox.kind == "page", Outbox.escalation_id == esc.id)) is None
