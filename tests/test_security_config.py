"""`helpline check`: insecure configuration is reported and fails the command."""

import pytest

from bot.cli import main
from bot.config import Settings

SAFE = {"SECRET_KEY": "s" * 32, "TWILIO_AUTH_TOKEN": "t", "HELPLINE_PUBLIC_URL": "https://helpline.example.org"}


@pytest.mark.parametrize("change, needle", [
    ({"SECRET_KEY": ""}, "SECRET_KEY"),
    ({"TWILIO_AUTH_TOKEN": ""}, "TWILIO_AUTH_TOKEN"),
    ({"HELPLINE_PUBLIC_URL": "http://helpline.example.org"}, "plain HTTP"),
    ({"FLASK_DEBUG": "1"}, "FLASK_DEBUG"),
])
def test_each_insecure_setting_is_reported(change, needle):
    env = {**SAFE, **change}
    assert any(needle in p for p in Settings.from_env(env).insecure(env))


def test_a_safe_configuration_has_no_problems():
    assert Settings.from_env(SAFE).insecure(SAFE) == []


def test_plain_http_on_loopback_is_fine_for_local_testing():
    env = {**SAFE, "HELPLINE_PUBLIC_URL": "http://127.0.0.1:5000"}
    assert Settings.from_env(env).insecure(env) == []


def test_check_command_exits_1_and_names_the_problem(runner, monkeypatch, tmp_path):
    for key in ("SECRET_KEY", "TWILIO_AUTH_TOKEN", "HELPLINE_PUBLIC_URL", "FLASK_DEBUG", "DATABASE_URL"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("HELPLINE_INSTANCE_DIR", str(tmp_path))
    result = runner.invoke(main, ["check", "--allow-no-paging"])
    assert result.exit_code == 1 and "SECRET_KEY" in result.output
    for key, value in SAFE.items():
        monkeypatch.setenv(key, value)
    # Paging (Twilio credentials, staff) is tests/test_newcomer.py's subject.
    assert runner.invoke(main, ["check", "--allow-no-paging"]).exit_code == 0


def test_production_entry_points_refuse_an_insecure_configuration(settings):
    import dataclasses

    from bot.store import migrate
    from bot.store.db import Database
    from bot.web import InsecureConfiguration, create_app
    with pytest.raises(InsecureConfiguration, match="SECRET_KEY"):
        create_app(dataclasses.replace(settings, secret_key=None), refuse_insecure=True)
    migrate.upgrade(Database(settings.sqlalchemy_url))
    create_app(dataclasses.replace(settings, secret_key=None, dev=True), refuse_insecure=True)  # explicit dev
    create_app(settings, refuse_insecure=True)


@pytest.mark.parametrize("path", ["/healthz", "/sms", "/dashboard/login"])
def test_every_response_carries_security_headers(client, path):
    resp = client.get(path) if path != "/sms" else client.post(path)
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in resp.headers["Content-Security-Policy"]


def test_hsts_is_sent_behind_an_https_public_url(settings):
    import dataclasses

    from bot.web import create_app
    app = create_app(dataclasses.replace(settings, public_url="https://helpline.example.org"))
    assert "max-age" in app.test_client().get("/healthz").headers["Strict-Transport-Security"]


def test_a_plain_http_chat_origin_is_insecure():
    env = {**SAFE, "HELPLINE_CHAT_ORIGINS": "https://solacehills.example, http://clinic.example"}
    problems = Settings.from_env(env).insecure(env)
    assert any("http://clinic.example" in p for p in problems) and len(problems) == 1


@pytest.mark.parametrize("path, policy", [
    ("/healthz", "API_CSP"), ("/chat/widget.js", "API_CSP"), ("/chat/api/messages", "API_CSP"),
    ("/dashboard/login", "PAGE_CSP"), ("/dashboard/", "PAGE_CSP"), ("/dashboard/static/dashboard.css", "PAGE_CSP"),
    ("/chat/demo", "DEMO_CSP"),
])
def test_each_page_gets_its_own_csp_from_the_one_header_function(client, path, policy):
    from bot.web import security
    resp = client.get(path)
    assert resp.headers["Content-Security-Policy"] == getattr(security, policy)
    assert resp.headers["Referrer-Policy"] == "no-referrer"
    assert "Strict-Transport-Security" not in resp.headers  # plain-http development


def test_a_page_csp_does_not_leak_into_the_next_response(client):
    assert "connect-src" in client.get("/chat/demo").headers["Content-Security-Policy"]
    assert client.get("/healthz").headers["Content-Security-Policy"] == "default-src 'none'; frame-ancestors 'none'"
