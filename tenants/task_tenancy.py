"""Tenant-aware Celery: every task message names its tenant in signed headers.

Publishing (any path: apply_async, canvas, retries, beat) passes through `before_task_publish`,
where `stamp_tenant_header` adds the current schema and an HMAC over the task id, task name,
schema, arguments and canvas links. A header lifted from one message therefore cannot run other
arguments or append other callbacks.

`TenantTask` (the app's base task) checks that header before the body runs and switches the
database connection to the tenant; `reset_schema` puts the connection back to public after the
task, its callbacks and its result have been handled (task_postrun runs in a `finally`). A
message without a header, with a bad signature, or naming an unknown or inactive tenant is
rejected: its body never runs, it is not retried, and a security event is logged. Unlike
tenant-schemas-celery, which runs such a task in public, we fail closed.
"""

import hashlib
import hmac
import logging
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

from celery import Task, signals
from celery.exceptions import Reject
from django.conf import settings
from django_tenants.utils import get_public_schema_name
from kombu.utils.json import dumps as kombu_dumps

from . import registry
from .schemas import current_schema, use_public, use_tenant

SCHEMA_HEADER = "herald_tenant"
SIGNATURE_HEADER = "herald_tenant_sig"
# Canvas links travel in the message body's "embed" part; they are signed with the arguments.
EMBED_FIELDS = ("callbacks", "errbacks", "chain", "chord")

security_log = logging.getLogger("herald.security")


def _signing_key() -> bytes:
    if settings.TASK_SIGNING_KEY:
        return settings.TASK_SIGNING_KEY.encode()
    # A key of its own, derived from SECRET_KEY, so this HMAC can't be confused with Django's.
    return hmac.new(settings.SECRET_KEY.encode(), b"herald.task-tenant-header", hashlib.sha256).digest()


def _canonical(args: Sequence[Any], kwargs: Mapping[str, Any], embed: Mapping[str, Any]) -> bytes:
    # kombu's encoder is the one the message is sent with, so both ends see the same text.
    links = {field: embed.get(field) for field in EMBED_FIELDS}
    text: str = kombu_dumps([list(args), dict(kwargs), links], sort_keys=True, separators=(",", ":"))
    return text.encode()


def sign(
    task_id: str,
    task_name: str,
    schema: str,
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
    embed: Mapping[str, Any] | None = None,
) -> str:
    mac = hmac.new(_signing_key(), digestmod=hashlib.sha256)
    for part in (task_id, task_name, schema):
        encoded = part.encode()
        mac.update(len(encoded).to_bytes(4, "big") + encoded)  # length-prefixed: no ambiguity
    mac.update(_canonical(args, kwargs, embed or {}))
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
    headers[SIGNATURE_HEADER] = sign(headers["id"], headers["task"], schema, args, kwargs, embed)


def _body_parts(body: Any) -> tuple[Sequence[Any], Mapping[str, Any], Mapping[str, Any]]:
    if isinstance(body, tuple | list) and len(body) == 3:  # task protocol 2
        args, kwargs, embed = body
        return args or (), kwargs or {}, embed or {}
    raise TypeError("Herald only publishes task protocol 2 messages")


@signals.task_postrun.connect(weak=False)
def reset_schema(**_: Any) -> None:
    """Back to public after every task, whatever happened in it."""
    use_public()


@signals.worker_process_init.connect(weak=False)
def start_in_public(**_: Any) -> None:
    use_public()


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

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        request = self.request
        if request.called_directly or request.is_eager:
            # An in-process call crosses no trust boundary: it runs in the caller's schema.
            return super().__call__(*args, **kwargs)
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
        expected = sign(str(request.id), self.name, schema, args, kwargs, embed)
        if not hmac.compare_digest(expected, signature):
            self._reject(request, "bad tenant header signature", schema)
        public = get_public_schema_name()
        if self.tenant_scope == "public" and schema != public:
            self._reject(request, "platform task sent from a tenant", schema)
        if self.tenant_scope == "tenant" and schema == public:
            self._reject(request, "tenant task sent without a tenant", schema)
        return schema

    def _reject(self, request: Any, reason: str, schema: str | None) -> NoReturn:
        security_log.warning(
            "security: rejected task message: %s (task=%s id=%s schema=%.70r)",
            reason,
            self.name,
            request.id,
            schema,
        )
        raise Reject(reason, requeue=False)


class PlatformTask(TenantTask):
    """Base for platform tasks (sweepers, fan-outs): they run in public and nowhere else."""

    abstract = True
    tenant_scope = "public"
