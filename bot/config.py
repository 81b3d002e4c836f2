"""Settings read once from the environment: every name is defined here and nowhere else."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit
from typing import Mapping

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_REPLIES_DIR = REPO_ROOT / "replies"
DEFAULT_INSTANCE_DIR = REPO_ROOT / "instance"

_TRUE = {"1", "true", "yes", "on"}


def _flag(value: str | None) -> bool:
    return (value or "").strip().lower() in _TRUE


def _opt(value: str | None) -> str | None:
    value = (value or "").strip()
    return value or None


@dataclass(frozen=True)
class Settings:
    """Runtime configuration; build it with :meth:`from_env` so defaults live in one place."""

    twilio_account_sid: str | None = None
    twilio_auth_token: str | None = None
    twilio_phone_number: str | None = None
    database_url: str | None = None
    secret_key: str | None = None
    public_url: str | None = None
    dev: bool = False
    trusted_proxies: int = 0
    replies_dir: Path = DEFAULT_REPLIES_DIR
    instance_dir: Path = DEFAULT_INSTANCE_DIR
    context_minutes: int = 15
    repage_seconds: int = 300
    followup_seconds: int = 600
    claimed_crisis_seconds: int = 120  # a crisis text in a claimed conversation waits this long for staff
    dashboard_poll_seconds: float = 2.5  # how often an open dashboard page asks for changes
    twilio_api_url: str | None = None
    reply_limit_per_hour: int = 10
    retention_days: int = 90
    chat_origins: tuple[str, ...] = ()  # other sites allowed to call /chat/api (CORS); empty: same origin only
    chat_token_hours: int = 24

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        """Read every setting from the environment (``os.environ`` by default)."""
        env = os.environ if environ is None else environ
        instance = Path(env.get("HELPLINE_INSTANCE_DIR") or DEFAULT_INSTANCE_DIR)
        return cls(
            twilio_account_sid=_opt(env.get("TWILIO_ACCOUNT_SID")),
            twilio_auth_token=_opt(env.get("TWILIO_AUTH_TOKEN")),
            twilio_phone_number=_opt(env.get("TWILIO_PHONE_NUMBER")),
            database_url=_opt(env.get("DATABASE_URL")),
            secret_key=_opt(env.get("SECRET_KEY")),
            public_url=_opt(env.get("HELPLINE_PUBLIC_URL")),
            dev=_flag(env.get("HELPLINE_DEV")),
            trusted_proxies=int(env.get("HELPLINE_TRUSTED_PROXIES") or 0),
            replies_dir=Path(env.get("HELPLINE_REPLIES_DIR") or DEFAULT_REPLIES_DIR),
            instance_dir=instance,
            context_minutes=int(env.get("HELPLINE_CONTEXT_MINUTES") or 15),
            repage_seconds=int(env.get("HELPLINE_REPAGE_SECONDS") or 300),
            followup_seconds=int(env.get("HELPLINE_TEXTER_FOLLOWUP_SECONDS") or 600),
            claimed_crisis_seconds=int(env.get("HELPLINE_CLAIMED_CRISIS_SECONDS") or 120),
            dashboard_poll_seconds=float(env.get("HELPLINE_DASHBOARD_POLL_SECONDS") or 2.5),
            twilio_api_url=_opt(env.get("HELPLINE_TWILIO_API_URL")),
            reply_limit_per_hour=int(env.get("HELPLINE_REPLY_LIMIT_PER_HOUR") or 10),
            retention_days=int(env.get("HELPLINE_RETENTION_DAYS") or 90),
            chat_origins=tuple(o.strip().rstrip("/") for o in (env.get("HELPLINE_CHAT_ORIGINS") or "").split(",")
                               if o.strip()),
            chat_token_hours=int(env.get("HELPLINE_CHAT_TOKEN_HOURS") or 24),
        )

    def insecure(self, environ: Mapping[str, str] | None = None) -> list[str]:
        """Configuration that must not reach production (``helpline check`` and start-up refuse it)."""
        env = os.environ if environ is None else environ
        problems = []
        if not self.secret_key:
            problems.append("SECRET_KEY is not set (sessions would not survive a restart and could be forged)")
        if not self.twilio_auth_token:
            problems.append("TWILIO_AUTH_TOKEN is not set (webhook signatures cannot be checked)")
        if self.public_url:
            parts = urlsplit(self.public_url)
            if parts.scheme != "https" and parts.hostname not in ("127.0.0.1", "localhost", "::1"):
                problems.append(f"HELPLINE_PUBLIC_URL {self.public_url} is plain HTTP on a non-loopback host")
        for origin in self.chat_origins:
            parts = urlsplit(origin)
            if parts.scheme != "https" and parts.hostname not in ("127.0.0.1", "localhost", "::1"):
                problems.append(f"HELPLINE_CHAT_ORIGINS has plain-HTTP origin {origin} (chats would cross the internet unencrypted)")
        if _flag(env.get("FLASK_DEBUG")):
            problems.append("FLASK_DEBUG is on (the debugger runs arbitrary code)")
        return problems

    @property
    def can_send_sms(self) -> bool:
        """Whether outbound texts can go through Twilio's REST API."""
        return bool(self.twilio_account_sid and self.twilio_auth_token and self.twilio_phone_number)

    @property
    def spool_path(self) -> Path:
        """The outage spool: messages the database could not take, waiting to be stored."""
        return self.instance_dir / "spool.sqlite3"

    @property
    def sqlalchemy_url(self) -> str:
        """The database URL, defaulting to a SQLite file in the instance folder."""
        if self.database_url:
            url = self.database_url
            # Hosted PostgreSQL often hands out postgres:// URLs; SQLAlchemy wants a driver name.
            if url.startswith("postgres://"):
                url = "postgresql+psycopg://" + url[len("postgres://"):]
            elif url.startswith("postgresql://"):
                url = "postgresql+psycopg://" + url[len("postgresql://"):]
            return url
        return f"sqlite:///{self.instance_dir / 'helpline.sqlite3'}"
