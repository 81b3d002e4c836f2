"""A last-resort journal for messages that could not reach the database.

When storage fails, the message (and so any escalation it carries) is appended here with an
fsync, then replayed into the database by the next request that finds storage healthy. Entries
keep their MessageSid, so a replay that overlaps a Twilio retry is still processed once. The
file lives in the instance folder, beside the SQLite database, with the same protection.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict
from pathlib import Path

from bot.core.engine import Inbound

logger = logging.getLogger(__name__)


class Spool:
    """Append-only JSON-lines file of unstored inbound messages."""

    def __init__(self, path: Path | str):
        self.path = Path(path)

    def append(self, msg: Inbound, received_at: str) -> bool:
        """Durably record one message; False if even that failed."""
        line = json.dumps({"received_at": received_at, **asdict(msg)}, ensure_ascii=False) + "\n"
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line.encode("utf-8"))
                os.fsync(fd)
            finally:
                os.close(fd)
            return True
        except OSError:
            logger.critical("could not write the spool %s either", self.path, exc_info=True)
            return False

    def pending(self) -> bool:
        """Whether anything waits to be replayed."""
        return self.path.exists()

    def take(self) -> list[tuple[Inbound, str]]:
        """Atomically claim every pending entry (another process gets none of them)."""
        claimed = self.path.with_name(f"{self.path.name}.{os.getpid()}.replay")
        try:
            os.replace(self.path, claimed)
        except FileNotFoundError:
            return []
        entries = []
        for raw in claimed.read_text(encoding="utf-8").splitlines():
            try:
                data = json.loads(raw)
                received_at = data.pop("received_at")
                entries.append((Inbound(**data), received_at))
            except (ValueError, TypeError, KeyError):
                logger.error("skipping a damaged spool line")
        self._claimed = claimed
        return entries

    def done(self) -> None:
        """Forget the entries claimed by :meth:`take` once they are stored."""
        claimed = getattr(self, "_claimed", None)
        if claimed is not None:
            claimed.unlink(missing_ok=True)
            self._claimed = None

    def give_back(self, entries: list[tuple[Inbound, str]]) -> None:
        """Put entries that still could not be stored back in the spool."""
        for msg, received_at in entries:
            self.append(msg, received_at)
        self.done()
