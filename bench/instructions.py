"""Instructions per webhook request, counted by valgrind: a figure a busy machine does not disturb.

    .venv/bin/python bench/instructions.py [--postgres] [--requests 300] [--warm 200] [--profile FILE]

Builds the real app in one process (``create_app``; SQLite in a temporary folder, or PostgreSQL in a
fresh schema; one on-call staff member; the reply cap off, as the section-1 bench), signs the bench's
requests (new senders, the dev corpus's mix) and calls the WSGI app with the environ a server hands it.
``--warm`` requests run first, then ``--requests`` more inside one ``functools.reduce`` call, and
callgrind counts only within that call (``--toggle-collect``): start-up, imports and the warm-up never
reach the figure. On PostgreSQL only the client side is counted (the server is another process).
"""

from __future__ import annotations

import argparse
import functools
import io
import logging
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import SECRET_KEY, TOKEN, corpus, sign_all  # noqa: E402

BASE = "http://127.0.0.1:9"


def serve(total: int, postgres: bool, tmp: Path, warm: int = 0) -> None:
    """The child: build the app and answer ``total`` signed requests."""
    from bot.config import Settings
    from bot.staff.accounts import add_staff
    from bot.web import create_app

    instance = tmp / "instance"
    instance.mkdir(exist_ok=True)
    url = None
    if postgres:
        from webhook import PG_BASE, PG_SCHEMA
        import sqlalchemy as sa
        schema = f"{PG_SCHEMA}_count_{os.getpid()}"
        eng = sa.create_engine(PG_BASE)
        with eng.begin() as c:
            c.execute(sa.text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
            c.execute(sa.text(f"CREATE SCHEMA {schema}"))
        eng.dispose()
        url = PG_BASE + f"?options=-csearch_path%3D{schema}"
    settings = Settings(twilio_auth_token=TOKEN, secret_key=SECRET_KEY, instance_dir=instance, public_url=BASE,
                        reply_limit_per_hour=0, **({"database_url": url} if url else {}))
    app = create_app(settings)
    for h in logging.getLogger().handlers:
        if isinstance(h, logging.StreamHandler):
            h.setStream(open(tmp / "app.log", "a"))
    ext = app.extensions["helpline"]
    ext.db.create_all()
    with ext.db.session() as s:
        add_staff(s, "Bench On Call", "oncall@bench.test", "+15625550111", "bench password 1234", on_call=True)
    reqs = sign_all(corpus(), BASE + "/sms", first=9_000_000, count=total, seed=21)
    statuses = []

    def start_response(status, headers, exc_info=None):
        statuses.append(status)

    def answer(_, r):
        environ = {
            "REQUEST_METHOD": "POST", "SCRIPT_NAME": "", "PATH_INFO": "/sms", "QUERY_STRING": "",
            "RAW_URI": "/sms", "SERVER_PROTOCOL": "HTTP/1.1", "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "9",
            "REMOTE_ADDR": "127.0.0.1", "REMOTE_PORT": "40000", "HTTP_HOST": "127.0.0.1:9",
            "CONTENT_TYPE": "application/x-www-form-urlencoded", "CONTENT_LENGTH": str(len(r.body)),
            "HTTP_X_TWILIO_SIGNATURE": r.signature, "HTTP_USER_AGENT": "TwilioProxy/1.1",
            "HTTP_ACCEPT": "*/*", "HTTP_CONNECTION": "close",
            "wsgi.input": io.BytesIO(r.body), "wsgi.errors": sys.stderr, "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http", "wsgi.multithread": True, "wsgi.multiprocess": True,
            "wsgi.run_once": False,
        }
        body = app(environ, start_response)
        b"".join(body)
        if hasattr(body, "close"):
            body.close()

    for r in reqs[:warm]:
        answer(None, r)
    # The measured requests inside one C call, functools.reduce: callgrind counts only within it
    # (--toggle-collect), so start-up, imports and the warm-up are never in the figure.
    functools.reduce(answer, reqs[warm:], None)
    bad = [s for s in statuses if not s.startswith("200")]
    if bad:
        raise SystemExit(f"{len(bad)} requests not answered 200: {bad[:3]}")
    ext.db.engine.dispose()
    if postgres:
        eng = sa.create_engine(PG_BASE)
        with eng.begin() as c:
            c.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
        eng.dispose()


def count(warm: int, requests: int, postgres: bool, profile: str | None = None) -> int:
    """Instructions executed inside the measured requests (callgrind, collecting only within them)."""
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    with tempfile.TemporaryDirectory(prefix="helpline-count-") as d:
        out = profile or str(Path(d) / "callgrind.out")
        cmd = ["valgrind", "--tool=callgrind", "--collect-atstart=no", "--toggle-collect=functools_reduce",
               f"--callgrind-out-file={out}", sys.executable, __file__, "--child", str(warm + requests), d, str(warm)]
        if postgres:
            cmd.append("--postgres")
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if proc.returncode:
            raise SystemExit(proc.stderr[-3000:])
        m = re.search(r"Collected\s*:\s*([\d,]+)", proc.stderr)
        if not m:
            raise SystemExit("no instruction count in valgrind's output:\n" + proc.stderr[-2000:])
        return int(m.group(1).replace(",", ""))


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        serve(int(sys.argv[2]), "--postgres" in sys.argv, Path(sys.argv[3]), int(sys.argv[4]))
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--postgres", action="store_true")
    ap.add_argument("--warm", type=int, default=200)
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--profile", help="keep callgrind's output here (callgrind_annotate reads it)")
    args = ap.parse_args()
    # Once natively first, so that what the measured run imports is compiled already.
    with tempfile.TemporaryDirectory(prefix="helpline-count-") as d:
        subprocess.run([sys.executable, __file__, "--child", "3", d, "0", *(["--postgres"] if args.postgres else [])],
                       check=True, env={**os.environ, "PYTHONHASHSEED": "0"})
    total = count(args.warm, args.requests, args.postgres, args.profile)
    print(f"{'PostgreSQL' if args.postgres else 'SQLite'}: {total / args.requests / 1e6:.3f} M instructions "
          f"per request ({args.requests} requests after {args.warm} unmeasured; {total:,} in all)")


if __name__ == "__main__":
    main()
