"""Tenant-aware Celery: every task message names its tenant in signed headers.

Publishing (any path: apply_async, canvas, retries, beat) passes through `before_task_publish`,
where `stamp_tenant_header` adds the current schema and an HMAC over the task id, task name,
schema, arguments, canvas links and the retries/eta/expires headers. A header lifted from one
message therefore cannot run other arguments, append callbacks, or change how often it retries.

Checks happen twice, before any of the task's code runs:
1. In the worker's consumer (`tenant_strategy`, the tasks' Strategy), on the raw message: it must
   be task protocol 2, its body may carry nothing but args, kwargs and canvas links (Celery merges
   any other body field into the task's request, which could otherwise fake `is_eager` or `id`),
   and the signature must match. A bad message is rejected there and never reaches a pool process.
2. In the pool process (`TenantTask.__call__`): the signature again, the task's scope (tenant or
   platform), and the tenant, which must exist and be active; then the connection is switched.
`reset_schema` puts the connection back to public after the task, its callbacks and its result
(task_postrun runs in a `finally`). Every rejection is logged on `herald.security`; a rejected
message is not retried. Unlike tenant-schemas-celery, which runs such a task in public, we fail
closed.
"""

import contextvars
import hashlib
import hmac
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NoReturn

from celery import Task, signals
from celery.exceptions import Reject
from celery.worker.strategy import default as default_strategy
from django.conf import settings
from django.db import connections
from django_tenants.utils import get_public_schema_name
from kombu.utils.json import dumps as kombu_dumps

from . import registry
from .schemas import current_schema, use_public, use_tenant

SCHEMA_HEADER = "herald_tenant"
SIGNATURE_HEADER = "herald_tenant_sig"
# Canvas links travel in the message body's "embed" part; they are signed with the arguments.
EMBED_FIELDS = ("callbacks", "errbacks", "chain", "chord")
# Delivery headers that change how a task behaves; signed so they can't be edited in transit.
SIGNED_HEADERS = ("retries", "eta", "expires")

security_log = logging.getLogger("herald.security")

# Set while a task runs in-process through Task.apply() (eager): no message, no trust boundary.
_in_process: contextvars.ContextVar[bool] = contextvars.ContextVar("herald_task_in_process", default=False)


def _signing_key() -> bytes:
    if settings.TASK_SIGNING_KEY:
        return settings.TASK_SIGNING_KEY.encode()
    # A key of its own, derived from SECRET_KEY, so this HMAC can't be confused with Django's.
    return hmac.new(settings.SECRET_KEY.encode(), b"herald.task-tenant-header", hashlib.sha256).digest()


def _canonical(
    args: Sequence[Any], kwargs: Mapping[str, Any], embed: Mapping[str, Any], delivery: Mapping[str, Any]
) -> bytes:
    # kombu's encoder is the one the message is sent with, and JSON keeps the order of keys, so
    # both ends produce the same text. (No sort_keys: it fails on mixed key types.)
    links = {field: embed.get(field) for field in EMBED_FIELDS}
    signed = {field: delivery.get(field) for field in SIGNED_HEADERS}
    text: str = kombu_dumps([list(args), dict(kwargs), links, signed], separators=(",", ":"))
    return text.encode()


def sign(
    task_id: str,
    task_name: str,
    schema: str,
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
    embed: Mapping[str, Any] | None = None,
    delivery: Mapping[str, Any] | None = None,
) -> str:
    """HMAC-SHA256 over what a message runs; `delivery` holds its retries/eta/expires headers."""
    mac = hmac.new(_signing_key(), digestmod=hashlib.sha256)
    for part in (task_id, task_name, schema):
        encoded = part.encode()
        mac.update(len(encoded).to_bytes(4, "big") + encoded)  # length-prefixed: no ambiguity
    mac.update(_canonical(args, kwargs, embed or {}, delivery or {}))
    return mac.hexdigest()


@signals.before_task_publish.connect(weak=False)
def stamp_tenant_header(
    sender: str | None = None,
    body: Any = None,
    headers: dict[str, Any] | None = None,
    **_: Any,
) -> None:
    """Sign every outgoing task message with the schema that is current where it is sent."""
    if headers is None or body is None:
        return
    args, kwargs, embed = _body_parts(body)
    schema = current_schema()
    headers[SCHEMA_HEADER] = schema
    headers[SIGNATURE_HEADER] = sign(headers["id"], headers["task"], schema, args, kwargs, embed, headers)


def _body_parts(body: Any) -> tuple[Sequence[Any], Mapping[str, Any], Mapping[str, Any]]:
    if isinstance(body, tuple | list) and len(body) == 3:  # task protocol 2
        args, kwargs, embed = body
        return args or (), kwargs or {}, embed or {}
    raise TypeError("Herald only publishes task protocol 2 messages")


@signals.task_prerun.connect(weak=False)
def recycle_connections(**_: Any) -> None:
    """Drop connections that broke or outlived CONN_MAX_AGE, as Django does per request, but
    without Django's health check (a SELECT 1) before every task: a connection is checked only
    after an error on it."""
    if _in_process.get():
        return
    for conn in connections.all(initialized_only=True):
        if conn.connection is None:
            continue
        if conn.get_autocommit() != conn.settings_dict["AUTOCOMMIT"]:
            conn.close()
        elif conn.errors_occurred:
            if conn.is_usable():
                conn.errors_occurred = False
            else:
                conn.close()
        elif conn.close_at is not None and time.monotonic() >= conn.close_at:
            conn.close()


@signals.task_postrun.connect(weak=False)
def reset_schema(**_: Any) -> None:
    """Back to public after every task from the broker, whatever happened in it."""
    if not _in_process.get():
        use_public()


@signals.worker_process_init.connect(weak=False)
def start_in_public(**_: Any) -> None:
    use_public()


def _log_rejection(reason: str, task_name: str, task_id: Any, schema: Any) -> None:
    security_log.warning(
        "security: rejected task message: %s (task=%.100s id=%.64s schema=%.70r)",
        reason,
        task_name,
        task_id,
        schema,
    )


def message_problem(task_name: str, headers: Mapping[str, Any], payload: Any) -> str | None:
    """Why a raw task message must not run, or None if its tenant header checks out."""
    if "args" in headers or not isinstance(payload, list | tuple) or len(payload) != 3:
        return "not a task protocol 2 message"
    args, kwargs, embed = payload
    if (
        not isinstance(args, list | tuple)
        or not isinstance(kwargs, dict)
        or not isinstance(embed, dict | None)
    ):
        return "malformed message body"
    extra = set(embed or {}) - set(EMBED_FIELDS)
    if extra:
        return f"unexpected fields in message body: {', '.join(sorted(map(str, extra)))[:200]}"
    schema, signature = headers.get(SCHEMA_HEADER), headers.get(SIGNATURE_HEADER)
    if not isinstance(schema, str) or not isinstance(signature, str) or not schema or not signature:
        return "missing tenant header"
    expected = sign(str(headers.get("id")), task_name, schema, args, kwargs, embed or {}, headers)
    if not hmac.compare_digest(expected, signature):
        return "bad tenant header signature"
    return None


def tenant_strategy(task: Task, app: Any, consumer: Any, **kwargs: Any) -> Callable[..., Any]:  # type: ignore[type-arg]
    """The consumer-side gate: refuse a bad message before it is handed to a pool process."""
    handle = default_strategy(task, app, consumer, **kwargs)

    def task_message_handler(
        message: Any, body: Any, ack: Any, reject: Any, callbacks: Any, **kw: Any
    ) -> Any:
        headers = message.headers or {}
        problem = message_problem(task.name, headers, message.payload)  # undecodable: Celery refuses it
        if problem is not None:
            _log_rejection(problem, task.name, headers.get("id"), headers.get(SCHEMA_HEADER))
            reject(logging.getLogger("celery.worker"), consumer.connection_errors, False)
            return None
        return handle(message, body, ack, reject, callbacks, **kw)

    return task_message_handler


def _header(request: Any, name: str) -> str | None:
    value = getattr(request, name, None)
    if value is None:
        value = (getattr(request, "headers", None) or {}).get(name)
    return value if isinstance(value, str) else None


class TenantTask(Task):  # type: ignore[type-arg]
    """Base task for every Herald task.

    `tenant_scope = "tenant"` (the default): runs only in the tenant its signed header names.
    `tenant_scope = "public"`: platform work (sweepers, fan-outs) that runs only in public.
    """

    abstract = True
    tenant_scope = "tenant"
    Strategy = "tenants.task_tenancy:tenant_strategy"

    def apply(self, *args: Any, **kwargs: Any) -> Any:
        """Run in this process (eager): in the caller's schema, which is left as it was."""
        token = _in_process.set(True)
        try:
            return super().apply(*args, **kwargs)
        finally:
            _in_process.reset(token)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        # A direct call (`task(...)`) has no request of its own on the stack; apply() marks itself.
        # Neither reads anything a message could set.
        if self.request_stack.top is None or _in_process.get():
            return super().__call__(*args, **kwargs)
        request = self.request
        schema = self._verified_schema(request, args, kwargs)
        if schema == get_public_schema_name():
            use_public()
        else:
            tenant = registry.get_active_tenant(schema)
            if tenant is None:
                self._reject(request, "unknown or inactive tenant", schema)
            use_tenant(tenant)
        # The worker's stack protection makes this call the body directly.
        return super().__call__(*args, **kwargs)

    def _verified_schema(self, request: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        schema = _header(request, SCHEMA_HEADER)
        signature = _header(request, SIGNATURE_HEADER)
        if not schema or not signature:
            self._reject(request, "missing tenant header", schema)
        assert schema is not None
        assert signature is not None
        embed = {field: getattr(request, field, None) for field in EMBED_FIELDS}
        delivery = {field: getattr(request, field, None) for field in SIGNED_HEADERS}
        expected = sign(str(request.id), self.name, schema, args, kwargs, embed, delivery)
        if not hmac.compare_digest(expected, signature):
            self._reject(request, "bad tenant header signature", schema)
        public = get_public_schema_name()
        if self.tenant_scope == "public" and schema != public:
            self._reject(request, "platform task sent from a tenant", schema)
        if self.tenant_scope == "tenant" and schema == public:
            self._reject(request, "tenant task sent without a tenant", schema)
        return schema

    def _reject(self, request: Any, reason: str, schema: str | None) -> NoReturn:
        _log_rejection(reason, self.name, request.id, schema)
        raise Reject(reason, requeue=False)


class PlatformTask(TenantTask):
    """Base for platform tasks (sweepers, fan-outs): they run in public and nowhere else."""

    abstract = True
    tenant_scope = "public"
