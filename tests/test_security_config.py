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


def test_check_command_exits_1_and_names_the_problem(runner, monkeypatch):
    for key in ("SECRET_KEY", "TWILIO_AUTH_TOKEN", "HELPLINE_PUBLIC_URL", "FLASK_DEBUG"):
        monkeypatch.delenv(key, raising=False)
    result = runner.invoke(main, ["check"])
    assert result.exit_code == 1 and "SECRET_KEY" in result.output
    for key, value in SAFE.items():
        monkeypatch.setenv(key, value)
    assert runner.invoke(main, ["check"]).exit_code == 0
