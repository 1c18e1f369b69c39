"""Shared machinery of bench/broadcast.py, noisy_neighbour.py, rate_limit.py and api.py.

- `Bench`: a throwaway PostgreSQL database (created, migrated, dropped at the end), a Redis db of
  its own (must be empty at the start, flushed at the end), subprocesses in their own sessions
  (SIGTERM to the group at the end, SIGKILL if they linger; they also get SIGTERM if the bench
  dies), their logs in a temporary directory kept only when something failed or with --keep-logs.
  Ctrl-C and SIGTERM run the same clean-up.
- The SMTP sink (Debian's `smtp-sink`, else aiosmtpd's Sink at a few hundred mails/s), Herald's
  web server (uvicorn on tenant_platform.asgi as in deploy/Procfile, or gunicorn sync workers on
  tenant_platform.wsgi) and Herald's workers (the two pools of deploy/Procfile).
- `herald_app` (Herald's own Celery app, for `celery -A bench._common:herald_app worker`: the
  same app as `-A tenant_platform`, plus a worker_ready handler that tells the bench) and
  `plain_app` (a plain `celery.Celery`, no Django, no tenancy: the baselines' tasks). Both are
  built on first access (PEP 562), so a plain worker never imports Herald.
- A bare DRF view and `urlpatterns` (Herald's own plus /bench/bare), used as ROOT_URLCONF by
  bench/api_settings.py, so the bare view and Herald's API run in the same server process.
- `RssSampler`: peak resident memory of process trees (psutil), sampled in a thread.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import platform
import shlex
import shutil
import signal
import smtplib
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from email.utils import formatdate
from functools import cache
from pathlib import Path
from typing import Any

import psutil
import psycopg2
import redis
from celery import Celery, signals

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

READY_KEY = "bench:ready:{label}"
DONE_KEY = "bench:done"
END_KEY = "bench:end"
FINISHED_KEY = "bench:finished"
PLAIN_QUEUE = "bench.plain"
BASELINE_TABLE = "bench_baseline_delivery"
BARE_TABLE = "bench_bare_row"
FLOOR_QUEUE = "bench:floor"  # the floor view's list (bench/api.py); nothing reads it
SUBJECT = "Your weekly digest"
TEXT = "Hello {{ name }}, here is what happened this week on Herald. " * 4


# --- Configuration -------------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    db_name: str
    redis_url: str
    admin_db_url: str
    flush_redis: bool
    keep_logs: bool
    web: str

    @property
    def database_url(self) -> str:
        return self.admin_db_url.rsplit("/", 1)[0] + "/" + self.db_name


def add_common_args(parser: argparse.ArgumentParser, db_name: str, redis_db: int = 12) -> None:
    parser.add_argument(
        "--redis-url", default=f"redis://127.0.0.1:6379/{redis_db}", help="a Redis db of its own"
    )
    parser.add_argument("--flush-redis", action="store_true", help="empty that Redis db first if it isn't")
    parser.add_argument(
        "--admin-db-url",
        default="postgres://postgres@127.0.0.1:5432/postgres",
        help="PostgreSQL database to connect to for CREATE/DROP DATABASE",
    )
    parser.add_argument("--db-name", default=db_name, help="throwaway database (dropped at the end)")
    parser.add_argument("--keep-logs", action="store_true", help="keep the subprocesses' logs")
    parser.add_argument(
        "--web",
        choices=("uvicorn", "gunicorn"),
        default="uvicorn",
        help="uvicorn: tenant_platform.asgi as deploy/Procfile serves it (a2wsgi, WEB_THREADS=8), "
        "2 processes; gunicorn: sync workers on tenant_platform.wsgi, 4 processes",
    )


def config_of(args: argparse.Namespace) -> Config:
    return Config(
        db_name=args.db_name,
        redis_url=args.redis_url,
        admin_db_url=args.admin_db_url,
        flush_redis=args.flush_redis,
        keep_logs=args.keep_logs,
        web=args.web,
    )


# --- Processes and clean-up ----------------------------------------------------------------


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM if the bench dies (Linux), so nothing lingers."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _raise_keyboard_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process on port {port} exited:\n{log.read_text(errors='replace')[-3000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"nothing listening on {port} after {timeout}s")


@dataclass
class Proc:
    label: str
    proc: subprocess.Popen[bytes]
    log: Path


@dataclass
class Bench:
    """One bench run's database, Redis db and subprocesses; `with Bench(cfg) as b:` cleans up."""

    cfg: Config
    procs: list[Proc] = field(default_factory=list)
    log_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="herald-bench-")))
    extra_env: dict[str, str] = field(default_factory=dict)
    failed: bool = True
    smtp_port: int = 0
    smtp_kind: str = ""
    smtp_proc: Proc | None = None
    started: float = field(default_factory=time.monotonic)

    def __enter__(self) -> Bench:
        signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
        self.smtp_port = free_port()
        os.environ["BENCH_REDIS_URL"] = self.cfg.redis_url
        client = self.redis()
        if self.cfg.flush_redis:
            client.flushdb()
        elif client.dbsize():
            raise SystemExit(
                f"{self.cfg.redis_url} holds {client.dbsize()} keys: someone may be using it. Pick an "
                "empty Redis db with --redis-url, or add --flush-redis if those keys are a bench's own."
            )
        self._admin("DROP DATABASE IF EXISTS {} WITH (FORCE)")
        self._admin("CREATE DATABASE {}")
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.failed = exc_type is not None
        self.stop_all()
        from django.conf import settings

        if settings.configured:
            from django.db import connections

            connections.close_all()
        with contextlib.suppress(Exception):
            self._admin("DROP DATABASE IF EXISTS {} WITH (FORCE)")
        with contextlib.suppress(Exception):
            self.redis().flushdb()
        logs = list(self.log_dir.iterdir())
        if logs and (self.cfg.keep_logs or self.failed):
            print(f"logs: {self.log_dir}", file=sys.stderr)
        else:
            shutil.rmtree(self.log_dir, ignore_errors=True)
        if exc_type is KeyboardInterrupt:
            print("\ninterrupted; processes stopped, database dropped, Redis db flushed", file=sys.stderr)
        print(f"\ntotal time {time.monotonic() - self.started:.0f} s")

    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.cfg.redis_url)

    def _admin(self, template: str) -> None:
        from psycopg2 import sql

        conn = psycopg2.connect(self.cfg.admin_db_url)
        try:
            conn.autocommit = True
            with conn.cursor() as cursor:
                cursor.execute(sql.SQL(template).format(sql.Identifier(self.cfg.db_name)))
        finally:
            conn.close()

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            DJANGO_SETTINGS_MODULE="tenant_platform.settings.dev",
            DEBUG="0",
            DATABASE_URL=self.cfg.database_url,
            REDIS_URL=self.cfg.redis_url,
            CELERY_BROKER_URL=self.cfg.redis_url,
            CELERY_RESULT_BACKEND=self.cfg.redis_url,
            EMAIL_URL=f"smtp://127.0.0.1:{self.smtp_port}",
            SECRET_KEY="bench-only-secret-key-bench-only-secret-key",
            FIELD_ENCRYPTION_KEYS="",
            LOG_LEVEL="WARNING",
            PYTHONPATH=str(REPO),
            BENCH_REDIS_URL=self.cfg.redis_url,
            BENCH_DATABASE_URL=self.cfg.database_url,
            BENCH_SMTP_PORT=str(self.smtp_port),
        )
        env.update(self.extra_env)
        env.update(extra)
        return env

    def connect(self) -> psycopg2.extensions.connection:
        conn = psycopg2.connect(self.cfg.database_url)
        conn.autocommit = True
        return conn

    # -- Django in this process --

    def migrate_and_setup_django(self) -> None:
        env = self.env()
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=REPO, env=env, check=True
        )
        os.environ.update(env)
        import django

        django.setup()

    # -- subprocesses --

    def start(self, label: str, argv: Sequence[str], env: dict[str, str]) -> Proc:
        log = self.log_dir / f"{label}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                list(argv),
                cwd=REPO,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        p = Proc(label, proc, log)
        self.procs.append(p)
        return p

    def stop(self, p: Proc) -> None:
        if p.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.proc.pid, signal.SIGTERM)
            try:
                p.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.proc.pid, signal.SIGKILL)
                p.proc.wait()
        if p in self.procs:
            self.procs.remove(p)

    def stop_all(self) -> None:
        for p in reversed(list(self.procs)):
            self.stop(p)

    # -- the services --

    def start_smtp_sink(self) -> Proc:
        """Debian's smtp-sink (C, ~4,900 mails/s over one connection); else aiosmtpd's Sink."""
        port = self.smtp_port
        if shutil.which("smtp-sink"):
            argv = ["smtp-sink", "-c", f"127.0.0.1:{port}", "1000"]
            if os.geteuid() == 0:
                argv[1:1] = ["-u", "postfix"]
            self.smtp_kind = "smtp-sink (Debian postfix, C): " + " ".join(argv)
        else:
            argv = [sys.executable, "-m", "aiosmtpd", "-n", "-l", f"127.0.0.1:{port}"]
            argv += ["-c", "aiosmtpd.handlers.Sink"]
            self.smtp_kind = "aiosmtpd Sink (smtp-sink not installed; ~370 mails/s ceiling)"
        p = self.start("smtp-sink", argv, self.env())
        wait_port(port, p.proc, p.log)
        self.smtp_proc = p
        return p

    def start_web(self, **extra_env: str) -> tuple[Proc, int]:
        port = free_port()
        if self.cfg.web == "uvicorn":
            argv = [str(BIN / "uvicorn"), "tenant_platform.asgi:application", "--host", "127.0.0.1"]
            argv += ["--port", str(port), "--workers", "2", "--no-access-log", "--log-level", "warning"]
            env = self.env(WEB_THREADS="8", **extra_env)
        else:
            argv = [str(BIN / "gunicorn"), "tenant_platform.wsgi:application", "-b", f"127.0.0.1:{port}"]
            argv += ["-w", "4", "--log-level", "warning"]
            env = self.env(**extra_env)
        p = self.start("web", argv, env)
        wait_port(port, p.proc, p.log)
        return p, port

    def start_worker(self, label: str, app: str, queues: str, concurrency: int, **extra_env: str) -> Proc:
        argv = [str(BIN / "celery"), "-A", f"bench._common:{app}", "worker", "-Q", queues]
        if nice := WORKER_NICE.get(label, 0):
            argv = ["nice", "-n", str(nice), *argv]
        argv += ["-n", f"{label}-{os.getpid()}@%h", "--concurrency", str(concurrency), "-P", "prefork"]
        argv += ["-l", "warning", "--without-gossip", "--without-mingle", "--without-heartbeat"]
        p = self.start(label, argv, self.env(BENCH_LABEL=label, **extra_env))
        key = READY_KEY.format(label=label)
        deadline = time.monotonic() + 120
        while not self.redis().exists(key):
            if p.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"worker {label} did not start:\n{p.log.read_text(errors='replace')[-3000:]}"
                )
            time.sleep(0.2)
        return p

    def start_herald_workers(self, bulk_concurrency: int | None = None, **extra_env: str) -> list[Proc]:
        """The pools of deploy/Procfile (critical,high: 1; default: 1; bulk: BULK_CONCURRENCY) and
        the dispatcher (`manage.py dispatch`, its default bound)."""
        bulk = bulk_concurrency or BULK_CONCURRENCY
        procs = [
            self.start_worker("worker-critical", "herald_app", "critical,high", 1, **extra_env),
            self.start_worker("worker-default", "herald_app", "default", 1, **extra_env),
            self.start_worker("worker-bulk", "herald_app", "bulk", bulk, **extra_env),
        ]
        dispatcher = [sys.executable, "manage.py", "dispatch"]
        procs.append(self.start("dispatcher", dispatcher, self.env(BENCH_LABEL="dispatcher", **extra_env)))
        deadline = time.monotonic() + 60
        while not self.redis().exists("herald:fair:heartbeat"):
            if time.monotonic() > deadline:
                raise RuntimeError("the fair dispatcher did not start")
            time.sleep(0.2)
        return procs


BULK_CONCURRENCY = 2  # as deploy/Procfile
# As deploy/Procfile (`nice -n 10 celery ... -Q bulk`): the bulk pool yields the CPU to the others.
WORKER_NICE = {"worker-bulk": 10}

HERALD_WORKERS_TEXT = (
    "Herald workers as deploy/Procfile: `celery -A tenant_platform worker -Q critical,high "
    "--concurrency 1`, `-Q default --concurrency 1` and `nice -n 10 ... -Q bulk --concurrency 2` "
    "(prefork; run "
    "here as -A bench._common:herald_app, the same app plus a ready signal; -l warning, without "
    "gossip/mingle/heartbeat), and the fair dispatcher; no beat (no sweeper)"
)


# --- Tenants and the API -------------------------------------------------------------------


@dataclass(frozen=True)
class Tenant:
    slug: str
    schema: str
    key: str


def provision(slug: str, rate_limits: dict[str, Any] | None = None) -> Tenant:
    from tenants.models import Tenant as TenantModel
    from tenants.provisioning import provision_tenant

    result = provision_tenant(slug, domain=f"{slug}.localhost", admin_email=f"owner@{slug}.test")
    if rate_limits is not None:
        TenantModel.objects.filter(pk=result.tenant.pk).update(rate_limits=rate_limits)
    return Tenant(slug, str(result.tenant.schema_name), str(result.api_key))


API_LIMIT_ENV = {"API_RATE_LIMIT_RATE": "1000000", "API_RATE_LIMIT_BURST": "1000000"}
API_LIMIT_TEXT = (
    "the API's per-key request limit raised for the bench (API_RATE_LIMIT_RATE=1000000, "
    "API_RATE_LIMIT_BURST=1000000; default 100/s, burst 200)"
)


def session_for(tenant: Tenant) -> Any:
    import requests

    s = requests.Session()
    s.headers.update({"Authorization": f"Bearer {tenant.key}", "Content-Type": "application/json"})
    return s


def notification_body(external_id: str, priority: str = "normal") -> dict[str, Any]:
    return {
        "recipient": {"external_id": external_id, "email": f"{external_id}@example.com"},
        "channels": ["email"],
        "subject": SUBJECT,
        "body": TEXT,
        "data": {"name": "Ana"},
        "priority": priority,
    }


def handoff_latencies(conn: Any, schema: str, notification_ids: Sequence[str]) -> dict[str, float]:
    """Per notification: seconds from Notification.created_at (written in the accepting request)
    to its delivery's first DeliveryAttempt.started_at (recorded by the worker when the provider
    has taken the message)."""
    with conn.cursor() as cur:
        cur.execute(
            f"""SELECT n.id::text, EXTRACT(EPOCH FROM min(a.started_at) - n.created_at)
                FROM "{schema}".notifications_notification n
                JOIN "{schema}".notifications_delivery d ON d.notification_id = n.id
                JOIN "{schema}".notifications_deliveryattempt a ON a.delivery_id = d.id
                WHERE n.id = ANY(%s::uuid[]) GROUP BY n.id, n.created_at""",
            [list(notification_ids)],
        )
        return {nid: float(sec) for nid, sec in cur.fetchall()}


def latency_stages(conn: Any, schema: str, notification_ids: Sequence[str]) -> dict[str, list[float]]:
    """Where accept -> hand-off goes, per notification, in seconds: `accepted` (created_at to its
    `queued` event: the request's inserts), `to_claim` (`queued` event to the `sending` event
    written by the worker's claim: commit, publish, broker, the worker picking it up, the
    rate-limit check) and `to_handoff` (claim to the attempt's started_at: building the
    message and reaching the provider)."""
    with conn.cursor() as cur:
        cur.execute(
            f"""SELECT EXTRACT(EPOCH FROM q.created_at - n.created_at),
                       EXTRACT(EPOCH FROM s.created_at - q.created_at),
                       EXTRACT(EPOCH FROM a.started_at - s.created_at)
                FROM "{schema}".notifications_notification n
                JOIN "{schema}".notifications_delivery d ON d.notification_id = n.id
                JOIN LATERAL (SELECT min(created_at) AS created_at
                              FROM "{schema}".notifications_deliveryevent
                              WHERE delivery_id = d.id AND status = 'queued') q ON TRUE
                JOIN LATERAL (SELECT min(created_at) AS created_at
                              FROM "{schema}".notifications_deliveryevent
                              WHERE delivery_id = d.id AND status = 'sending') s ON TRUE
                JOIN LATERAL (SELECT min(started_at) AS started_at
                              FROM "{schema}".notifications_deliveryattempt
                              WHERE delivery_id = d.id) a ON TRUE
                WHERE n.id = ANY(%s::uuid[])""",
            [list(notification_ids)],
        )
        rows = [r for r in cur.fetchall() if None not in r]
    return {
        name: [float(r[i]) for r in rows] for i, name in enumerate(("accepted", "to_claim", "to_handoff"))
    }


def describe_stages(stages: dict[str, list[float]]) -> str:
    return "  ".join(
        f"{name} p50 {percentile([v * 1000 for v in values], 50):.1f} / p99 "
        f"{percentile([v * 1000 for v in values], 99):.1f} ms"
        for name, values in stages.items()
        if values
    )


def status_counts(conn: Any, schema: str, where: str = "TRUE") -> dict[str, int]:
    with conn.cursor() as cur:
        cur.execute(
            f'SELECT status, count(*) FROM "{schema}".notifications_delivery WHERE {where} GROUP BY 1'
        )
        return {status: int(n) for status, n in cur.fetchall()}


# --- Figures -------------------------------------------------------------------------------


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, min(len(ordered), round(p / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def describe_ms(values: Sequence[float]) -> str:
    ms = [v * 1000 for v in values]
    if not ms:
        return "no samples"
    return (
        f"n={len(ms)} p50 {percentile(ms, 50):7.1f} ms  p90 {percentile(ms, 90):7.1f} ms  "
        f"p99 {percentile(ms, 99):7.1f} ms  max {max(ms):7.1f} ms  mean {statistics.mean(ms):7.1f} ms"
    )


class RssSampler:
    """Peak of the summed RSS of some process trees, sampled every `interval` seconds."""

    def __init__(self, roots: Callable[[], Sequence[int]], interval: float = 0.25) -> None:
        self.roots = roots
        self.interval = interval
        self.peak = 0
        self.peak_by_root: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            total = 0
            for pid in self.roots():
                rss = tree_rss(pid)
                total += rss
                self.peak_by_root[pid] = max(self.peak_by_root.get(pid, 0), rss)
            self.peak = max(self.peak, total)
            self._stop.wait(self.interval)


class CpuMeter:
    """CPU seconds (user + system) spent by some process trees and by PostgreSQL's backends
    for one database between `with` entry and exit, per role.

    On a machine shared with other work, wall-clock rates move with everyone else's load;
    the CPU a run costs moves far less, so it is the figure to compare across runs. Processes
    are sampled every `interval` seconds and each one's last reading kept, so a backend that
    connects during the window counts from zero and one that disconnects (Herald's workers
    reconnect every DB_CONN_MAX_AGE, 60 s) loses at most its last interval. `exclude` names
    backends not to count (the bench's own polling connection).
    """

    def __init__(
        self,
        roots: Callable[[], dict[int, str]],
        db_name: str,
        exclude: Sequence[int] = (),
        interval: float = 0.5,
    ) -> None:
        self.roots = roots
        self.db_name = db_name
        self.exclude = set(exclude)
        self.interval = interval
        self.by_role: dict[str, float] = {}
        self._last: dict[int, tuple[str, float]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._last.update(self._snapshot())

    def _snapshot(self) -> dict[int, tuple[str, float]]:
        found: dict[int, tuple[str, float]] = {}
        for root, role in self.roots().items():
            try:
                top = psutil.Process(root)
                procs = [top, *top.children(recursive=True)]
            except psutil.Error:
                continue
            for p in procs:
                with contextlib.suppress(psutil.Error):
                    t = p.cpu_times()
                    found[p.pid] = (role, t.user + t.system)
        marker = f" {self.db_name} "
        for p in psutil.process_iter(["cmdline"]):
            with contextlib.suppress(psutil.Error):
                cmd = " ".join(p.info["cmdline"] or []) + " "
                if p.pid not in self.exclude and cmd.startswith("postgres:") and marker in cmd:
                    t = p.cpu_times()
                    found[p.pid] = ("postgres", t.user + t.system)
        return found

    def __enter__(self) -> CpuMeter:
        self._start = self._snapshot()
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        end = {**self._last, **self._snapshot()}
        self.by_role = {}
        for pid, (role, cpu) in end.items():
            spent = cpu - self._start.get(pid, (role, 0.0))[1]
            self.by_role[role] = self.by_role.get(role, 0.0) + spent

    @property
    def total(self) -> float:
        return sum(self.by_role.values())

    def describe(self, deliveries: int) -> str:
        """'X ms CPU per 1000 deliveries (role a, role b, ...)'."""
        per = 1000 / max(deliveries, 1)
        parts = ", ".join(f"{role} {cpu * per * 1000:.0f}" for role, cpu in sorted(self.by_role.items()))
        return f"{self.total * per * 1000:.0f} ms CPU per 1000 deliveries ({parts})"


def tree_rss(pid: int) -> int:
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0
    total = 0
    for p in procs:
        with contextlib.suppress(psutil.Error):
            total += int(p.memory_info().rss)
    return total


def mib(n: int) -> str:
    return f"{n / 2**20:.0f} MiB"


def print_environment(b: Bench) -> None:
    from importlib.metadata import PackageNotFoundError, version

    def v(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "?"

    server = b.redis().info("server")
    with contextlib.closing(psycopg2.connect(b.cfg.admin_db_url)) as conn, conn.cursor() as cur:
        cur.execute("SHOW server_version")
        row = cur.fetchone()
    print("== Environment ==")
    print("command: " + shlex.join(sys.orig_argv))
    print(
        f"CPUs: os.cpu_count()={os.cpu_count()}, usable={len(os.sched_getaffinity(0))}, load average "
        f"{os.getloadavg()[0]:.2f}; {platform.platform()}; "
        f"RAM {psutil.virtual_memory().total / 2**30:.1f} GiB"
    )
    print(
        f"Python {platform.python_version()}, Django {v('django')}, Celery {v('celery')}, "
        f"kombu {v('kombu')}, "
        f"django-tenants {v('django-tenants')}, DRF {v('djangorestframework')}, uvicorn {v('uvicorn')}, "
        f"gunicorn {v('gunicorn')}, PostgreSQL {row[0] if row else '?'}, Redis {server['redis_version']}"
    )
    print(
        f"database {b.cfg.db_name} (throwaway, dropped at the end); Redis {b.cfg.redis_url} (broker, "
        "cache, rate limits; flushed at the end); settings tenant_platform.settings.dev with DEBUG=0, "
        "LOG_LEVEL=WARNING"
    )


# --- The Celery apps -----------------------------------------------------------------------


@cache
def bench_redis() -> redis.Redis:
    return redis.Redis.from_url(os.environ["BENCH_REDIS_URL"])


@signals.worker_ready.connect(weak=False)
def _announce_ready(sender: Any = None, **_: Any) -> None:
    bench_redis().set(READY_KEY.format(label=os.environ.get("BENCH_LABEL", "?")), str(os.getpid()))


TASK_CPU_KEY = "bench:task-cpu"  # hash: task name -> CPU seconds its runs took in the workers
_task_started: dict[str, float] = {}


@signals.task_prerun.connect(weak=False)
def _task_cpu_start(task_id: str = "", **_: Any) -> None:
    _task_started[task_id] = time.process_time()


@signals.task_postrun.connect(weak=False)
def _task_cpu_end(task_id: str = "", task: Any = None, **_: Any) -> None:
    """Charge the CPU a task's run took (this process, all its threads) to the task's name."""
    started = _task_started.pop(task_id, None)
    if started is not None and task is not None and "BENCH_REDIS_URL" in os.environ:
        bench_redis().hincrbyfloat(TASK_CPU_KEY, task.name, time.process_time() - started)


def task_cpu(client: redis.Redis) -> dict[str, float]:
    """CPU seconds per task name so far (reset with `client.delete(TASK_CPU_KEY)`)."""
    raw: dict[bytes, bytes] = client.hgetall(TASK_CPU_KEY)  # type: ignore[assignment]
    return {k.decode(): float(v) for k, v in raw.items()}


def describe_task_cpu(cpu: dict[str, float], deliveries: int) -> str:
    per = 1000 / max(deliveries, 1)
    parts = ", ".join(
        f"{name.removeprefix('notifications.')} {seconds * per * 1000:.0f}"
        for name, seconds in sorted(cpu.items(), key=lambda kv: -kv[1])
    )
    return f"ms CPU per 1000 deliveries inside tasks, by task: {parts}"


def _build_herald_app() -> Celery:
    from tenant_platform.celery import app

    return app


def _build_plain_app() -> Celery:
    """No Django, no tenancy, no rate limit, no events: psycopg2, smtplib and a Redis counter."""
    app = Celery("bench_plain", broker=os.environ["BENCH_REDIS_URL"])
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        worker_prefetch_multiplier=1,
        task_default_queue=PLAIN_QUEUE,
        task_ignore_result=True,
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
    )
    app.task(name="bench.send_batch", ignore_result=True)(send_batch)
    app.task(name="bench.send_one", ignore_result=True)(send_one)
    return app


_BUILDERS: dict[str, Callable[[], Celery]] = {"herald_app": _build_herald_app, "plain_app": _build_plain_app}
_built: dict[str, Celery] = {}


def get_app(name: str) -> Celery:
    if name not in _built:
        _built[name] = _BUILDERS[name]()
    return _built[name]


def __getattr__(name: str) -> Any:
    """`herald_app` / `plain_app` for `celery -A bench._common:...`; `urlpatterns` and the error
    handlers when bench/api_settings.py makes this module the ROOT_URLCONF. Built when asked for."""
    if name in _BUILDERS:
        return get_app(name)
    if name == "urlpatterns":
        return _bare_urlpatterns()
    if name in ("handler404", "handler500"):
        return f"tenant_platform.api_errors.{name}"
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_db: dict[int, Any] = {}


def _plain_db() -> Any:
    pid = os.getpid()
    if pid not in _db:
        conn = psycopg2.connect(os.environ["BENCH_DATABASE_URL"])
        conn.autocommit = True
        _db[pid] = conn
    return _db[pid]


def _mail(delivery_id: str, address: str, content: dict[str, Any], date: str) -> bytes:
    """The message, formatted by hand (headers as Herald sends them, a plain-text body): the
    leanest code, so the baseline measures the machine rather than a MIME library."""
    return (
        f"From: Herald <notifications@localhost>\r\nTo: {address}\r\n"
        f"Subject: {content.get('subject', '')}\r\nDate: {date}\r\n"
        f"Message-ID: <{delivery_id}@localhost>\r\nMIME-Version: 1.0\r\n"
        'Content-Type: text/plain; charset="utf-8"\r\nContent-Transfer-Encoding: 7bit\r\n\r\n'
        f"{content.get('text', '')}\r\n"
    ).encode()


def _send(delivery_ids: list[str], connection_per_mail: bool) -> None:
    conn = _plain_db()
    with conn.cursor() as cur:
        cur.execute(
            f"SELECT id::text, address, content FROM {BASELINE_TABLE} WHERE id = ANY(%s::uuid[])",
            [delivery_ids],
        )
        rows = cur.fetchall()
    port = int(os.environ["BENCH_SMTP_PORT"])
    date = formatdate()
    sender = "notifications@localhost"
    if connection_per_mail:
        for delivery_id, address, content in rows:
            with smtplib.SMTP("127.0.0.1", port) as smtp:
                smtp.sendmail(sender, [address], _mail(delivery_id, address, content, date))
    else:
        with smtplib.SMTP("127.0.0.1", port) as smtp:
            for delivery_id, address, content in rows:
                smtp.sendmail(sender, [address], _mail(delivery_id, address, content, date))
    from psycopg2.extras import execute_values

    with conn.cursor() as cur:
        execute_values(
            cur,
            f"UPDATE {BASELINE_TABLE} AS d SET status = 'sent', sent_at = now(), updated_at = now() "
            "FROM (VALUES %s) AS v(id) WHERE d.id = v.id::uuid",
            [(i,) for i in delivery_ids],
            page_size=len(delivery_ids) or 1,
        )
    client = bench_redis()
    if client.incrby(DONE_KEY, len(rows)) == 0:
        client.set(END_KEY, repr(time.time()))
        client.rpush(FINISHED_KEY, b"1")


def send_batch(delivery_ids: list[str]) -> None:
    """Baseline: load the rows, send their mails over one SMTP connection, one UPDATE for all."""
    _send(delivery_ids, connection_per_mail=False)


def send_one(delivery_id: str) -> None:
    """One task per delivery: load it, send it over its own SMTP connection, UPDATE it."""
    _send([delivery_id], connection_per_mail=True)


def create_baseline_rows(conn: Any, n: int) -> list[str]:
    content = json.dumps({"subject": SUBJECT, "text": TEXT.replace("{{ name }}", "Ana")})
    with conn.cursor() as cur:
        cur.execute(
            f"""CREATE TABLE IF NOT EXISTS {BASELINE_TABLE} (id uuid PRIMARY KEY, address text NOT NULL,
                status varchar(16) NOT NULL, content jsonb NOT NULL, sent_at timestamptz,
                updated_at timestamptz NOT NULL)"""
        )
        ids = [str(uuid.uuid4()) for _ in range(n)]
        from psycopg2.extras import execute_values

        execute_values(
            cur,
            f"INSERT INTO {BASELINE_TABLE} (id, address, status, content, updated_at) VALUES %s",
            [(i, f"b{k}@example.com", "queued", content) for k, i in enumerate(ids)],
            template="(%s::uuid, %s, %s, %s::jsonb, now())",
            page_size=5000,
        )
        cur.execute(f"ANALYZE {BASELINE_TABLE}")
    return ids


@dataclass(frozen=True)
class BaselineRun:
    deliveries: int
    tasks: int
    seconds: float
    peak_rss: int
    cpu: str = ""  # CpuMeter.describe
    cpu_seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.deliveries / self.seconds


def run_baseline(b: Bench, worker: Proc, items: list[Any], task_name: str, deliveries: int) -> BaselineRun:
    """Pre-publish every message to a staging list no worker reads, hand them to the idle, warm
    worker with one RENAME, time until the last task has done its UPDATE (consumption only)."""
    app = get_app("plain_app")
    task = app.tasks[task_name]
    client = b.redis()
    staging = f"{PLAIN_QUEUE}.staging"
    client.delete(staging, FINISHED_KEY, END_KEY)
    client.set(DONE_KEY, -deliveries)
    with app.producer_or_acquire() as producer:
        for item in items:
            task.apply_async((item,), queue=staging, producer=producer)
    if client.llen(staging) != len(items) or client.llen(PLAIN_QUEUE) != 0:
        raise RuntimeError(f"expected {len(items)} messages in {staging} and none in {PLAIN_QUEUE}")
    roots = {worker.proc.pid: "worker"}
    if b.smtp_proc is not None:
        roots[b.smtp_proc.proc.pid] = "smtp-sink"
    with RssSampler(lambda: [worker.proc.pid]) as rss, CpuMeter(lambda: roots, b.cfg.db_name) as cpu:
        started = time.time()
        client.rename(staging, PLAIN_QUEUE)
        deadline = time.monotonic() + 1800
        # Short BLPOPs: redis-py 8 gives up reading after 5 s by default.
        while client.blpop([FINISHED_KEY], timeout=1) is None:
            if time.monotonic() > deadline or worker.proc.poll() is not None:
                raise RuntimeError(
                    f"baseline did not finish:\n{worker.log.read_text(errors='replace')[-3000:]}"
                )
        end = float(client.get(END_KEY) or 0)
    return BaselineRun(deliveries, len(items), end - started, rss.peak, cpu.describe(deliveries), cpu.total)


# --- The bare view (bench/api.py) ----------------------------------------------------------


def _bare_urlpatterns() -> list[Any]:
    from django.db import connection, transaction
    from django.urls import path
    from rest_framework.request import Request
    from rest_framework.response import Response
    from rest_framework.views import APIView

    from tenant_platform.urls import urlpatterns as herald
    from tenants.redis_client import get_redis

    class BareInsert(APIView):
        """Parse the JSON body, INSERT it as one row, answer 202: no auth, no throttle, no tenant."""

        authentication_classes = ()
        permission_classes = ()
        throttle_classes = ()

        def post(self, request: Request) -> Response:
            row_id = uuid.uuid4()
            with connection.cursor() as cursor:
                cursor.execute(
                    f"INSERT INTO public.{BARE_TABLE} (id, body, created_at) VALUES (%s, %s, now())",
                    [str(row_id), json.dumps(request.data)],
                )
            return Response({"id": str(row_id)}, status=202)

    class FloorAccept(APIView):
        """Only the I/O the issue itself asks of every accepted notification, with nothing else:
        Herald's API key authentication (which switches to the tenant's schema), its per-key
        request limit and Idempotency-Key hook (the default classes), the JSON body parsed, a
        notification row and a delivery row written in one transaction before anything is
        enqueued, and one message pushed onto a Redis list after the commit. No validation,
        recipient, rendering, events, live update or webhook: a floor under what Herald's
        POST /api/v1/notifications can cost, to read its ratio to the bare view against."""

        def post(self, request: Request) -> Response:
            notification_id, delivery_id = str(uuid.uuid4()), str(uuid.uuid4())
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(
                    f"INSERT INTO public.{BARE_TABLE} (id, body, created_at) VALUES (%s, %s, now()), "
                    "(%s, %s, now())",
                    [notification_id, json.dumps(request.data), delivery_id, '{"channel": "email"}'],
                )
            get_redis().lpush(FLOOR_QUEUE, delivery_id)
            return Response({"id": notification_id}, status=202)

    return [path("bench/bare", BareInsert.as_view()), path("bench/floor", FloorAccept.as_view()), *herald]


@contextlib.contextmanager
def timer() -> Iterator[Callable[[], float]]:
    started = time.perf_counter()
    end: list[float] = []
    yield lambda: (end[0] if end else time.perf_counter()) - started
    end.append(time.perf_counter())


# --- wrk ------------------------------------------------------------------------------------


def run_wrk(
    url: str, body: str, headers: dict[str, str], duration: int, connections: int, tmp: Path
) -> dict[str, float]:
    """wrk with a Lua script that gives every request its own external_id (the string u-42 in
    `body` is replaced), so requests don't serialise on one recipient row's lock."""
    import re

    head, tail = body.split('"u-42"')
    lines = ['wrk.method = "POST"']
    lines += [f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items()]
    lines += [
        "local n = 0",
        "request = function()",
        "  n = n + 1",
        "  local id = '\"u-' .. math.random(1, 1000000000) .. '-' .. n .. '\"'",
        f"  local body = [==[{head}]==] .. id .. [==[{tail}]==]",
        "  return wrk.format(nil, nil, nil, body)",
        "end",
    ]
    script = tmp / "post.lua"
    script.write_text("\n".join(lines) + "\n")
    argv = ["wrk", "-t2", f"-c{connections}", f"-d{duration}s", "--latency", "-s", str(script), url]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout

    def ms(text: str) -> float:
        m = re.match(r"([\d.]+)(\w+)", text)
        assert m is not None
        return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[m.group(2)]

    def find(pattern: str) -> str:
        m = re.search(pattern, out)
        return m.group(1) if m else "0"

    return {
        "rps": float(find(r"Requests/sec:\s+([\d.]+)")),
        "requests": float(find(r"(\d+) requests in")),
        "p50_ms": ms(find(r"50%\s+([\d.]+\w+)")),
        "p90_ms": ms(find(r"90%\s+([\d.]+\w+)")),
        "p99_ms": ms(find(r"99%\s+([\d.]+\w+)")),
        "non_2xx": float(find(r"Non-2xx or 3xx responses:\s+(\d+)")),
        "socket_errors": 1.0 if "Socket errors" in out else 0.0,
    }
