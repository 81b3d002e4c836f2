"""Shared helpers for the benchmark suite: the corpus, signed Twilio requests, child processes.

Everything here talks to 127.0.0.1 only, and every child process is started in its own
process group so that it (and, for gunicorn, its workers) can be ended by its own id.
"""

from __future__ import annotations

import math
import os
import platform
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from twilio.request_validator import RequestValidator

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
BIN = Path(sys.executable).parent
CORPUS_DIR = ROOT / "tests" / "corpus" / "dev"

HOST = "127.0.0.1"
TOKEN = "bench-auth-token-0123456789abcdef"
ACCOUNT_SID = "AC" + "b" * 32
CLINIC_NUMBER = "+15625731504"
SECRET_KEY = "bench-secret-key"

# Both web servers run exactly like this (see RESULTS.md for why): 2 gthread workers (one per
# core) with 4 threads each, no HTTP keep-alive (every webhook on its own connection, as behind
# a proxy; with keep-alive one worker tends to take all of wrk's connections and the other idles).
GUNICORN_WORKERS = 2
GUNICORN_CLASS = "gthread"
GUNICORN_THREADS = 4
GUNICORN_KEEPALIVE = 0

# Inherited variables that would change what the app does; the benchmark sets its own.
_SCRUB = ("DATABASE_URL", "SECRET_KEY", "TWILIO_", "HELPLINE_")


# --------------------------------------------------------------------------- corpus
@dataclass(frozen=True)
class Text:
    label: str  # emergency, urgent, review, routine
    lang: str  # en, es
    body: str


def corpus() -> list[Text]:
    """Every line of the dev corpus (English and Spanish), in file order."""
    from bot.core.corpus import read
    out = []
    for path in sorted(CORPUS_DIR.glob("*.txt")):
        lang = path.stem
        out.extend(Text(e.label, lang, e.text) for e in read(path))
    return out


def mix_summary(texts: list[Text]) -> str:
    crisis = sum(t.label in ("emergency", "urgent") for t in texts)
    review = sum(t.label == "review" for t in texts)
    routine = sum(t.label == "routine" for t in texts)
    es = sum(t.lang == "es" for t in texts)
    return (f"{len(texts)} dev-corpus texts: {crisis} crisis, {review} review, {routine} routine; "
            f"{es} Spanish")


# --------------------------------------------------------------------------- requests
@dataclass(frozen=True)
class SignedRequest:
    """One webhook POST, body and signature computed before any timing starts."""

    sid: str
    sender: str
    body: bytes  # application/x-www-form-urlencoded
    signature: str
    label: str


def twilio_params(body: str, sender: str, sid: str) -> dict[str, str]:
    """The form Twilio posts for an inbound SMS (the full set of fields, as in production)."""
    return {
        "ToCountry": "US", "ToState": "CA", "SmsMessageSid": sid, "NumMedia": "0",
        "ToCity": "LONG BEACH", "FromZip": "90802", "SmsSid": sid, "FromState": "CA",
        "SmsStatus": "received", "FromCity": "LOS ANGELES", "Body": body, "FromCountry": "US",
        "To": CLINIC_NUMBER, "ToZip": "90802", "NumSegments": "1", "ReferralNumMedia": "0",
        "MessageSid": sid, "AccountSid": ACCOUNT_SID, "From": sender, "ApiVersion": "2010-04-01",
    }


def sign_all(texts: list[Text], url: str, first: int, count: int, seed: int = 7,
             sender_of=None) -> list[SignedRequest]:
    """``count`` requests cycling through ``texts`` (shuffled), each with its own sid and sender.

    Request ``i`` (from ``first``) comes from ``sender_of(i)`` (default: a number used by no
    other request) with MessageSid ``SM<i>``: nothing is ever a Twilio retry.
    """
    rng = random.Random(seed)
    order = list(texts)
    rng.shuffle(order)
    validator = RequestValidator(TOKEN)
    sender_of = sender_of or (lambda i: f"+1555{i:07d}")
    out = []
    for k in range(count):
        i = first + k
        text = order[k % len(order)]
        sid = f"SM{i:032x}"
        sender = sender_of(i)
        params = twilio_params(text.body, sender, sid)
        sig = validator.compute_signature(url, params)
        out.append(SignedRequest(sid, sender, urllib.parse.urlencode(params).encode(), sig, text.label))
    return out


# --------------------------------------------------------------------------- processes
def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def bench_env(**extra: str) -> dict[str, str]:
    """The parent environment without the app's settings, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUB)}
    env["PYTHONUNBUFFERED"] = "1"
    env.update({k: str(v) for k, v in extra.items()})
    return env


class Procs:
    """Child processes started for one section; :meth:`stop_all` ends each by its group id."""

    def __init__(self):
        self.procs: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, args: list[str], env: dict, log: Path, cwd: Path = ROOT) -> subprocess.Popen:
        fh = open(log, "ab")
        try:
            proc = subprocess.Popen(args, env=env, cwd=str(cwd), stdin=subprocess.DEVNULL, stdout=fh,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        finally:
            fh.close()
        self.procs.append((name, proc))
        return proc

    def stop(self, proc: subprocess.Popen, timeout: float = 5.0) -> None:
        if proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)  # the group this process leads (start_new_session)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(5)

    def stop_all(self) -> None:
        for _, proc in reversed(self.procs):
            self.stop(proc)
        self.procs.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop_all()


def run_cli(args: list[str], env: dict, stdin: str | None = None, timeout: float = 60) -> str:
    """Run a ``helpline`` subcommand to completion."""
    res = subprocess.run([str(BIN / "helpline"), *args], env=env, cwd=str(ROOT), input=stdin,
                         capture_output=True, text=True, timeout=timeout)
    if res.returncode != 0:
        raise RuntimeError(f"helpline {' '.join(args)} failed: {res.stderr.strip()[-2000:]}")
    return res.stdout


def gunicorn_command() -> str:
    return (f"gunicorn --workers {GUNICORN_WORKERS} --worker-class {GUNICORN_CLASS} --threads {GUNICORN_THREADS} "
            f"--keep-alive {GUNICORN_KEEPALIVE}")


def gunicorn_args(target: str, port: int, workers: int = GUNICORN_WORKERS, chdir: Path = ROOT) -> list[str]:
    return [str(BIN / "gunicorn"), target, "--bind", f"{HOST}:{port}", "--workers", str(workers),
            "--worker-class", GUNICORN_CLASS, "--threads", str(GUNICORN_THREADS),
            "--keep-alive", str(GUNICORN_KEEPALIVE), "--chdir", str(chdir),
            "--graceful-timeout", "3", "--timeout", "60", "--log-level", "warning"]


def wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float = 30.0) -> None:
    """Wait until ``url`` answers at all (any status), or fail with the log's tail."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except urllib.error.HTTPError:
            return  # it answered
        except OSError:
            time.sleep(0.1)
    tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
    raise RuntimeError(f"server at {url} did not come up (exit={proc.poll()}):\n{tail}")


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (gunicorn's workers)."""
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out.extend(int(c) for c in (task / "children").read_text().split())
        except OSError:
            pass
    return sorted(set(out))


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of a process, in kB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


# --------------------------------------------------------------------------- numbers
def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100)."""
    if not values:
        return float("nan")
    s = sorted(values)
    k = max(0, min(len(s) - 1, math.ceil(p / 100 * len(s)) - 1))
    return s[k]


def machine_info() -> dict[str, str]:
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": str(os.cpu_count()),
        "cpu": model,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
