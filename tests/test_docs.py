"""The README cannot drift from the code: every command, setting and make target is documented.

Modelled on sqlite-utils' tests/test_docs.py: the lists come from the code itself (the click
group, the environment names read in bot/config.py and gunicorn.conf.py, the Makefile's targets),
so a new one that is not in README.md fails here.
"""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest

from bot import cli

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
ENV_READ = re.compile(r"""\.get\(\s*["']([A-Z][A-Z0-9_]+)["']""")
MAKE_TARGET = re.compile(r"^([a-z][a-z0-9-]*)\s*:(?!=)", re.M)


def _commands(group: click.Group, prefix: str = "") -> list[str]:
    out = []
    for name, command in group.commands.items():
        path = f"{prefix}{name}"
        out.append(path)
        if isinstance(command, click.Group):
            out.extend(_commands(command, path + " "))
    return out


COMMANDS = _commands(cli.main)
SETTINGS = sorted({name for source in ("bot/config.py", "gunicorn.conf.py")
                   for name in ENV_READ.findall((ROOT / source).read_text(encoding="utf-8"))})
TARGETS = sorted(set(MAKE_TARGET.findall((ROOT / "Makefile").read_text(encoding="utf-8"))))


def test_the_lists_are_read_from_the_code():
    assert {"serve", "simulate", "db upgrade", "staff add", "check"} <= set(COMMANDS)
    assert {"SECRET_KEY", "DATABASE_URL", "HELPLINE_BIND", "FLASK_DEBUG"} <= set(SETTINGS)
    assert {"run", "test", "bench"} <= set(TARGETS)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_cli_command_is_in_the_readme(command):
    assert re.search(rf"helpline {re.escape(command)}(?![\w-])", README), f"`helpline {command}` is not in README.md"


@pytest.mark.parametrize("command", [c for c in COMMANDS if " " not in c])
def test_every_cli_command_is_in_the_cli_docstring(command):
    assert re.search(rf"(?<![\w-]){re.escape(command)}(?![\w-])", cli.__doc__), f"{command} is not in bot/cli.py's docstring"


@pytest.mark.parametrize("name", SETTINGS)
def test_every_environment_setting_is_in_the_readme(name):
    assert f"`{name}`" in README, f"{name} is read from the environment but not in README.md"


@pytest.mark.parametrize("target", TARGETS)
def test_every_make_target_is_in_the_readme(target):
    assert re.search(rf"make {re.escape(target)}(?![\w-])", README), f"`make {target}` is not in README.md"
