"""Worker side of bench/tenant_overhead.py: two Celery apps with one identical task each.

- `tenant_app` is Herald's own app (tenant_platform.celery:app, base task TenantTask) plus the
  task `bench.touch_tenant`; its messages carry the signed tenant header and each run switches
  the connection to the tenant and back to public.
- `plain_app` is a plain `celery.Celery` with the default Task class and the same CELERY_*
  settings; its task `bench.touch_plain` runs with a search_path fixed once per worker process
  (`connection.set_schema(BENCH_SCHEMA)` at worker_process_init).

Both task bodies are the same function: one ORM UPDATE of a notifications_recipient row, then
one Redis INCR of a shared counter (the last task of a run also records the time).

The apps are built on first access (PEP 562 module `__getattr__`), so a worker started with
`-A bench._support:plain_app` never builds the tenant app, whose base task would import
tenants.task_tenancy and with it a task_postrun handler that resets the schema to public.

With BENCH_COUNT_QUERIES=1 a worker process counts every SQL statement it sends: its psycopg2
connections get a counting cursor class (so statements that bypass Django's cursor wrapper,
such as a health-check `SELECT 1`, are counted too), and an execute wrapper marks those that
Django's wrapper saw. After each task the statements since the previous report go to Redis.

Environment: BENCH_REDIS_URL (counters), BENCH_LABEL (worker name in reports), BENCH_SCHEMA
(plain app only), BENCH_COUNT_QUERIES, BENCH_DB_REUSE_MAX (both apps; unset = as configured).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from functools import cache
from typing import TYPE_CHECKING, Any

import psycopg2.extensions
import psycopg2.sql
import redis
from celery import Celery, Task, signals

if TYPE_CHECKING:
    from notifications.models import Recipient

TENANT_TASK = "bench.touch_tenant"
PLAIN_TASK = "bench.touch_plain"

# Redis keys (in the bench's own Redis database).
DONE_KEY = "bench:done"  # set to -N before a run; the task that brings it to 0 is the last
END_KEY = "bench:end"  # time.time() when the last task of a run finished
FINISHED_KEY = "bench:finished"  # list the driver blocks on
QUERIES_KEY = "bench:queries"  # one JSON record per task, when counting queries
WORKER_KEY = "bench:worker:{label}"  # JSON facts about a worker, set when it is ready


@cache
def bench_redis() -> redis.Redis:
    # redis-py's pool notices a fork and reconnects, so prefork children can share this.
    return redis.Redis.from_url(os.environ["BENCH_REDIS_URL"])


@cache
def _recipient_model() -> type[Recipient]:
    from notifications.models import Recipient  # only once Django is set up

    return Recipient


def touch(recipient_id: str) -> None:
    """The work of both tasks: one UPDATE in the current schema, then count the task as done."""
    from django.utils import timezone

    _recipient_model().objects.filter(pk=recipient_id).update(updated_at=timezone.now())
    _mark_done()


def _mark_done() -> None:
    client = bench_redis()
    if client.incr(DONE_KEY) == 0:
        client.set(END_KEY, repr(time.time()))
        client.rpush(FINISHED_KEY, b"1")


# --- The two apps ------------------------------------------------------------------------


def _build_tenant_app() -> Celery:
    from tenant_platform.celery import app

    @app.task(name=TENANT_TASK, ignore_result=True)
    def touch_tenant(recipient_id: str) -> None:
        touch(recipient_id)

    return _with_db_reuse(app)


def _build_plain_app() -> Celery:
    app = Celery("bench_plain", task_cls=Task)
    app.config_from_object("django.conf:settings", namespace="CELERY")

    @app.task(name=PLAIN_TASK, ignore_result=True)
    def touch_plain(recipient_id: str) -> None:
        touch(recipient_id)

    signals.worker_process_init.connect(_fix_search_path, weak=False)
    return _with_db_reuse(app)


def _with_db_reuse(app: Celery) -> Celery:
    """Same for both apps: with BENCH_DB_REUSE_MAX=K, Celery's Django fixup keeps a database
    connection for K tasks instead of closing it before and after every task."""
    reuse = os.environ.get("BENCH_DB_REUSE_MAX")
    if reuse:
        app.conf.update(CELERY_DB_REUSE_MAX=int(reuse))
    return app


def _fix_search_path(**_: Any) -> None:
    from django.db import connection

    connection.set_schema(os.environ["BENCH_SCHEMA"])  # type: ignore[attr-defined]


_BUILDERS: Mapping[str, Callable[[], Celery]] = {
    "tenant_app": _build_tenant_app,
    "plain_app": _build_plain_app,
}
_built: dict[str, Celery] = {}


def __getattr__(name: str) -> Celery:
    """`bench._support.tenant_app` / `.plain_app`, built when first asked for."""
    if name not in _BUILDERS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if name not in _built:
        _built[name] = _BUILDERS[name]()
    return _built[name]


# --- Worker start-up ---------------------------------------------------------------------


@signals.worker_ready.connect(weak=False)
def _announce_ready(sender: Any = None, **_: Any) -> None:
    conf = sender.app.conf
    facts = {
        "pid": os.getpid(),
        "app": sender.app.main,
        "task_tenancy_imported": "tenants.task_tenancy" in sys.modules,
        "counting_queries": os.environ.get("BENCH_COUNT_QUERIES") == "1",
        "prefetch_multiplier": conf.worker_prefetch_multiplier,
        "db_reuse_max": conf.get("CELERY_DB_REUSE_MAX"),
        "tenant_task_base": {
            name: any(cls.__qualname__ == "TenantTask" for cls in type(task).__mro__)
            for name, task in sender.app.tasks.items()
            if name.startswith("bench.")
        },
    }
    bench_redis().set(WORKER_KEY.format(label=os.environ["BENCH_LABEL"]), json.dumps(facts))


@signals.worker_process_init.connect(weak=False)
def _maybe_count_queries(**_: Any) -> None:
    if os.environ.get("BENCH_COUNT_QUERIES") == "1":
        _install_query_counting()


# --- Query counting (BENCH_COUNT_QUERIES=1 only) ----------------------------------------

_statements: list[tuple[str, bool]] = []  # (SQL, seen by Django's cursor wrapper) since last report
_connections_opened = 0
_inside_django_wrapper = False
_tasks_reported = 0


class CountingCursor(psycopg2.extensions.cursor):
    """A psycopg2 cursor that records every statement it sends, whoever executes it."""

    def execute(self, query: Any, vars: Any = None) -> Any:
        _statements.append((_sql_text(query, self), _inside_django_wrapper))
        return super().execute(query, vars)

    def executemany(self, query: Any, vars_list: Any) -> Any:
        _statements.append((_sql_text(query, self), _inside_django_wrapper))
        return super().executemany(query, vars_list)

    def callproc(self, procname: Any, parameters: Any = None) -> Any:
        _statements.append((f"CALL {procname}", _inside_django_wrapper))
        return super().callproc(procname, parameters)


def _sql_text(query: Any, cursor: psycopg2.extensions.cursor) -> str:
    if isinstance(query, psycopg2.sql.Composable):
        query = query.as_string(cursor)
    if isinstance(query, bytes):
        query = query.decode(errors="replace")
    return " ".join(str(query).split())


def _mark_django_wrapper(
    execute: Callable[..., Any], sql: str, params: Sequence[Any], many: bool, context: dict[str, Any]
) -> Any:
    """An execute wrapper: the statements sent while it runs are the ones Django's wrapper saw."""
    global _inside_django_wrapper
    _inside_django_wrapper = True
    try:
        return execute(sql, params, many, context)
    finally:
        _inside_django_wrapper = False


def _count_connection(**_: Any) -> None:
    global _connections_opened
    _connections_opened += 1


def _install_query_counting() -> None:
    from django.db import connection
    from django.db.backends.signals import connection_created

    # Taken by every connection this process opens from now on (Django's default is setdefault).
    connection.settings_dict["OPTIONS"]["cursor_factory"] = CountingCursor
    connection.execute_wrappers.append(_mark_django_wrapper)
    connection_created.connect(_count_connection, weak=False)
    # Connected last, so it runs after the other task_postrun handlers (none of them queries).
    signals.task_postrun.connect(_report_task_queries, weak=False)


def _report_task_queries(sender: Any = None, **_: Any) -> None:
    """Send everything executed since the previous report, so no statement goes uncounted."""
    global _connections_opened, _tasks_reported
    _tasks_reported += 1
    record = {
        "label": os.environ["BENCH_LABEL"],
        "pid": os.getpid(),
        "seq": _tasks_reported,
        "task": getattr(sender, "name", None),
        "statements": list(_statements),
        "connections_opened": _connections_opened,
    }
    _statements.clear()
    _connections_opened = 0
    bench_redis().rpush(QUERIES_KEY, json.dumps(record))
