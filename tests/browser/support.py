"""What the browser tests share: the live server, Debian's Chromium, logging in, axe-core.

The real app runs on 127.0.0.1 with a temporary SQLite file, a dispatcher whose SMS sender is a
collecting fake (the process boundary), and signed Twilio webhooks over HTTP. The browser is
Debian's /usr/bin/chromium (``playwright install`` is never needed). Without playwright or that
browser the tests skip, unless HELPLINE_REQUIRE_BROWSER=1 (CI) makes that a failure.

axe-core is vendored under ``vendor/axe-core`` (from the npm registry, never a CDN) and added to
every page as an init script, which the page's CSP does not apply to.
"""

from __future__ import annotations

import os
import re
import threading
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from itertools import count
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
REQUIRED = os.environ.get("HELPLINE_REQUIRE_BROWSER") == "1"
# Screenshots go to build/screenshots, so `make test` leaves the working tree unchanged;
# `make screenshots` sets HELPLINE_SCREENSHOTS=docs to refresh the README's pictures.
DOCS = Path(__file__).resolve().parents[2] / (os.environ.get("HELPLINE_SCREENSHOTS") or "build/screenshots")
AXE_JS = Path(__file__).resolve().parent / "vendor" / "axe-core" / "axe.min.js"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
TOKEN = "browser-test-auth-token"
PASSWORD = "correct horse battery"
EMAIL = "ann@clinic.test"
STAFF = {  # email: (name, phone, on call, admin)
    "ann@clinic.test": ("Ann Alvarez", "+15555550901", True, False),
    "bob@clinic.test": ("Bob Baker", "+15555550902", False, False),
    "dana@clinic.test": ("Dana Ruiz", "+15555550903", False, True),
}


def missing() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install -e '.[test]')"
    if not os.path.exists(CHROMIUM):
        return f"{CHROMIUM} is missing (apt-get install chromium)"
    return None


def require_browser() -> None:
    """Call at the top of a browser test module: skip it (or fail in CI) without a browser."""
    reason = missing()
    if reason:
        if REQUIRED:
            pytest.fail(f"HELPLINE_REQUIRE_BROWSER=1 but {reason}", pytrace=False)
        pytest.skip(f"browser tests skipped: {reason}", allow_module_level=True)


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
        from twilio.request_validator import RequestValidator  # noqa: F401 (fail early if missing)
        from werkzeug.serving import make_server

        from bot.config import DEFAULT_REPLIES_DIR, Settings
        from bot.staff.accounts import add_staff
        from bot.staff.dispatcher import Dispatcher
        from bot.web import create_app
        self.settings = Settings(twilio_auth_token=TOKEN, twilio_account_sid="AC" + "0" * 32,
                                 twilio_phone_number="+15625731504", secret_key="browser-test-secret",
                                 instance_dir=instance, replies_dir=DEFAULT_REPLIES_DIR,
                                 dashboard_poll_seconds=0.5)  # the same page logic, five times as often
        self.app = create_app(self.settings)
        self.ext = self.app.extensions["helpline"]
        self.ext.db.create_all()
        with self.ext.db.session() as s:
            for email, (name, phone, on_call, admin) in STAFF.items():
                add_staff(s, name, email, phone, PASSWORD, on_call=on_call, admin=admin)
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

    def text(self, body: str, sender: str = "+15555550100") -> str | None:
        """Send a signed Twilio webhook to the live server, as Twilio would; the TwiML reply text."""
        from twilio.request_validator import RequestValidator
        params = {"MessageSid": f"SM{next(self._sids):032d}", "AccountSid": "AC" + "0" * 32, "From": sender,
                  "To": "+15625731504", "Body": body, "NumMedia": "0"}
        url = self.base + "/sms"
        req = urllib.request.Request(url, data=urllib.parse.urlencode(params).encode(), method="POST", headers={
            "X-Twilio-Signature": RequestValidator(TOKEN).compute_signature(url, params),
            "Content-Type": "application/x-www-form-urlencoded"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert resp.status == 200
            node = ET.fromstring(resp.read().decode()).find("Message")
            return node.text if node is not None else None

    def close_all(self) -> None:
        """Test set-up: close every escalation left open by earlier tests (not code under test)."""
        from sqlalchemy import update

        from bot.core.states import OPEN_STATUSES, EscalationStatus
        from bot.store.models import Escalation, utcnow
        with self.ext.db.session() as s:
            s.execute(update(Escalation).where(Escalation.status.in_(OPEN_STATUSES))
                      .values(status=EscalationStatus.RESOLVED, resolved_at=utcnow(), held_at=None))

    def escalation_for(self, address: str):
        from sqlalchemy import select

        from bot.store.models import Contact, Escalation
        with self.ext.db.session() as s:
            return s.scalars(select(Escalation).join(Contact, Escalation.contact_id == Contact.id)
                             .where(Contact.address == address).order_by(Escalation.id.desc())).first()

    def close(self):
        self.stop.set()
        self.server.shutdown()
        for t in self.threads:
            t.join(10)
        self.ext.db.engine.dispose()


class Watched:
    """A browser context whose pages fail the test on any CSP violation or script error."""

    def __init__(self, browser, **options):
        self.context = browser.new_context(**options)
        self.context.add_init_script(path=str(AXE_JS))
        self.page = self.context.new_page()
        self.problems: list[str] = []
        self.page.on("console", lambda msg: self.problems.append(msg.text) if msg.type == "error" else None)
        self.page.on("pageerror", lambda err: self.problems.append(str(err)))
        self.page.set_default_timeout(15_000)

    def close(self):
        self.context.close()
        assert not [p for p in self.problems if "Content Security Policy" in p or "Refused" in p], self.problems
        assert not self.problems, self.problems


def log_in(page, live, email: str = EMAIL, path: str = "/dashboard/"):
    from playwright.sync_api import expect
    page.goto(live.base + path)
    expect(page).to_have_url(re.compile(r"/dashboard/login"))
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(r"/dashboard/(?!login)"))
    # The first poll has run: from here on a new escalation id raises the alert.
    page.wait_for_selector("body[data-live=ready]")


AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa", "best-practice"]
AXE_RESULTS: dict[str, list[dict]] = {}


def axe(page, name: str) -> list[dict]:
    """Run axe-core on the page as it is now; fail on any serious or critical violation.

    Every result (including minor and moderate ones) is kept for the summary printed at the end."""
    violations = page.evaluate("""async (tags) => {
        const r = await axe.run(document, {runOnly: {type: 'tag', values: tags}, resultTypes: ['violations']});
        return r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                                       nodes: v.nodes.slice(0, 5).map(n => n.target.join(' '))}));
    }""", AXE_TAGS)
    AXE_RESULTS[name] = violations
    bad = [v for v in violations if v["impact"] in ("serious", "critical")]
    assert not bad, f"axe on {name}: {bad}"
    return violations
