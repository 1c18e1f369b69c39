"""ASGI middleware: the tenant of a WebSocket connection, from its Host header.

django-tenants picks the tenant for HTTP requests only; WebSocket connections would otherwise run
in the public schema. Wrap any WebSocket router in `TenantFromHostMiddleware` and its consumers
find, in their scope:

    scope["tenant"]       the tenants.models.Tenant whose domain the client connected to
    scope["schema_name"]  that tenant's schema

A consumer switches to the tenant inside each synchronous database function it runs (with
`tenant_context(scope["tenant"])`): a `database_sync_to_async` call may run on a connection that
has never seen the tenant, so switching outside the function is not enough.

A host that names no tenant (an unknown domain, the bare API host, 127.0.0.1) or a suspended
tenant's domain is refused during the handshake (the server answers HTTP 403); nothing runs in
the public schema on a client's behalf. Other connection types (HTTP, lifespan) pass through.
"""

import logging
from typing import Any

from channels.db import database_sync_to_async
from django_tenants.utils import get_public_schema_name, remove_www, schema_context

from tenants.models import Domain, Tenant

log = logging.getLogger(__name__)

Scope = dict[str, Any]


def host_of(scope: Scope) -> str:
    """The host name the client asked for, lower case, without port (or "" if none was sent)."""
    for name, value in scope.get("headers", []):
        if name == b"host":
            host: str = bytes(value).decode("latin-1").strip().lower()
            if host.startswith("["):  # an IPv6 literal: [::1]:8000
                return host.split("]")[0] + "]"
            return str(remove_www(host.split(":")[0]))
    return ""


def active_tenant_for_host(host: str) -> Tenant | None:
    """The active tenant that owns the domain `host`, looked up in the public schema."""
    if not host:
        return None
    with schema_context(get_public_schema_name()):
        domain = Domain.objects.select_related("tenant").filter(domain=host).first()
    if domain is None or not domain.tenant.is_active:
        return None
    tenant: Tenant = domain.tenant
    return tenant


class TenantFromHostMiddleware:
    """Sets scope["tenant"] and scope["schema_name"] for WebSocket connections (see the module)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> Any:
        if scope["type"] != "websocket":
            return await self.app(scope, receive, send)
        host = host_of(scope)
        tenant = await database_sync_to_async(active_tenant_for_host)(host)
        if tenant is None:
            log.info("websocket refused: no active tenant for host %r", host[:100])
            await receive()  # the client's websocket.connect
            await send({"type": "websocket.close", "code": 4404})
            return None
        return await self.app(dict(scope, tenant=tenant, schema_name=tenant.schema_name), receive, send)
