"""Sections 1 and 4: the real webhook under gunicorn against bare Flask, and one worker's memory."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import loadgen
from loadgen import LoadResult
from common import (
    BENCH,
    HOST,
    SECRET_KEY,
    TOKEN,
    Procs,
    bench_env,
    children,
    free_port,
    gunicorn_args,
    proc_status,
    run_cli,
    sign_all,
    wait_http,
)

PG_SCHEMA = "helpline_bench"
PG_BASE = "postgresql+psycopg://127.0.0.1:5432/test"
PG_URL = PG_BASE + f"?options=-csearch_path%3D{PG_SCHEMA}"
ONCALL = ("--name", "Bench On Call", "--email", "oncall@bench.test", "--phone", "+15625550111", "--on-call")


@dataclass
class Server:
    proc: object
    port: int
    env: dict
    log: Path


def app_env(port: int, instance: Path, database_url: str | None = None, **extra) -> dict:
    env = dict(TWILIO_AUTH_TOKEN=TOKEN, HELPLINE_PUBLIC_URL=f"http://{HOST}:{port}",
               HELPLINE_INSTANCE_DIR=str(instance), HELPLINE_REPLY_LIMIT_PER_HOUR="0", SECRET_KEY=SECRET_KEY)
    if database_url:
        env["DATABASE_URL"] = database_url
    env.update(extra)
    return bench_env(**env)


def start_app(procs: Procs, tmp: Path, port: int, name: str, database_url: str | None = None,
              workers: int | None = None, **extra) -> Server:
    """`helpline db upgrade`, an on-call staff member, then `gunicorn app:app`."""
    instance = tmp / name
    instance.mkdir(parents=True, exist_ok=True)
    env = app_env(port, instance, database_url, **extra)
    run_cli(["db", "upgrade"], env)
    run_cli(["staff", "add", *ONCALL, "--password-stdin"], env, stdin="bench password 1234\n")
    log = tmp / f"{name}.log"
    kw = {"workers": workers} if workers else {}
    proc = procs.start(name, gunicorn_args("app:app", port, **kw), env, log)
    wait_http(f"http://{HOST}:{port}/healthz", proc, log)
    return Server(proc, port, env, log)


def start_bare(procs: Procs, tmp: Path, port: int) -> Server:
    env = bench_env()
    log = tmp / "bare.log"
    proc = procs.start("bare", gunicorn_args("bare_app:app", port, chdir=BENCH), env, log)
    wait_http(f"http://{HOST}:{port}/healthz", proc, log)
    return Server(proc, port, env, log)


def stored_inbound(env: dict) -> int:
    """Inbound messages the app stored (each request must be one)."""
    from sqlalchemy import func, select

    from bot.config import Settings
    from bot.store.db import Database
    from bot.store.models import Message
    db = Database(Settings.from_env(env).sqlalchemy_url)
    try:
        with db.session() as s:
            return s.scalar(select(func.count(Message.id)).where(Message.direction == "in"))
    finally:
        db.engine.dispose()


def postgres_problem() -> str | None:
    """Why the PostgreSQL part cannot run, or None; on success the bench schema is fresh."""
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed in the venv (pip install 'psycopg[binary]')"
    try:
        with psycopg.connect("host=127.0.0.1 port=5432 dbname=test connect_timeout=3", autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {PG_SCHEMA} CASCADE")
            conn.execute(f"CREATE SCHEMA {PG_SCHEMA}")
    except Exception as exc:
        return f"PostgreSQL at 127.0.0.1:5432/test unreachable: {type(exc).__name__}: {str(exc)[:200]}"
    return None


def postgres_cleanup() -> None:
    """Drop the benchmark's schema (best effort)."""
    try:
        import psycopg
        with psycopg.connect("host=127.0.0.1 port=5432 dbname=test connect_timeout=3", autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {PG_SCHEMA} CASCADE")
    except Exception:
        pass


# --------------------------------------------------------------------------- section 1
def worker_cpu(server_pid: int) -> float:
    """Seconds of CPU (user + system) the server's gunicorn workers have used so far."""
    total = 0
    for pid in children(server_pid):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime in clock ticks
    return total / os.sysconf("SC_CLK_TCK")


def _drive(gen: str, srv: Server, warm, main, seconds: float, warm_seconds: float, connections: int,
           repeat: bool = False):
    """Warm up, then the timed run; returns (warm-up result, timed result), the timed result with the
    workers' CPU per request over that run (``cpu_ms``).

    ``repeat``: the pool may be reused (the bare app; wrk always starts over when it runs out).
    """
    port = srv.port
    if gen == "wrk":
        warmed = loadgen.run_wrk(port, warm, warm_seconds, connections)
        before = worker_cpu(srv.proc.pid)
        res = loadgen.run_wrk(port, main, seconds, connections)
    else:
        warmed = loadgen.run_pool(port, warm, connections, seconds=warm_seconds, repeat=repeat)
        before = worker_cpu(srv.proc.pid)
        res = loadgen.run_pool(port, main, connections, seconds=seconds, repeat=repeat)
    if res.requests:
        res.cpu_ms = 1000 * (worker_cpu(srv.proc.pid) - before) / res.requests
    return warmed, res


def start_floor(procs: Procs, tmp: Path, port: int, name: str, database_url: str) -> Server:
    """The durable floor (bench/floor_app.py) on ``database_url``, its table created first."""
    import floor_app
    floor_app.create(database_url)
    env = bench_env(FLOOR_DATABASE_URL=database_url)
    log = tmp / f"{name}.log"
    proc = procs.start(name, gunicorn_args("floor_app:app", port, chdir=BENCH), env, log)
    wait_http(f"http://{HOST}:{port}/healthz", proc, log)
    return Server(proc, port, env, log)


def _best(old: LoadResult | None, new: LoadResult) -> LoadResult:
    """Of two rounds, the one with more requests per second (its own p50 and p99 go with it)."""
    return new if old is None or new.rps > old.rps else old


def throughput(tmp: Path, texts, quick: bool, postgres: bool, log, generator: str = "auto") -> dict:
    """Bare Flask, then for each database the durable floor and the webhook; best of ``rounds`` rounds.

    Every round gives each server a fresh database, so no MessageSid repeats across rounds.
    """
    seconds = 5 if quick else 10
    warm_seconds = 2 if quick else 3
    rounds = 1 if quick else 2
    connections = 8
    gen = ("wrk" if loadgen.WRK else "python") if generator == "auto" else generator
    if gen == "wrk" and not loadgen.WRK:
        raise RuntimeError("wrk is not installed (apt-get install wrk)")
    app_port, bare_port = free_port(), free_port()
    url = f"http://{HOST}:{app_port}/sms"
    t = time.perf_counter()
    # Pool sizes: more than the durable floor can take in the time (bare Flask may reuse requests).
    warm = sign_all(texts, url, first=0, count=4_000 if quick else 16_000, seed=1)
    main = sign_all(texts, url, first=1_000_000, count=20_000 if quick else 60_000, seed=2)
    log(f"  signed {len(warm) + len(main)} requests in {time.perf_counter() - t:.1f}s (before any timing)")
    if gen == "wrk":
        warm_pool = loadgen.write_wrk_pool(warm, tmp / "warm")
        main_pool = loadgen.write_wrk_pool(main, tmp / "main")
    else:
        warm_pool, main_pool = warm, main
    out = {"generator": gen, "connections": connections, "seconds": seconds, "warm_seconds": warm_seconds,
           "rounds": rounds, "warm_done": {}, "floor": {}, "bare": None}
    runs = [("sqlite", None)]
    if postgres:
        problem = postgres_problem()
        if problem:
            out["postgres_skipped"] = problem
            log(f"  PostgreSQL part skipped: {problem}")
        else:
            runs.append(("postgres", PG_URL))
    with Procs() as procs:
        for rnd in range(rounds):
            srv = start_bare(procs, tmp, bare_port)
            _, res = _drive(gen, srv, warm_pool, main_pool, seconds, warm_seconds, connections, repeat=True)
            procs.stop_all()
            out["bare"] = _best(out["bare"], res)
            log(f"  round {rnd + 1}, bare Flask: {res.rps:,.0f} req/s, p99 {res.p99_ms:.1f} ms")
            for key, db_url in runs:
                if key == "postgres" and rnd:
                    postgres_problem()  # a fresh schema for this round
                floor_url = db_url or f"sqlite:///{tmp / f'floor-{rnd}' / 'floor.sqlite3'}"
                srv = start_floor(procs, tmp, app_port, f"floor-{key}-{rnd}", floor_url)
                _, res = _drive(gen, srv, warm_pool, main_pool, seconds, warm_seconds, connections, repeat=True)
                procs.stop_all()
                out["floor"][key] = _best(out["floor"].get(key), res)
                log(f"  round {rnd + 1}, durable floor ({key}): {res.rps:,.0f} req/s, p99 {res.p99_ms:.1f} ms")
                srv = start_app(procs, tmp, app_port, f"app-{key}-{rnd}", database_url=db_url)
                warmed, res = _drive(gen, srv, warm_pool, main_pool, seconds, warm_seconds, connections)
                procs.stop_all()
                res.stored = stored_inbound(srv.env)
                if _best(out.get(key), res) is res:
                    out[key] = res
                    out["warm_done"][key] = warmed.requests
                log(f"  round {rnd + 1}, webhook ({key}): {res.rps:,.0f} req/s, p99 {res.p99_ms:.1f} ms, "
                    f"stored {res.stored:,}")
    return out


# --------------------------------------------------------------------------- section 4
def memory(tmp: Path, texts, quick: bool, log) -> dict:
    """One gunicorn worker (same class and threads): RSS after 2,000 and after 10,000 messages."""
    total = 4_000 if quick else 10_000
    marks = sorted({2_000, *range(2_000, total + 1, 2_000), total})
    port = free_port()
    reqs = sign_all(texts, f"http://{HOST}:{port}/sms", first=3_000_000, count=total, seed=3)
    samples = []
    with Procs() as procs:
        srv = start_app(procs, tmp, port, "app-memory", workers=1)
        workers = []
        deadline = time.monotonic() + 10
        while not workers and time.monotonic() < deadline:
            workers = children(srv.proc.pid)
            time.sleep(0.05)
        if len(workers) != 1:
            raise RuntimeError(f"expected one gunicorn worker, found {workers}")
        pid = workers[0]
        samples.append((0, proc_status(pid)))
        done = 0
        t0 = time.perf_counter()
        errors = 0
        for mark in marks:
            res = loadgen.run_pool(port, reqs[done:mark], connections=4, count=mark - done)
            errors += res.errors
            done = mark
            samples.append((done, proc_status(pid)))
        elapsed = time.perf_counter() - t0
        stored = stored_inbound(srv.env)
    log(f"  memory: {total} messages in {elapsed:.1f}s, worker pid {pid}")
    return {"samples": samples, "total": total, "errors": errors, "stored": stored, "seconds": elapsed}
