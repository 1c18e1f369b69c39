"""What does tenancy cost a Herald Celery task? Throughput and queries per task, measured.

Run from the repository root:  .venv/bin/python bench/tenant_overhead.py [--tasks N] [--rounds R]
It prints figures and asserts nothing about speed.

Setup (all torn down at the end, also on Ctrl-C or failure): a throwaway PostgreSQL database
(`herald_bench`), migrated with `manage.py migrate`, one tenant provisioned with
`provision_tenant` plus a few Recipient rows in its schema; a Redis database of its own as
broker and cache (14 by default; it must be empty at the start, unless --flush-redis, and is
flushed at the end). Django settings: settings.dev with DEBUG=0 and
TENANT_CACHE_CHECK_INTERVAL=1.0 (the production default). Worker logs go to a temporary
directory, kept (and named on stderr) when something fails or with --keep-logs.

Two workers run the same body (bench/_support.py: one ORM UPDATE of a notifications_recipient
row in the tenant's schema, then one Redis INCR), both prefork with 2 processes, prefetch 1,
the same CELERY_* settings, the same broker and database:
- tenant-aware: Herald's app (base task TenantTask); messages are published inside
  `schema_context(<tenant>)`, so they carry the signed tenant header, and each run verifies it,
  looks the tenant up (cached per process), switches to it and back to public;
- plain: a `celery.Celery` app with the default Task class, whose processes fix the search_path
  to the tenant's schema once, at worker_process_init. Its messages are published with Herald's
  `before_task_publish` stamping handler disconnected, so they carry no tenant header.

Printed in this order: the environment, queries per task, throughput.

1. Throughput. Each run pre-publishes N messages to a staging list that no worker reads, then
   makes them visible to the idle, warm worker with one Redis RENAME of that list onto the
   worker's queue. Time = from the RENAME to the moment the task that completes the N-th
   UPDATE has done its INCR. So consumption is measured, not publishing. Runs alternate
   tenant-aware, plain, tenant-aware, plain ... for R rounds (this machine varies +-30% from
   run to run); each round and the medians are printed, with the ratio tenant-aware / plain.
   Each run also reports the CPU time (user+sys, from /proc) that the worker's processes used
   per task, which other load on the machine disturbs less than wall time.
2. Queries per task. Two fresh workers with BENCH_COUNT_QUERIES=1 count, in each process, every
   statement psycopg2 sends (a counting cursor class on the connections, so statements that
   bypass Django's cursor wrapper are counted too) and mark those Django's cursor wrapper saw
   (what CaptureQueriesContext / assertNumQueries count). Everything sent since the previous
   task is attributed to the task that just finished. Printed: the first task of each process
   (cold: the tenant lookup), the median after warm-up, and the statements themselves.
3. The environment: CPUs, versions, N, rounds.

Database connections: as configured, Celery's Django fixup closes the worker's connection before
and after every task, so each task opens one (and both apps then set the search_path on each
task). `--db-reuse-max K` makes both apps keep it for K tasks (CELERY_DB_REUSE_MAX), which shows
what tenancy costs on a kept connection.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg2

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # run as a script, bench/ would be first on the path instead

from bench import _support  # noqa: E402  (needs the path above; imports no Django)

TENANT_SLUG = "bench"
TENANT_QUEUE = "bench.tenant"
PLAIN_QUEUE = "bench.plain"
COUNT_TENANT_QUEUE = "bench.count.tenant"
COUNT_PLAIN_QUEUE = "bench.count.plain"
TENANT_HEADER = "herald_tenant"
DJANGO_MARK = "D"  # statement seen by Django's cursor wrapper


@dataclass(frozen=True)
class Config:
    tasks: int
    rounds: int
    warmup: int
    count_tasks: int
    warm_after: int
    recipients: int
    redis_url: str
    admin_db_url: str
    db_name: str
    keep_logs: bool
    db_reuse_max: int | None
    flush_redis: bool = False

    @property
    def database_url(self) -> str:
        return self.admin_db_url.rsplit("/", 1)[0] + "/" + self.db_name


def parse_args() -> Config:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--tasks", type=int, default=800, help="tasks per timed run")
    parser.add_argument("--rounds", type=int, default=8, help="rounds of (tenant-aware, plain) runs")
    parser.add_argument("--warmup", type=int, default=300, help="untimed tasks per worker first")
    parser.add_argument("--count-tasks", type=int, default=200, help="tasks per app when counting queries")
    parser.add_argument("--warm-after", type=int, default=10, help="tasks per process counted as warm-up")
    parser.add_argument("--recipients", type=int, default=100, help="rows the tasks update in turn")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/14", help="a Redis db of its own")
    parser.add_argument("--flush-redis", action="store_true", help="empty that Redis db first if it isn't")
    parser.add_argument(
        "--admin-db-url",
        default="postgres://postgres@127.0.0.1:5432/postgres",
        help="PostgreSQL database to connect to for CREATE/DROP DATABASE",
    )
    parser.add_argument("--db-name", default="herald_bench", help="throwaway database (dropped at the end)")
    parser.add_argument("--keep-logs", action="store_true", help="keep the worker logs")
    parser.add_argument(
        "--db-reuse-max",
        type=int,
        metavar="K",
        help="both apps: let Celery's Django fixup keep a DB connection for K tasks "
        "(default: as configured, i.e. closed before and after every task)",
    )
    args = parser.parse_args()
    if min(args.tasks, args.rounds, args.count_tasks, args.recipients) < 1:
        parser.error("--tasks, --rounds, --count-tasks and --recipients must be at least 1")
    return Config(
        tasks=args.tasks,
        rounds=args.rounds,
        warmup=args.warmup,
        count_tasks=args.count_tasks,
        warm_after=args.warm_after,
        recipients=args.recipients,
        redis_url=args.redis_url,
        admin_db_url=args.admin_db_url,
        db_name=args.db_name,
        keep_logs=args.keep_logs,
        db_reuse_max=args.db_reuse_max,
        flush_redis=args.flush_redis,
    )


def service_env(cfg: Config) -> dict[str, str]:
    """The environment of this process and of the workers (all settings come from it)."""
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="tenant_platform.settings.dev",
        DEBUG="0",
        TENANT_CACHE_CHECK_INTERVAL="1.0",
        DATABASE_URL=cfg.database_url,
        REDIS_URL=cfg.redis_url,
        CELERY_BROKER_URL=cfg.redis_url,
        CELERY_RESULT_BACKEND=cfg.redis_url,
        LOG_LEVEL="WARNING",
        PYTHONPATH=str(REPO),
        BENCH_REDIS_URL=cfg.redis_url,
    )
    env.pop("BENCH_COUNT_QUERIES", None)
    env.pop("BENCH_DB_REUSE_MAX", None)
    if cfg.db_reuse_max:
        env["BENCH_DB_REUSE_MAX"] = str(cfg.db_reuse_max)
    return env


# --- Database --------------------------------------------------------------------------


def _admin_execute(cfg: Config, template: str) -> None:
    """Run `template` with {} replaced by the bench database's quoted name, outside a transaction."""
    from psycopg2 import sql

    conn = psycopg2.connect(cfg.admin_db_url)
    try:
        conn.autocommit = True
        with conn.cursor() as cursor:
            cursor.execute(sql.SQL(template).format(sql.Identifier(cfg.db_name)))
    finally:
        conn.close()


def create_database(cfg: Config) -> None:
    drop_database(cfg)  # left over from an interrupted run
    _admin_execute(cfg, "CREATE DATABASE {}")


def drop_database(cfg: Config) -> None:
    _admin_execute(cfg, "DROP DATABASE IF EXISTS {} WITH (FORCE)")


def migrate(env: dict[str, str]) -> None:
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=REPO,
        env=env,
        check=True,
    )


def provision(recipients: int) -> tuple[str, list[str]]:
    """The bench tenant's schema and the ids of the Recipient rows the tasks update."""
    from django_tenants.utils import schema_context

    from notifications.models import Recipient
    from tenants.provisioning import provision_tenant

    result = provision_tenant(
        TENANT_SLUG, domain=f"{TENANT_SLUG}.localhost", admin_email="owner@bench.test", admin_password="bench"
    )
    schema = str(result.tenant.schema_name)
    with schema_context(schema):
        rows = Recipient.objects.bulk_create(Recipient(external_id=f"bench-{i}") for i in range(recipients))
    return schema, [str(row.id) for row in rows]


# --- Workers ---------------------------------------------------------------------------


@dataclass
class Worker:
    label: str
    queue: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    facts: dict[str, Any] = field(default_factory=dict)

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM if this script dies (Linux), so no worker lingers."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def start_worker(
    label: str, app_attr: str, queue: str, env: dict[str, str], log_dir: Path, count_queries: bool = False
) -> Worker:
    celery = str(Path(sys.executable).parent / "celery")
    # As in production: prefork, 2 processes; prefetch multiplier 1 comes from the settings.
    options = ["-P", "prefork", "-c", "2", "-l", "warning"]
    options += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
    argv = [celery, "-A", f"bench._support:{app_attr}", "worker", *options, "-Q", queue]
    argv += ["-n", f"{label}-{os.getpid()}@%h"]
    worker_env = dict(env, BENCH_LABEL=label)
    if count_queries:
        worker_env["BENCH_COUNT_QUERIES"] = "1"
    log_path = log_dir / f"{label}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            argv,
            cwd=REPO,
            env=worker_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
    worker = Worker(label, queue, proc, log_path)
    worker.facts = _wait_until_ready(worker)
    return worker


def _wait_until_ready(worker: Worker, timeout: float = 120.0) -> dict[str, Any]:
    key = _support.WORKER_KEY.format(label=worker.label)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        raw = _support.bench_redis().get(key)
        if raw is not None:
            facts: dict[str, Any] = json.loads(raw)
            return facts
        if worker.proc.poll() is not None:
            raise RuntimeError(f"worker {worker.label} exited:\n{worker.log_tail()}")
        time.sleep(0.2)
    raise RuntimeError(f"worker {worker.label} not ready after {timeout}s:\n{worker.log_tail()}")


def stop_worker(worker: Worker) -> None:
    if worker.proc.poll() is None:
        worker.proc.terminate()  # warm shutdown; the parent stops its pool processes
        try:
            worker.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(worker.proc.pid, signal.SIGKILL)  # its own session: the worker and its pool
            worker.proc.wait()
    _support.bench_redis().delete(_support.WORKER_KEY.format(label=worker.label))


# --- Publishing and one timed run ------------------------------------------------------


@contextlib.contextmanager
def tenant_stamping_disconnected() -> Iterator[None]:
    """Publish without Herald's global before_task_publish handler (for the plain app)."""
    from celery import signals

    from tenants.task_tenancy import stamp_tenant_header

    signals.before_task_publish.disconnect(stamp_tenant_header)
    try:
        yield
    finally:
        signals.before_task_publish.connect(stamp_tenant_header, weak=False)


def publish(task: Any, queue: str, recipient_ids: list[str], count: int, schema: str | None) -> None:
    """`count` messages to `queue`: stamped from inside the tenant's schema, or not stamped at all."""
    from django_tenants.utils import schema_context

    context = schema_context(schema) if schema else tenant_stamping_disconnected()
    with context, task.app.producer_or_acquire() as producer:
        for i in range(count):
            task.apply_async((recipient_ids[i % len(recipient_ids)],), queue=queue, producer=producer)


def tenant_header_of_first(queue: str) -> str | None:
    """The tenant header of the first message waiting in `queue` (kombu's Redis message format)."""
    raw = _support.bench_redis().lindex(queue, -1)
    if raw is None:
        raise RuntimeError(f"no message in {queue!r}")
    header: str | None = json.loads(raw)["headers"].get(TENANT_HEADER)
    return header


@dataclass(frozen=True)
class CpuTime:
    """User+system CPU seconds of a worker: its main (consumer) process and its pool processes."""

    main: float
    pool: float

    def __sub__(self, other: CpuTime) -> CpuTime:
        return CpuTime(self.main - other.main, self.pool - other.pool)


@dataclass(frozen=True)
class RunResult:
    tasks: int
    seconds: float
    cpu: CpuTime  # used by the worker's processes during the run
    tenant_header: str | None

    @property
    def rate(self) -> float:
        return self.tasks / self.seconds

    @property
    def cpu_ms_per_task(self) -> float:
        return (self.cpu.main + self.cpu.pool) * 1000 / self.tasks

    @property
    def main_cpu_ms_per_task(self) -> float:
        return self.cpu.main * 1000 / self.tasks

    @property
    def pool_cpu_ms_per_task(self) -> float:
        return self.cpu.pool * 1000 / self.tasks


def worker_cpu(pid: int) -> CpuTime:
    """CPU time so far of the worker `pid` and of its pool processes (its children), from /proc.

    Less sensitive than wall time to other load on the machine; PostgreSQL's and Redis's own CPU
    time is not in it.
    """
    main = pool = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()  # after "pid (comm)": state, ppid, ...
        except OSError:
            continue  # the process is gone
        ticks = int(fields[11]) + int(fields[12])  # utime, stime
        if int(stat.parent.name) == pid:
            main += ticks
        elif int(fields[1]) == pid:
            pool += ticks
    hertz = os.sysconf("SC_CLK_TCK")
    return CpuTime(main / hertz, pool / hertz)


def timed_run(
    worker: Worker, task: Any, recipient_ids: list[str], count: int, schema: str | None
) -> RunResult:
    """Pre-publish `count` messages, hand them to the idle worker at once, time until all are done."""
    client = _support.bench_redis()
    staging = f"{worker.queue}.staging"
    client.delete(staging, _support.FINISHED_KEY, _support.END_KEY)
    client.set(_support.DONE_KEY, -count)
    publish(task, staging, recipient_ids, count, schema)
    if client.llen(staging) != count or client.llen(worker.queue) != 0:
        raise RuntimeError(f"expected {count} messages in {staging} and none in {worker.queue}")
    header = tenant_header_of_first(staging)
    cpu_before = worker_cpu(worker.proc.pid)
    started = time.time()
    client.rename(staging, worker.queue)
    _wait_for_finish(worker, count)
    ended = float(client.get(_support.END_KEY) or b"nan")
    cpu = worker_cpu(worker.proc.pid) - cpu_before
    return RunResult(count, ended - started, cpu, header)


def _wait_for_finish(worker: Worker, count: int, stall_timeout: float = 60.0) -> None:
    client = _support.bench_redis()
    last_done, last_progress = None, time.monotonic()
    while not client.blpop([_support.FINISHED_KEY], timeout=2):
        if worker.proc.poll() is not None:
            raise RuntimeError(f"worker {worker.label} exited:\n{worker.log_tail()}")
        done = client.get(_support.DONE_KEY)
        if done != last_done:
            last_done, last_progress = done, time.monotonic()
        elif time.monotonic() - last_progress > stall_timeout:
            remaining = -int(done or 0)
            raise RuntimeError(
                f"worker {worker.label}: {remaining} of {count} tasks not done, no progress for "
                f"{stall_timeout:.0f}s:\n{worker.log_tail()}"
            )


# --- 2. Queries per task ---------------------------------------------------------------


@dataclass(frozen=True)
class TaskQueries:
    pid: int
    seq: int
    statements: list[tuple[str, bool]]
    connections_opened: int


@dataclass(frozen=True)
class QueryReport:
    cold: list[TaskQueries]  # the first task of each process
    warm: list[TaskQueries]  # tasks after the first `warm_after` of each process

    def warm_median(self, django_only: bool = False) -> float:
        return statistics.median(
            sum(1 for _, seen in t.statements if seen or not django_only) for t in self.warm
        )

    def warm_per_task(self) -> dict[tuple[str, bool], float]:
        """Mean occurrences per warm task of each distinct statement."""
        counts: Counter[tuple[str, bool]] = Counter()
        for task in self.warm:
            counts.update(task.statements)
        return {stmt: n / len(self.warm) for stmt, n in counts.most_common()}


def collect_queries(label: str, warm_after: int) -> QueryReport:
    records = [json.loads(raw) for raw in _support.bench_redis().lrange(_support.QUERIES_KEY, 0, -1)]
    tasks = [
        TaskQueries(r["pid"], r["seq"], [(s, bool(d)) for s, d in r["statements"]], r["connections_opened"])
        for r in records
        if r["label"] == label
    ]
    cold = sorted((t for t in tasks if t.seq == 1), key=lambda t: t.pid)
    warm = [t for t in tasks if t.seq > warm_after]
    if not warm:
        raise RuntimeError(f"{label}: no task after the first {warm_after} of a process; raise --count-tasks")
    return QueryReport(cold=cold, warm=warm)


def measure_queries(
    cfg: Config, env: dict[str, str], log_dir: Path, schema: str, recipient_ids: list[str]
) -> tuple[QueryReport, QueryReport, dict[str, dict[str, Any]]]:
    """Fresh counting workers, so each process's first task is a cold one."""
    reports: dict[str, QueryReport] = {}
    facts: dict[str, dict[str, Any]] = {}
    for label, app_attr, queue, task_name, task_schema in (
        ("tenant-count", "tenant_app", COUNT_TENANT_QUEUE, _support.TENANT_TASK, schema),
        ("plain-count", "plain_app", COUNT_PLAIN_QUEUE, _support.PLAIN_TASK, None),
    ):
        worker = start_worker(label, app_attr, queue, env, log_dir, count_queries=True)
        try:
            app = getattr(_support, app_attr)
            timed_run(worker, app.tasks[task_name], recipient_ids, cfg.count_tasks, task_schema)
        finally:
            stop_worker(worker)
        facts[label] = worker.facts
        reports[label] = collect_queries(label, cfg.warm_after)
    return reports["tenant-count"], reports["plain-count"], facts


def _short(sql: str, width: int = 100) -> str:
    return sql if len(sql) <= width else sql[: width - 3] + "..."


def _mark(seen_by_django: bool) -> str:
    return f"[{DJANGO_MARK}]" if seen_by_django else "[ ]"


def print_queries(tenant: QueryReport, plain: QueryReport, cfg: Config) -> None:
    print("\n== Queries per task: SQL statements counted inside the workers ==")
    print(
        "Counted: every statement psycopg2 sent on the worker process's connections (a counting\n"
        "cursor class, so statements that bypass Django's cursor wrapper count too). "
        f"{_mark(True)} = also seen\n"
        "by Django's cursor wrapper, i.e. what CaptureQueriesContext / assertNumQueries count.\n"
        "Not statements: opening a connection (counted apart) and COMMIT/ROLLBACK (none: autocommit)."
    )
    header = f"{'':14}{'cold: 1st task of each process':>32}{f'warm median (task > {cfg.warm_after})':>28}"
    print(header + f"{'connections opened/task':>26}")
    for name, report in (("tenant-aware", tenant), ("plain", plain)):
        cold = ", ".join(str(len(t.statements)) for t in report.cold)
        warm = f"{report.warm_median():g} ({report.warm_median(django_only=True):g} {_mark(True)})"
        conns = f"{statistics.median(t.connections_opened for t in report.warm):g}"
        print(f"{name:14}{cold:>32}{warm:>28}{conns:>26}")
    for name, report in (("tenant-aware", tenant), ("plain", plain)):
        print(f"Warm {name} task, mean count per task of each statement ({len(report.warm)} tasks):")
        for (sql, seen), per_task in report.warm_per_task().items():
            print(f"  {per_task:5.2f} {_mark(seen)} {_short(sql)}")
    if tenant.cold:
        first = tenant.cold[0]
        print(f"Cold tenant-aware task (first task of process {first.pid}), in order:")
        for sql, seen in first.statements:
            print(f"        {_mark(seen)} {_short(sql)}")
    print_extra_statements(tenant, plain)


def print_extra_statements(tenant: QueryReport, plain: QueryReport) -> None:
    """Statements of the tenant-aware task beyond those of the plain task (its own work)."""
    own = plain.warm_per_task()
    extra = {
        stmt: n - own.get(stmt, 0.0)
        for stmt, n in tenant.warm_per_task().items()
        if abs(n - own.get(stmt, 0.0)) > 1e-9
    }
    extra_total = tenant.warm_median() - plain.warm_median()
    print(f"Beyond the plain task's statements, warm tenant-aware task: {extra_total:+g} per task (median)")
    for (sql, seen), n in extra.items():
        print(f"  {n:+5.2f} {_mark(seen)} {_short(sql)}")
    reconnects = statistics.median(t.connections_opened for t in plain.warm) >= 1
    if reconnects and any(sql.startswith("SET search_path") for sql, _ in plain.warm_per_task()):
        print(
            "  (Both workers open a new connection for every task here, so the plain task sets its\n"
            "  search_path on each task too. With connections kept (--db-reuse-max), the tenant-aware\n"
            "  task's SET search_path on every task is an extra statement.)"
        )
    print(
        "  Not SQL, not counted: the tenant cache reads a Redis generation key at most once per\n"
        "  TENANT_CACHE_CHECK_INTERVAL per process; verifying the header is an HMAC in memory."
    )
    plain_cold = [len(t.statements) for t in plain.cold]
    for task in tenant.cold:
        baseline = statistics.median(plain_cold) if plain_cold else 0
        print(
            f"Cold tenant-aware task (process {task.pid}): {len(task.statements) - baseline:+g} vs cold plain"
        )


# --- 1. Throughput ---------------------------------------------------------------------


@dataclass
class Throughput:
    tenant: list[RunResult] = field(default_factory=list)
    plain: list[RunResult] = field(default_factory=list)


@dataclass(frozen=True)
class Comparison:
    """One figure (rate or CPU per task) over the rounds, tenant-aware against plain."""

    name: str
    unit: str
    tenant: list[float]
    plain: list[float]

    @property
    def ratio_of_medians(self) -> float:
        return statistics.median(self.tenant) / statistics.median(self.plain)

    @property
    def round_ratios(self) -> list[float]:
        return [t / p for t, p in zip(self.tenant, self.plain, strict=True)]

    def describe(self) -> str:
        ratios = self.round_ratios
        return (
            f"{self.name}: median tenant-aware {statistics.median(self.tenant):.2f} {self.unit}, "
            f"plain {statistics.median(self.plain):.2f} {self.unit}; ratio tenant-aware/plain "
            f"{self.ratio_of_medians:.3f} of the medians, {statistics.median(ratios):.3f} median of the "
            f"per-round ratios (range {min(ratios):.3f}-{max(ratios):.3f})"
        )


def measure_throughput(
    cfg: Config, env: dict[str, str], log_dir: Path, schema: str, recipient_ids: list[str]
) -> tuple[Throughput, dict[str, dict[str, Any]]]:
    from bench._support import plain_app, tenant_app

    tenant_task = tenant_app.tasks[_support.TENANT_TASK]
    plain_task = plain_app.tasks[_support.PLAIN_TASK]
    with contextlib.ExitStack() as stack:
        tenant_worker = start_worker("tenant", "tenant_app", TENANT_QUEUE, env, log_dir)
        stack.callback(stop_worker, tenant_worker)
        plain_worker = start_worker("plain", "plain_app", PLAIN_QUEUE, env, log_dir)
        stack.callback(stop_worker, plain_worker)
        facts = {"tenant": tenant_worker.facts, "plain": plain_worker.facts}

        print("\n== Throughput (tasks/s; consumption of pre-published messages) ==")
        for worker, task, task_schema, name in (
            (tenant_worker, tenant_task, schema, "tenant-aware"),
            (plain_worker, plain_task, None, "plain"),
        ):
            warm = timed_run(worker, task, recipient_ids, cfg.warmup, task_schema) if cfg.warmup else None
            single = timed_run(worker, task, recipient_ids, 1, task_schema)
            warm_text = f"{warm.rate:.0f} tasks/s" if warm else "skipped"
            print(
                f"{name:13} warm-up: {cfg.warmup} tasks ({warm_text}); a 1-task run took "
                f"{single.seconds * 1000:.1f} ms (hand-over + one task); "
                f"tenant header: {single.tenant_header!r}"
            )
        result = Throughput()
        for round_no in range(1, cfg.rounds + 1):
            tenant = timed_run(tenant_worker, tenant_task, recipient_ids, cfg.tasks, schema)
            plain = timed_run(plain_worker, plain_task, recipient_ids, cfg.tasks, None)
            result.tenant.append(tenant)
            result.plain.append(plain)
            cpu_ratio = tenant.cpu_ms_per_task / plain.cpu_ms_per_task
            print(
                f"round {round_no}: tenant-aware {_describe_run(tenant)}   plain {_describe_run(plain)}   "
                f"ratio {tenant.rate / plain.rate:.3f}, CPU {cpu_ratio:.3f}   "
                f"load average {os.getloadavg()[0]:.2f}",
                flush=True,
            )
    return result, facts


def _describe_run(run: RunResult) -> str:
    return f"{run.rate:6.1f}/s ({run.seconds:5.2f} s, {run.cpu_ms_per_task:4.2f} ms CPU/task)"


def print_throughput(result: Throughput) -> None:
    rate = Comparison(
        "throughput", "tasks/s", [r.rate for r in result.tenant], [r.rate for r in result.plain]
    )
    cpu = Comparison(
        "worker CPU per task",
        "ms",
        [r.cpu_ms_per_task for r in result.tenant],
        [r.cpu_ms_per_task for r in result.plain],
    )
    main = Comparison(
        "  of which main (consumer) process",
        "ms",
        [r.main_cpu_ms_per_task for r in result.tenant],
        [r.main_cpu_ms_per_task for r in result.plain],
    )
    pool = Comparison(
        "  of which pool processes",
        "ms",
        [r.pool_cpu_ms_per_task for r in result.tenant],
        [r.pool_cpu_ms_per_task for r in result.plain],
    )
    for comparison in (rate, cpu, main, pool):
        print(comparison.describe())
    print(
        f"=> tenant-aware throughput {(rate.ratio_of_medians - 1) * 100:+.1f}% against plain, by the "
        f"medians (target: no worse than -5%); worker CPU per task {(cpu.ratio_of_medians - 1) * 100:+.1f}%."
        "\n   Runs here vary +-30%: trust only large differences; CPU per task "
        "(worker processes only, not PostgreSQL's or Redis's) is less disturbed by other load."
    )


# --- 3. Environment --------------------------------------------------------------------


def print_environment(cfg: Config, schema: str) -> None:
    from django.db import connection

    server = _support.bench_redis().info("server")
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        pg_version = cursor.fetchone()[0]
    print("== Environment ==")
    print(
        f"CPUs: os.cpu_count()={os.cpu_count()}, usable={len(os.sched_getaffinity(0))}, "
        f"load average at start {os.getloadavg()[0]:.2f}; {platform.platform()}"
    )
    print(
        f"Python {platform.python_version()}, Django {_version('django')}, Celery {_version('celery')}, "
        f"kombu {_version('kombu')}, django-tenants {_version('django-tenants')}, "
        f"psycopg2 {_version('psycopg2-binary', 'psycopg2')}, PostgreSQL {pg_version}, "
        f"Redis {server['redis_version']}"
    )
    print(
        f"N={cfg.tasks} tasks per timed run, rounds={cfg.rounds}, warm-up={cfg.warmup} tasks per worker, "
        f"query count over {cfg.count_tasks} tasks per app (warm = task > {cfg.warm_after} of its process)"
    )
    print(
        f"database {cfg.db_name} (tenant schema {schema!r}, {cfg.recipients} recipient rows); "
        f"broker {cfg.redis_url} (a Redis db of its own, flushed at the end)"
    )
    connections = (
        f"kept for {cfg.db_reuse_max} tasks (CELERY_DB_REUSE_MAX={cfg.db_reuse_max}, set by the bench)"
        if cfg.db_reuse_max
        else "closed by Celery's Django fixup before and after every task (as configured)"
    )
    print(f"DB connections in the workers: {connections}")
    print(
        "settings: tenant_platform.settings.dev, DEBUG=0, TENANT_CACHE_CHECK_INTERVAL=1.0; workers: "
        "prefork -c 2, prefetch multiplier 1, -l warning, without gossip/mingle/heartbeat; "
        "tasks ignore_result=True"
    )


def _version(*distributions: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    for name in distributions:
        with contextlib.suppress(PackageNotFoundError):
            return version(name)
    return "?"


def print_worker_facts(facts: dict[str, dict[str, Any]]) -> None:
    for label, info in facts.items():
        tasks = ", ".join(
            f"{name} ({'TenantTask' if tenant else 'default Task'})"
            for name, tenant in info["tenant_task_base"].items()
        )
        imported = "yes" if info["task_tenancy_imported"] else "no"
        print(
            f"worker {label:12} app {info['app']}: {tasks}; tenants.task_tenancy imported: {imported}; "
            f"prefetch multiplier {info['prefetch_multiplier']}; CELERY_DB_REUSE_MAX {info['db_reuse_max']}"
        )
    print(
        "Publishing: plain messages with Herald's before_task_publish stamping handler disconnected "
        "(no tenant header); tenant-aware ones stamped and signed inside schema_context.\n"
        "Plain workers: search_path fixed once per process (connection.set_schema at worker_process_init)."
    )


# --- Main ------------------------------------------------------------------------------


def _raise_keyboard_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def setup_django(env: dict[str, str]) -> None:
    os.environ.update(env)
    import django

    django.setup()


def claim_redis_db(cfg: Config) -> None:
    """The bench flushes its Redis db at the end, so it starts only on an empty one."""
    client = _support.bench_redis()
    if cfg.flush_redis:
        client.flushdb()
    elif client.dbsize():
        sys.exit(
            f"{cfg.redis_url} holds {client.dbsize()} keys: someone may be using it. Pick an empty "
            "Redis db with --redis-url, or add --flush-redis if those keys are a bench's own."
        )


def run(cfg: Config, log_dir: Path) -> None:
    env = service_env(cfg)
    _support.bench_redis.cache_clear()
    os.environ["BENCH_REDIS_URL"] = cfg.redis_url
    claim_redis_db(cfg)
    create_database(cfg)
    try:
        migrate(env)
        setup_django(env)
        schema, recipient_ids = provision(cfg.recipients)
        env["BENCH_SCHEMA"] = schema
        os.environ["BENCH_SCHEMA"] = schema
        print_environment(cfg, schema)
        tenant_q, plain_q, count_facts = measure_queries(cfg, env, log_dir, schema, recipient_ids)
        print_queries(tenant_q, plain_q, cfg)
        throughput, facts = measure_throughput(cfg, env, log_dir, schema, recipient_ids)
        print_throughput(throughput)
        print()
        print_worker_facts({**count_facts, **facts})
    finally:
        from django.conf import settings

        if settings.configured:  # Django was set up: let go of its connection before the DROP
            from django.db import connections

            connections.close_all()
        drop_database(cfg)
        _support.bench_redis().flushdb()


def main() -> int:
    cfg = parse_args()
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    log_dir = Path(tempfile.mkdtemp(prefix="herald-bench-"))
    started = time.monotonic()
    ok = False
    try:
        run(cfg, log_dir)
        ok = True
    except KeyboardInterrupt:
        print("\ninterrupted; database dropped, workers stopped", file=sys.stderr)
        return 130
    finally:
        logs = list(log_dir.iterdir())
        if logs and (cfg.keep_logs or not ok):
            print(f"worker logs: {log_dir}", file=sys.stderr)
        else:
            for path in logs:
                path.unlink()
            log_dir.rmdir()
    print(f"\ntotal time {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
