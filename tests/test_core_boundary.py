"""The core must stay free of Flask, Twilio and SQLAlchemy so every channel can share it."""

import ast
from pathlib import Path

import bot.core

FORBIDDEN = ("flask", "twilio", "sqlalchemy", "werkzeug", "bot.web", "bot.store", "bot.service")


def core_imports():
    root = Path(bot.core.__file__).parent
    for path in sorted(root.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    yield path.name, alias.name
            elif isinstance(node, ast.ImportFrom) and node.module:
                yield path.name, node.module


def test_core_modules_import_nothing_from_the_web_or_storage_layers():
    offenders = [(f, m) for f, m in core_imports() if m.split(".")[0] in FORBIDDEN or m.startswith(FORBIDDEN)]
    assert offenders == []


def test_the_boundary_check_sees_real_imports():
    # Guard against the walker silently finding nothing.
    modules = {m for _, m in core_imports()}
    assert "bot.core.content" in modules and "unicodedata" in modules
