"""The newcomer's path: make run's address, the README's Twilio steps, a quiet simulate, an honest check."""

from __future__ import annotations

import os
import pty
import re
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select as sql_select
from twilio.request_validator import RequestValidator

from bot.cli import main
from bot.config import Settings
from bot.store.db import Database
from bot.store.models import Escalation, Outbox

ROOT = Path(__file__).resolve().parent.parent
HELPLINE = Path(sys.executable).parent / "helpline"
README = (ROOT / "README.md").read_text(encoding="utf-8")
CLEARED = ("DATABASE_URL", "HELPLINE_REPLIES_DIR", "HELPLINE_PUBLIC_URL", "HELPLINE_DEV", "SECRET_KEY",
           "HELPLINE_TRUSTED_PROXIES", "HELPLINE_TWILIO_API_URL", "TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN",
           "TWILIO_PHONE_NUMBER", "HELPLINE_BIND", "FLASK_DEBUG")
PASSWORD = "correct horse battery"


@pytest.fixture(autouse=True)
def env(monkeypatch, tmp_path):
    """A clean environment whose instance folder (SQLite database, logs) is in tmp_path."""
    for name in CLEARED:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HELPLINE_INSTANCE_DIR", str(tmp_path))
    return tmp_path


def child_env() -> dict:
    return {k: v for k, v in os.environ.items() if k not in CLEARED}


def add_staff(runner, *extra):
    assert runner.invoke(main, ["db", "upgrade"]).exit_code == 0
    result = runner.invoke(main, ["staff", "add", "--name", "Dana Ruiz", "--email", "dana@clinic.test", "--phone",
                                  "+15625550111", "--password-stdin", *extra], input=PASSWORD + "\n")
    assert result.exit_code == 0, result.output


# --- make run ---------------------------------------------------------------------------------

@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_run_listens_where_it_is_told():
    dry = subprocess.run(["make", "-n", "run", "PORT=8123", "HOST=0.0.0.0"], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout
    assert "helpline serve --host 0.0.0.0 --port 8123" in dry
    default = subprocess.run(["make", "-n", "run"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert "helpline serve --host 127.0.0.1 --port 5000" in default


# --- the README's Twilio steps, followed ------------------------------------------------------

def twilio_steps() -> str:
    section = README[README.index("## Pointing a Twilio number at the bot"):README.index("## Deploying")]
    return re.search(r"```sh\n(.*?)```", section, re.S).group(1)


def test_the_twilio_steps_set_everything_the_server_needs_and_the_port_it_binds(runner, env, monkeypatch):
    from bot.web import create_app
    steps = twilio_steps()
    exported = dict(re.findall(r"^\s*export (\w+)=(\S+)", steps, re.M))
    assert {"SECRET_KEY", "TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "TWILIO_PHONE_NUMBER",
            "HELPLINE_PUBLIC_URL"} <= set(exported)
    # Every helpline command in the steps exists.
    for command in re.findall(r"\.venv/bin/helpline ([a-z-]+(?: [a-z-]+)?)", steps):
        group, _, sub = command.partition(" ")
        assert group in main.commands, command
        if sub and hasattr(main.commands[group], "commands"):
            assert sub in main.commands[group].commands, command
    # The tunnel points at the port gunicorn binds by default.
    conf: dict = {}
    exec((ROOT / "gunicorn.conf.py").read_text(encoding="utf-8"), conf)
    assert re.search(r"ngrok http (\d+)", steps).group(1) == conf["bind"].rsplit(":", 1)[1] == "8000"
    # With those settings (values made up) the production entry point starts and check passes.
    public = "https://helpline-test.example"
    values = {"SECRET_KEY": "s" * 64, "TWILIO_ACCOUNT_SID": "AC" + "1" * 32, "TWILIO_AUTH_TOKEN": "readme-token",
              "TWILIO_PHONE_NUMBER": "+15625731504", "HELPLINE_PUBLIC_URL": public}
    for name in exported:
        monkeypatch.setenv(name, values[name])
    add_staff(runner, "--on-call")
    result = runner.invoke(main, ["check"])
    assert result.exit_code == 0, result.output
    app = create_app(Settings.from_env(), refuse_insecure=True)
    try:
        # Twilio posts to https://<public host>/sms and signs that URL (step 2).
        url = re.search(r"`(https://<public host>/sms)`", README).group(1).replace("https://<public host>", public)
        form = {"MessageSid": "SM" + "7" * 32, "AccountSid": values["TWILIO_ACCOUNT_SID"], "From": "+15555550100",
                "To": "+15625731504", "Body": "hours", "NumMedia": "0"}
        signature = RequestValidator(values["TWILIO_AUTH_TOKEN"]).compute_signature(url, form)
        resp = app.test_client().post("/sms", data=form, headers={"X-Twilio-Signature": signature})
        assert resp.status_code == 200 and "(562) 573-1504" in resp.get_data(as_text=True)
    finally:
        app.extensions["helpline"].db.engine.dispose()


# --- simulate -----------------------------------------------------------------------------------

def test_simulate_shows_only_the_conversation_and_logs_to_a_file(env):
    proc = subprocess.run([str(HELPLINE), "simulate"], input="what are your hours\nI took 30 valium\n",
                          capture_output=True, text=True, env=child_env(), timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("Texting as +15555550100") and len(lines) == 3
    assert all(line.startswith("bot [") for line in lines[1:])
    log = (env / "simulate.log").read_text(encoding="utf-8")
    assert "alembic" in log and "emergency" in log


def test_simulate_ends_cleanly_on_ctrl_d_in_a_terminal(env):
    pid, fd = pty.fork()
    if pid == 0:  # the child: helpline simulate on a terminal
        os.execve(str(HELPLINE), [str(HELPLINE), "simulate"], child_env())
    out = b""

    def read_until(needle: bytes, seconds: float = 30) -> None:
        nonlocal out
        end = time.monotonic() + seconds
        while needle not in out and time.monotonic() < end:
            if select.select([fd], [], [], 0.2)[0]:
                try:
                    out += os.read(fd, 4096)
                except OSError:
                    return

    read_until(b"you: ")
    os.write(fd, b"what are your hours\r")
    read_until(b"bot [")
    read_until(b"you: ")
    os.write(fd, b"\x04")  # Ctrl-D
    read_until(b"\x00", seconds=5)  # drain until the child exits
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    text = out.decode("utf-8", "replace")
    assert os.waitstatus_to_exitcode(status) == 0, text
    assert "Aborted" not in text and "Traceback" not in text
    assert "bot [topic]" in text


def test_a_crisis_in_simulate_queues_no_page_even_with_staff_on_call(runner):
    add_staff(runner, "--on-call")
    result = runner.invoke(main, ["simulate"], input="I took 30 valium\n")
    assert result.exit_code == 0, result.output
    assert "911" in result.output
    db = Database(Settings.from_env().sqlalchemy_url)
    try:
        with db.session() as s:
            esc = s.scalar(sql_select(Escalation))
            assert esc.channel == "sim" and esc.severity == "emergency"
            assert s.scalar(sql_select(func.count(Outbox.id))) == 0
    finally:
        db.engine.dispose()


# --- check: can anyone be paged? -----------------------------------------------------------------

SAFE = {"SECRET_KEY": "s" * 32, "TWILIO_AUTH_TOKEN": "t", "HELPLINE_PUBLIC_URL": "https://helpline.example.org"}
TWILIO = {"TWILIO_ACCOUNT_SID": "AC" + "2" * 32, "TWILIO_PHONE_NUMBER": "+15625731504"}


def test_check_fails_when_nobody_can_be_paged_and_says_why(runner, monkeypatch):
    for key, value in SAFE.items():
        monkeypatch.setenv(key, value)
    result = runner.invoke(main, ["check"])
    assert result.exit_code == 1
    assert "NOBODY CAN BE PAGED" in result.output and "Twilio credentials" in result.output
    assert "staff" in result.output  # no schema yet: the staff list cannot be read
    for key, value in TWILIO.items():
        monkeypatch.setenv(key, value)
    assert runner.invoke(main, ["db", "upgrade"]).exit_code == 0
    result = runner.invoke(main, ["check"])
    assert result.exit_code == 1 and "no active staff member with a phone" in result.output
    add_staff(runner)
    result = runner.invoke(main, ["check"])
    assert result.exit_code == 0 and "configuration OK" in result.output


def test_check_allows_a_box_without_paging_when_told(runner, monkeypatch):
    for key, value in SAFE.items():
        monkeypatch.setenv(key, value)
    result = runner.invoke(main, ["check", "--allow-no-paging"])
    assert result.exit_code == 0 and "NOTE: no Twilio credentials" in result.output
    assert "nobody can be paged, as allowed" in result.output
    monkeypatch.setenv("SECRET_KEY", "")
    assert runner.invoke(main, ["check", "--allow-no-paging"]).exit_code == 1  # insecure is never allowed
