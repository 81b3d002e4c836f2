"""The web chat widget in real Chromium (Playwright): keyboard only, crisis, a staff reply arriving live.

Same set-up as the dashboard's browser tests (support.py, one shared server): the real app on 127.0.0.1
with a temporary SQLite file and a dispatcher with a collecting fake SMS sender, Debian's
/usr/bin/chromium, skipped without it unless HELPLINE_REQUIRE_BROWSER=1.
"""

from __future__ import annotations

import re

import pytest

from .support import DOCS, axe, log_in, require_browser

require_browser()

from playwright.sync_api import expect  # noqa: E402
from sqlalchemy import select  # noqa: E402

from bot.store.models import Escalation, Outbox  # noqa: E402

ROUTINE = "what are the withdrawal symptoms"
CRISIS = "I took 30 valium and I'm shaking"
STAFF_REPLY = "This is Ann, a nurse at Solace Hills. I'm here with you. Are you somewhere safe?"

IS_BUBBLE = ("() => { const h = document.activeElement; return !!(h && h.id === 'solace-hills-chat' && "
             "h.shadowRoot.activeElement && h.shadowRoot.activeElement.classList.contains('bubble')); }")
IS_INPUT = ("() => { const h = document.activeElement; return !!(h && h.id === 'solace-hills-chat' && "
            "h.shadowRoot.activeElement && h.shadowRoot.activeElement.id === 'msg'); }")


def tab_to_bubble(page, limit: int = 25) -> None:
    for _ in range(limit):
        page.keyboard.press("Tab")
        if page.evaluate(IS_BUBBLE):
            return
    raise AssertionError("Tab never reached the chat bubble")


def test_a_visitor_chats_by_keyboard_gets_the_crisis_reply_and_a_staff_reply_arrives_live(contexts, live):
    DOCS.mkdir(parents=True, exist_ok=True)
    visitor = contexts(viewport={"width": 1280, "height": 800}, locale="en-US").page
    visitor.goto(live.base + "/chat/demo")
    bubble = visitor.get_by_role("button", name="Open chat with Solace Hills Detox")
    expect(bubble).to_be_visible()
    # The page's own CSS (hot pink dashed buttons) never reaches the widget.
    assert bubble.evaluate("b => getComputedStyle(b).backgroundColor") == "rgb(29, 95, 110)"

    tab_to_bubble(visitor)
    visitor.keyboard.press("Enter")
    dialog = visitor.get_by_role("dialog", name="Chat with Solace Hills Detox")
    expect(dialog).to_be_visible()
    expect(dialog).to_have_attribute("aria-modal", "false")
    assert visitor.evaluate(IS_INPUT), "focus should move to the message box on open"
    log = dialog.get_by_role("log")
    expect(log).to_have_attribute("aria-live", "polite")
    expect(log).to_contain_text("automated assistant")
    expect(dialog).to_contain_text("Automated assistant")
    expect(dialog).to_contain_text("confidential")

    visitor.keyboard.type(ROUTINE)
    visitor.keyboard.press("Enter")
    expect(log).to_contain_text("Stopping diazepam abruptly")
    axe(visitor, "chat demo page, chat open")
    visitor.keyboard.type(CRISIS)
    visitor.keyboard.press("Enter")
    expect(log).to_contain_text("Call 911 now")
    expect(log).to_contain_text("988")
    with live.ext.db.session() as s:
        esc = s.scalar(select(Escalation).where(Escalation.channel == "web"))
        assert esc is not None and esc.severity == "emergency"
        assert s.scalar(select(Outbox).where(Outbox.kind == "page", Outbox.escalation_id == esc.id)) is not None
        esc_id = esc.id

    staff = contexts(viewport={"width": 1280, "height": 800}).page
    log_in(staff, live)
    card = staff.locator(f"[data-escalation-id='{esc_id}']")
    expect(card).to_contain_text("web chat")
    card.get_by_role("button", name="Claim").click()
    expect(staff.locator(".flash-success")).to_contain_text("You claimed escalation")
    staff.get_by_label(re.compile("Reply to the texter")).fill(STAFF_REPLY)
    staff.get_by_role("button", name="Send reply").click()
    expect(staff.locator("#transcript .msg-staff")).to_contain_text("Are you somewhere safe?")

    expect(log).to_contain_text(STAFF_REPLY, timeout=10_000)  # by polling, no reload
    expect(dialog.locator("#status")).to_have_text("A staff member has joined this chat.")
    expect(log).to_contain_text("A staff member has joined this chat.")
    visitor.screenshot(path=str(DOCS / "chat-widget-desktop.png"))

    visitor.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    assert visitor.evaluate(IS_BUBBLE), "focus should return to the bubble on Esc"
    expect(bubble).to_have_attribute("aria-expanded", "false")
    assert visitor.context.cookies() == []


def test_on_a_phone_the_panel_fills_the_width_and_speaks_spanish_when_the_browser_does(contexts, live):
    phone = contexts(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True, locale="es-MX").page
    phone.goto(live.base + "/chat/demo")
    phone.get_by_role("button", name="Abrir el chat con Solace Hills Detox").click()
    dialog = phone.get_by_role("dialog", name="Chat con Solace Hills Detox")
    expect(dialog).to_be_visible()
    box = dialog.bounding_box()
    assert box["width"] == 390 and box["x"] == 0
    log = dialog.get_by_role("log")
    expect(log).to_contain_text("asistente automático")
    phone.get_by_label("Tu mensaje").fill("cuánto cuesta la desintoxicación")
    phone.get_by_role("button", name="Enviar").click()
    expect(log.locator(".m-bot")).to_have_count(2)
    expect(log).to_contain_text("(562) 573-1504")
    axe(phone, "chat demo page on a phone, in Spanish")
    phone.screenshot(path=str(DOCS / "chat-widget-phone.png"))
