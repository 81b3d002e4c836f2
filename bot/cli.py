"""The ``helpline`` command, one console script for running and operating the helpline.

Running: serve (development server), worker (the dispatcher), simulate (a terminal chat).
Checking: check (configuration), check-content (replies/), triage (stdin to JSON verdicts).
Operating: db upgrade, staff (add, list, on-call, remove, password, logout, unlock), escalations,
report, spool (the outage journal), purge.
README.md documents each (``tests/test_docs.py`` fails when one is missing there or here).
"""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager

import click

from bot.config import Settings
from bot.core.states import OPEN_STATUSES, EscalationStatus


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
    from bot.staff.dispatcher import start_in_thread
    from bot.web import InsecureConfiguration, UnmigratedDatabase, create_app, settle_for_serving
    try:
        app = create_app(refuse_insecure=True, background=True)
    except (InsecureConfiguration, UnmigratedDatabase) as exc:
        raise click.ClickException(str(exc))
    ext = app.extensions["helpline"]
    _, stop = start_in_thread(ext.db, ext.settings, ext.helpline.bot.content)
    settle_for_serving()
    try:
        app.run(host=host, port=port, debug=False, use_reloader=False)
    finally:
        stop.set()


def _typed_lines():
    """What the user types: piped lines, or prompts until Ctrl-D (EOF) or Ctrl-C, which end quietly."""
    if not sys.stdin.isatty():
        yield from (line.rstrip("\n") for line in sys.stdin)
        return
    while True:
        try:
            yield click.prompt("you", default="", show_default=False)
        except click.Abort:  # click's EOFError and KeyboardInterrupt
            click.echo()
            return


@main.command()
@click.option("--sender", "sender", default="+15555550100", show_default=True, help="Pretend to text from this number.")
def simulate(sender: str) -> None:
    """Chat with the bot in the terminal: the webhook's code path and database, no Twilio, no pages.

    Log lines go to simulate.log in the instance folder, so only the conversation is on screen.
    """
    import logging
    from uuid import uuid4

    from bot.core.engine import Inbound
    from bot.core.states import Channel
    from bot.store import migrate
    from bot.web import create_app
    settings = Settings.from_env()
    settings.instance_dir.mkdir(parents=True, exist_ok=True)
    log_file = settings.instance_dir / "simulate.log"
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    to_file = logging.FileHandler(log_file, encoding="utf-8")
    to_file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.handlers, root.level = [to_file], logging.INFO  # nothing but the chat on screen
    try:
        app = create_app(settings)
        ext = app.extensions["helpline"]
        migrate.upgrade(ext.db)
        click.echo(f"Texting as {sender} (training: nobody is paged). Type a message; Ctrl-D to quit. "
                   f"Logs: {log_file}")
        for line in _typed_lines():
            outcome = ext.helpline.handle(Inbound(sender=sender, body=line, channel=Channel.SIM,
                                                  message_id=f"SIM{uuid4().hex}"))
            d = outcome.decision
            tag = f"[{d.kind}{' ' + d.triage.severity if d and d.triage.severity else ''}]" if d else "[duplicate]"
            click.echo(f"bot {tag}: {outcome.reply or '(no reply)'}")
        ext.db.engine.dispose()
    finally:
        root.handlers, root.level = saved
        to_file.close()


@main.command()
@click.option("--explain", is_flag=True, help="Add the rules that fired and the model's strongest words for and against.")
def triage(explain: bool) -> None:
    """Read one message per line on stdin; write one JSON verdict per line (no database).

    Stable fields: escalate, severity, kind, rules, topic, language, reply. With --explain, an
    "explain" object with the rules' hits and the model's probabilities and words.
    """
    from bot.core.engine import Inbound
    bot = _bot(Settings.from_env())
    out = sys.stdout
    for line in sys.stdin:
        text = line.rstrip("\r\n")
        d = bot.decide(Inbound(sender="triage", body=text))
        row = {"escalate": d.triage.escalate, "severity": d.triage.severity, "kind": d.triage.kind,
               "rules": list(d.triage.rules), "topic": d.topic, "language": d.language, "reply": d.reply or ""}
        if explain:
            row["explain"] = bot.explain(text)
        out.write(json.dumps(row, ensure_ascii=False) + "\n")
        out.flush()


def paging_problems(settings: Settings) -> list[str]:
    """Why a crisis could page nobody: no Twilio credentials, or no active staff member with a phone."""
    from sqlalchemy import func, select
    from sqlalchemy.exc import SQLAlchemyError

    from bot.store.db import Database
    from bot.store.models import Staff
    problems = []
    if not settings.can_send_sms:
        problems.append("no Twilio credentials (TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN, TWILIO_PHONE_NUMBER): "
                        "pages cannot be sent")
    db = Database(settings.sqlalchemy_url)
    try:
        with db.session() as s:
            pageable = s.scalar(select(func.count(Staff.id)).where(Staff.active.is_(True), Staff.phone != ""))
        if not pageable:
            problems.append("no active staff member with a phone (helpline staff add ...)")
    except SQLAlchemyError as exc:
        problems.append(f"cannot read the staff list ({type(exc).__name__}; run 'helpline db upgrade' first)")
    finally:
        db.engine.dispose()
    return problems


@main.command()
@click.option("--allow-no-paging", is_flag=True,
              help="Nobody can be paged on purpose (a demo or training box): report it without failing.")
def check(allow_no_paging: bool) -> None:
    """Report insecure configuration, and whether a crisis can page anyone; exit 1 if not.

    Serve and gunicorn refuse insecure configuration outside HELPLINE_DEV. A box where no page can
    go out (no Twilio credentials, or no active staff member with a phone) fails too, unless
    --allow-no-paging says that is intended.
    """
    settings = Settings.from_env()
    problems = settings.insecure()
    for p in problems:
        click.echo(f"INSECURE: {p}", err=True)
    paging = paging_problems(settings)
    for p in paging:
        click.echo(f"{'NOTE' if allow_no_paging else 'NOBODY CAN BE PAGED'}: {p}", err=True)
    if settings.dev:
        click.echo("NOTE: HELPLINE_DEV=1 (development mode) is on", err=True)
    _report_spool(settings)
    if problems or (paging and not allow_no_paging):
        raise SystemExit(1)
    click.echo("configuration OK" + (" (nobody can be paged, as allowed)" if paging else ""))


def _report_spool(settings: Settings) -> None:
    """What the outage spool holds (a warning, never a failed check: the web must still start)."""
    if not settings.spool_path.exists():
        return
    from bot.store.spool import Spool
    from bot.web.health import dead_letter_problem
    held = Spool(settings.spool_path).counts()
    if held.dead:
        click.echo(f"WARNING: {dead_letter_problem(held.dead, held.dead_crises)}", err=True)
    if held.pending:
        click.echo(f"WARNING: {held.pending} message(s) from a database outage are waiting to be stored "
                   "(replayed by the web app once the database answers)", err=True)


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


@main.command()
@click.option("--interval", default=1.0, show_default=True, help="Seconds between passes.")
@click.option("--once", is_flag=True, help="Run one pass and exit (for cron or tests).")
def worker(interval: float, once: bool) -> None:
    """Send pages, replies and follow-ups; re-page unclaimed escalations (run several if you like)."""
    import signal
    import threading

    from bot.core.content import load_cached
    from bot.staff.dispatcher import Dispatcher
    from bot.store.db import SESSION_SECONDS, Database
    settings = Settings.from_env()
    logging_setup()
    database = Database(settings.sqlalchemy_url, session_seconds=SESSION_SECONDS)
    dispatcher = Dispatcher(database, settings, load_cached(str(settings.replies_dir)))
    if once:
        click.echo(f"sent {dispatcher.tick()}")
        return
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    dispatcher.run(stop, interval)


def logging_setup() -> None:
    """INFO logs to stderr, one line per record, as the web app does."""
    from bot import logs
    logs.setup()


@main.command()
@click.option("--status", type=click.Choice([s.value for s in EscalationStatus]), multiple=True,
              help="Only these statuses (repeatable); default open and claimed.")
@click.option("--json", "as_json", is_flag=True, help="One JSON array with stable fields.")
def escalations(status: tuple[str, ...], as_json: bool) -> None:
    """List escalations: id, status, severity, created_at, claimed_by, pages_sent."""
    from bot.staff.actions import queue
    from bot.store.db import Database
    settings = Settings.from_env()
    with Database(settings.sqlalchemy_url).session() as s:
        items = queue(s, status or OPEN_STATUSES)
    rows = [{"id": i.id, "status": i.status, "severity": i.severity, "created_at": i.created_at.isoformat(),
             "claimed_by": i.claimed_by, "pages_sent": i.pages_sent} for i in items]
    if as_json:
        click.echo(json.dumps(rows))
        return
    for r in rows:
        click.echo(f"#{r['id']:<5} {r['severity']:<9} {r['status']:<11} {r['created_at'][:19]}  "
                   f"pages={r['pages_sent']}  {r['claimed_by'] or ''}")


@main.command()
@click.option("--since", default="7d", show_default=True, help="How far back: 7d, 4w, 48h.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object with stable fields (see README).")
def report(since: str, as_json: bool) -> None:
    """The numbers: texts, escalations, time to claim and to first reply, outcomes, unanswered questions."""
    from bot.core.content import load_cached
    from bot.staff.report import build, text_lines
    from bot.store.db import Database
    from bot.store.retention import parse_age
    try:
        window = parse_age(since)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--since")
    settings = Settings.from_env()
    with Database(settings.sqlalchemy_url).session() as s:
        numbers = build(s, window)
    if as_json:
        click.echo(json.dumps(numbers, ensure_ascii=False))
        return
    for line in text_lines(numbers, load_cached(str(settings.replies_dir)).clinic_short_name):
        click.echo(line)


@main.group()
def staff() -> None:
    """Staff accounts and on-call status."""


def _accounts():
    from bot.staff import accounts
    from bot.store.db import Database
    return accounts, Database(Settings.from_env().sqlalchemy_url)


@contextmanager
def _account_change():
    """(accounts module, session) for one staff change; an AccountError becomes a clean CLI error."""
    accounts, database = _accounts()
    try:
        with database.session() as s:
            yield accounts, s
    except accounts.AccountError as exc:
        raise click.ClickException(str(exc))


@staff.command("add")
@click.option("--name", required=True, help="Full name shown on the dashboard.")
@click.option("--email", required=True, help="Login email.")
@click.option("--phone", required=True, help="Mobile number for pages, E.164 (+15551234567).")
@click.option("--admin", is_flag=True, help="May act on escalations claimed by others.")
@click.option("--on-call", "on_call", is_flag=True, help="Paged at once for emergencies.")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
def staff_add(name, email, phone, admin, on_call, password_stdin) -> None:
    """Add a staff member (password from a prompt or --password-stdin; never an argument)."""
    password = sys.stdin.readline().rstrip("\n") if password_stdin else click.prompt(
        "Password", hide_input=True, confirmation_prompt=True)
    with _account_change() as (accounts, s):
        person = accounts.add_staff(s, name, email, phone, password, admin=admin, on_call=on_call)
        click.echo(f"added {person.email}{' (on call)' if on_call else ''}")


@staff.command("list")
def staff_list() -> None:
    """Active staff, on-call first (phones masked)."""
    from bot.store.models import mask
    accounts, database = _accounts()
    with database.session() as s:
        for p in accounts.list_staff(s):
            click.echo(f"{p.email:<32} {p.name:<24} {mask(p.phone)}  {'ON CALL' if p.on_call else 'off'}"
                       f"{'  admin' if p.is_admin else ''}")


@staff.command("on-call")
@click.argument("email")
@click.argument("state", type=click.Choice(["on", "off"]))
def staff_on_call(email, state) -> None:
    """Put EMAIL on or off call."""
    with _account_change() as (accounts, s):
        accounts.set_on_call(s, email, state == "on")
    click.echo(f"{email} is {'on' if state == 'on' else 'off'} call")


@staff.command("remove")
@click.argument("email")
def staff_remove(email) -> None:
    """Deactivate EMAIL and end their sessions (kept for the audit log)."""
    from bot.staff.actions import audit
    with _account_change() as (accounts, s):
        person = accounts.remove_staff(s, email)
        audit(s, person, "staff_removed", None, "by an admin; sessions ended")
    click.echo(f"{email} removed")


@staff.command("password")
@click.argument("email")
@click.option("--password-stdin", is_flag=True, help="Read the new password from standard input.")
def staff_password(email, password_stdin) -> None:
    """Set a new password for EMAIL; every session of the account ends (a copied cookie stops working)."""
    from bot.staff.actions import audit
    password = sys.stdin.readline().rstrip("\n") if password_stdin else click.prompt(
        "New password", hide_input=True, confirmation_prompt=True)
    with _account_change() as (accounts, s):
        person, ended = accounts.change_password(s, email, password)
        audit(s, person, "password_changed", None, f"{ended} session(s) ended")
    click.echo(f"password changed for {email}; {ended} session(s) ended")


@staff.command("logout")
@click.argument("email")
def staff_logout(email) -> None:
    """End every dashboard session of EMAIL (a lost phone or laptop)."""
    from bot.staff.actions import audit
    from bot.staff.sessions import revoke_all
    accounts, database = _accounts()
    with database.session() as s:
        person = accounts.find(s, email)
        if person is None:
            raise click.ClickException(f"no staff member {email}")
        ended = revoke_all(s, person.id)
        audit(s, person, "sessions_revoked", None, f"{ended} session(s) ended by an admin")
    click.echo(f"{ended} session(s) of {email} ended")


@staff.command("unlock")
@click.argument("email")
@click.option("--address", default=None, help="Also clear one client address's failed logins.")
def staff_unlock(email, address) -> None:
    """Clear EMAIL's failed logins from every address, so its login is neither locked nor slowed."""
    from bot.staff.logins import unlock
    from bot.store.limits import Limiter
    settings = Settings.from_env()
    if not settings.secret_key:
        raise click.ClickException("SECRET_KEY is not set: failed logins are counted per web process with a "
                                   "random key; restarting the web app clears them")
    accounts, database = _accounts()
    with database.session() as s:
        cleared = unlock(s, Limiter(settings.secret_key), email, address)
    click.echo(f"{email} unlocked ({cleared} counter(s) cleared)")


@main.command()
@click.option("--older-than", "older_than", default=None,
              help="Erase content older than this (90d, 12w, 48h); default HELPLINE_RETENTION_DAYS days.")
def purge(older_than: str | None) -> None:
    """Erase message bodies and numbers past retention; escalation metrics and the audit log stay."""
    from datetime import timedelta

    from bot.store.db import Database
    from bot.store.retention import parse_age, purge as run_purge
    settings = Settings.from_env()
    try:
        age = parse_age(older_than) if older_than else timedelta(days=settings.retention_days)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--older-than")
    report = run_purge(Database(settings.sqlalchemy_url), age)
    click.echo(f"purged before {report.cutoff:%Y-%m-%d %H:%M} UTC: {report.messages} message bodies, "
               f"{report.outbox} outbound texts, {report.notes} notes, {report.contacts} numbers")


@main.group()
def spool() -> None:
    """The outage spool: messages received while the database failed, and dead letters."""


def _spool():
    from bot.store.spool import Spool
    return Spool(Settings.from_env().spool_path)


def _entry_line(e) -> str:
    from bot.store.models import mask
    verdict = (e.severity or "").upper() or "-"
    error = f"  {e.error}" if e.error else ""
    return (f"#{e.id:<5} {e.state:<7} {e.received_at:%Y-%m-%d %H:%M:%S} {mask(e.msg.sender):<9} {e.msg.channel:<8} "
            f"{verdict:<9} tries={e.attempts}{error}")


@spool.command("list")
@click.option("--all", "everything", is_flag=True, help="Also entries still waiting to be replayed.")
def spool_list(everything: bool) -> None:
    """Dead letters (and with --all, waiting entries): id, state, received, masked sender, verdict, error."""
    from bot.store.spool import DEAD
    entries = _spool().entries(None if everything else DEAD)
    for e in entries:
        click.echo(_entry_line(e))
    if not entries:
        click.echo("nothing in the spool" if everything else "no dead letters")


@spool.command("show")
@click.argument("entry_id", type=click.IntRange(1, 2**62))
@click.option("--body", is_flag=True, help="Print the message text too (it is health information: mind who sees it).")
def spool_show(entry_id: int, body: bool) -> None:
    """One entry: where it came from, why it could not be stored, what in its text a database refuses."""
    from bot.store.text import REPLACEMENT, storable
    e = _spool().entry(entry_id)
    if e is None:
        raise click.ClickException(f"no spool entry {entry_id}")
    click.echo(_entry_line(e))
    text = e.msg.body or ""
    bad = [i for i, (a, b) in enumerate(zip(text, storable(text))) if a != b and b == REPLACEMENT]
    click.echo(f"message id {e.msg.message_id!r}, {len(text)} characters, media {e.msg.media_count}")
    click.echo(f"characters a database refuses: {len(bad)}" + (f" at {bad[:10]}" if bad else ""))
    if body:
        click.echo("text: " + (text.encode("unicode_escape").decode("ascii") if bad else text))


@spool.command("retry")
@click.argument("entry_ids", nargs=-1, type=click.IntRange(1, 2**62))
@click.option("--all", "everything", is_flag=True, help="Every dead letter.")
@click.option("--clean", is_flag=True, help="First replace what no database can store (NUL, lone surrogates).")
def spool_retry(entry_ids: tuple[int, ...], everything: bool, clean: bool) -> None:
    """Put dead letters back in line and replay the spool now."""
    from bot.store.spool import DEAD
    from bot.web import create_app
    store = _spool()
    ids = [e.id for e in store.entries(DEAD)] if everything else list(entry_ids)
    if not ids:
        raise click.ClickException("name the entries to retry, or --all")
    for entry_id in ids:
        if not store.retry(entry_id, clean=clean):
            raise click.ClickException(f"no spool entry {entry_id}")
    helpline = create_app(Settings.from_env()).extensions["helpline"].helpline
    stored = helpline.replay_spool(budget=60.0, wait=10.0)
    left = [e.id for e in store.entries() if e.id in set(ids)]
    click.echo(f"stored {stored} message(s); still in the spool: {left or 'none'}")
    if left:
        raise SystemExit(1)


@spool.command("drop")
@click.argument("entry_id", type=click.IntRange(1, 2**62))
@click.option("--reason", required=True, help="Why (kept in the audit log).")
def spool_drop(entry_id: int, reason: str) -> None:
    """Delete one entry for good, with an audit entry saying why (read it with 'show --body' first)."""
    from bot.staff.actions import audit
    from bot.store.db import Database
    from bot.store.models import mask
    store = _spool()
    e = store.entry(entry_id)
    if e is None:
        raise click.ClickException(f"no spool entry {entry_id}")
    with Database(Settings.from_env().sqlalchemy_url).session() as s:
        audit(s, None, "spool_dropped", None, f"spool entry {entry_id} from {mask(e.msg.sender)} received "
                                              f"{e.received_at:%Y-%m-%d %H:%M} UTC: {reason[:500]}")
    store.drop(entry_id)
    click.echo(f"dropped spool entry {entry_id}")


@main.group()
def db() -> None:
    """Database schema commands."""


@db.command()
def upgrade() -> None:
    """Create or upgrade the schema with Alembic migrations (SQLite or PostgreSQL)."""
    from bot.store import migrate
    from bot.store.db import Database
    settings = Settings.from_env()
    migrate.upgrade(Database(settings.sqlalchemy_url))
    click.echo(f"database schema is up to date ({migrate.head()})")


if __name__ == "__main__":
    main()
