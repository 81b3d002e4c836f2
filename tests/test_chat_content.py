"""Every word of the web chat comes from replies/ in both languages, and the clinic's identity lives once."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from bot.config import DEFAULT_REPLIES_DIR
from bot.core.checks import check
from bot.core.content import CHAT_KEYS, ContentError, load
from bot.web import create_app
from test_content import broken, edit  # noqa: F401  (broken: a copy of replies/ to edit)


def test_a_chat_text_that_promises_a_call_without_the_number_is_caught(broken):
    edit(broken / "chat.en.toml", "Start a new chat, or call us at {phone}.", "Start a new chat, or call us.")
    assert any("chat.en.api.expired" in p and "clinic number" in p for p in check(load(broken)))


def test_a_chat_safety_line_without_988_is_caught(broken):
    edit(broken / "chat.es.toml", "llama al 911 ahora, o llama al 988 y marca 2.\n\"\"\"\nstart_limited",
         "llama al 911 ahora.\n\"\"\"\nstart_limited")
    assert any("chat.es.api.limited" in p and "988" in p for p in check(load(broken)))


def test_a_hard_coded_phone_number_in_the_widget_strings_is_caught(broken):
    edit(broken / "chat.en.toml", "Call {phone}, or 911", "Call (562) 573-9999, or 911")
    assert any("chat.en.widget.offline" in p and "other than the clinic" in p for p in check(load(broken)))


def test_a_missing_chat_key_is_a_content_error(broken):
    edit(broken / "chat.es.toml", 'close = "Cerrar el chat"\n', "")
    with pytest.raises(ContentError, match=r"chat.es.toml \[widget\] lacks close"):
        load(broken)


def test_the_widget_asks_the_server_for_every_word_in_both_languages(client):
    for lang, probe in (("en", "Open chat with Solace Hills Detox"), ("es", "Abrir el chat con Solace Hills Detox")):
        data = client.get(f"/chat/api/strings?lang={lang}").get_json()
        assert set(data["strings"]) == set(CHAT_KEYS["widget"]) and data["strings"]["open"] == probe
        assert "(562) 573-1504" in data["strings"]["offline"] and "988" in data["strings"]["notice"]
    assert client.get("/chat/api/strings?lang=xx").get_json()["lang"] == "en"


def test_the_widget_script_itself_names_no_clinic_and_no_emergency_number(client):
    source = client.get("/chat/widget.js").get_data(as_text=True)
    assert "Solace" not in source and "573-1504" not in source
    assert not re.search(r"\b(911|988)\b", source)
    assert "/chat/api/strings" in source


def test_the_clinic_identity_comes_from_clinic_toml_everywhere(broken, settings):
    """Rename the clinic in one file: the chat, the widget, the demo page, the dashboard and pages follow."""
    edit(broken / "clinic.toml", 'name = "Solace Hills Detox"', 'name = "Harbor Light Recovery"')
    edit(broken / "clinic.toml", 'short_name = "Solace Hills"', 'short_name = "Harbor Light"')
    edit(broken / "clinic.toml", 'phone = "(562) 573-1504"', 'phone = "(213) 555-0142"')
    edit(broken / "clinic.toml", 'city = "Los Angeles"', 'city = "Long Beach"')
    assert check(load(broken)) == []
    app = create_app(dataclasses.replace(settings, replies_dir=broken))
    app.extensions["helpline"].db.create_all()
    try:
        client = app.test_client()
        start = client.post("/chat/api/start", json={"lang": "es"}).get_json()
        strings = client.get("/chat/api/strings").get_json()["strings"]
        demo = client.get("/chat/demo").get_data(as_text=True)
        login = client.get("/dashboard/login").get_data(as_text=True)
        seen = " ".join([start["messages"][0]["text"], *strings.values(), demo, login])
        assert "Harbor Light Recovery" in start["messages"][0]["text"] and "(213) 555-0142" in seen
        assert 'href="tel:+12135550142"' in demo and "Long Beach" in demo and "Harbor Light helpline" in login
        for old in ("Solace", "573-1504", "Los Angeles"):
            assert old not in seen, old
        from bot.staff.paging import page_text
        from bot.store.models import Contact, Escalation, utcnow
        esc = Escalation(id=7, severity="emergency", page_round=0, created_at=utcnow(),
                         contact=Contact(address="+15555550100"))
        content = app.extensions["helpline"].helpline.bot.content
        assert page_text(esc, None, content.clinic_short_name).startswith("Harbor Light helpline: EMERGENCY #7")
    finally:
        app.extensions["helpline"].db.engine.dispose()


def test_no_code_names_the_clinic_or_its_number():
    """The clinic's identity lives once, in replies/clinic.toml: no string in bot/ (docstrings aside)
    and no template or script may name it, or a renamed clinic's pages would still say the old name."""
    import ast
    root = Path(__file__).resolve().parents[1] / "bot"
    found = []
    for path in root.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docs = {id(node.body[0].value) for node in ast.walk(tree)
                if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
        found += [f"{path.relative_to(root)}:{node.lineno}" for node in ast.walk(tree)
                  if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs
                  and ("Solace" in node.value or "573-1504" in node.value)]
    for path in [*root.rglob("*.html"), *root.rglob("*.js")]:
        text = path.read_text(encoding="utf-8")
        found += [str(path.relative_to(root)) for word in ("Solace", "573-1504") if word in text]
    assert found == []
