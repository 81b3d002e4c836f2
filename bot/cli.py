"""The ``helpline`` command: serve, simulate, triage, check-content, db upgrade."""

from __future__ import annotations

import json
import sys

import click

from bot.config import Settings


def _bot(settings: Settings):
    from bot.core.engine import get_bot
    return get_bot(str(settings.replies_dir))


@click.group()
def main() -> None:
    """Solace Hills Detox helpline bot."""


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=5000, show_default=True, type=int, help="Port to listen on.")
def serve(host: str, port: int) -> None:
    """Run the web app with Flask's development server (use gunicorn in production)."""
    from bot.web import create_app
    app = create_app()
    app.run(host=host, port=port, debug=False, use_reloader=False)


@main.command()
@click.option("--sender", "sender", default="+15555550100", show_default=True, help="Pretend to text from this number.")
def simulate(sender: str) -> None:
    """Chat with the bot in the terminal: the webhook's code path and database, no Twilio."""
    from uuid import uuid4

    from bot.core.engine import Inbound
    from bot.web import create_app
    app = create_app(Settings.from_env())
    ext = app.extensions["helpline"]
    ext.db.create_all()
    click.echo(f"Texting as {sender}. Type a message; Ctrl-D to quit.")
    for line in sys.stdin if not sys.stdin.isatty() else iter(lambda: click.prompt("you", default="", show_default=False), None):
        line = line.rstrip("\n")
        outcome = ext.helpline.handle(Inbound(sender=sender, body=line, channel="sim", message_id=f"SIM{uuid4().hex}"))
        d = outcome.decision
        tag = f"[{d.kind}{' ' + d.triage.severity if d and d.triage.severity else ''}]" if d else "[duplicate]"
        click.echo(f"bot {tag}: {outcome.reply or '(no reply)'}")


@main.command()
def triage() -> None:
    """Read one message per line on stdin; write one JSON verdict per line (no database)."""
    from bot.core.engine import Inbound
    bot = _bot(Settings.from_env())
    out = sys.stdout
    for line in sys.stdin:
        d = bot.decide(Inbound(sender="triage", body=line.rstrip("\r\n")))
        out.write(json.dumps({"escalate": d.triage.escalate, "severity": d.triage.severity, "topic": d.topic,
                              "language": d.language, "reply": d.reply or ""}, ensure_ascii=False) + "\n")
        out.flush()


@main.command("check-content")
def check_content() -> None:
    """Validate replies/: SMS limits, clinic number, reachable topics, rule examples."""
    from bot.core.checks import check
    from bot.core.content import load
    settings = Settings.from_env()
    problems = check(load(settings.replies_dir))
    for p in problems:
        click.echo(f"PROBLEM: {p}", err=True)
    if problems:
        raise SystemExit(1)
    click.echo(f"content OK ({settings.replies_dir})")


@main.group()
def db() -> None:
    """Database schema commands."""


@db.command()
def upgrade() -> None:
    """Create or upgrade the schema."""
    from bot.store.db import Database
    settings = Settings.from_env()
    database = Database(settings.sqlalchemy_url)
    database.create_all()
    click.echo("database schema is up to date")


if __name__ == "__main__":
    main()
