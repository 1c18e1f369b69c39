"""Give a recipient a push subscription on the fake push service, as a browser would.

A real subscription needs a browser and a real push service. In development the fake push
service of `make run` (tests/fakes/webpush_server.py) plays both: `POST /subscriptions` makes
a key pair and an endpoint, as `pushManager.subscribe()` does, and the service keeps the keys,
so every push Herald then sends there is decrypted into .data/push and listed on /dev/push/.

The subscription is registered the way a tenant's page registers one: `POST /u/push/subscriptions`
on the tenant's domain with the recipient's token, here sent to this same web server.
"""

from __future__ import annotations

import http.client
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django_tenants.utils import schema_context

from notifications.links import recipient_token
from notifications.pipeline import RecipientSpec, upsert_recipient
from notifications.push.keys import ensure_vapid_keys
from tenants.models import Tenant

# Written by deploy/dev/run.py next to the records: where the fake push service listens.
SERVICE_URL_FILE = "service-url"
TIMEOUT = 10.0  # seconds per call to the fake service or to web


class SubscribeError(Exception):
    """Why the subscription could not be made, in words for the page, with an HTTP status."""

    def __init__(self, message: str, status: int = 502) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Subscribed:
    tenant: str
    external_id: str
    endpoint: str
    created: bool


def push_dir() -> Path | None:
    value = getattr(settings, "DEV_PUSH_DIR", None)
    return Path(value) if value else None


def push_service_url() -> str | None:
    """The fake push service's origin (http://127.0.0.1:<port>), or None when it is not in use."""
    directory = push_dir()
    if directory is None:
        return None
    try:
        url = (directory / SERVICE_URL_FILE).read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None
    parts = urlsplit(url)
    return url if parts.scheme == "http" and parts.hostname and not parts.path.strip("/") else None


def post_json(
    host: str, port: int, path: str, body: Any, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    """POST `body` as JSON to host:port; (status, the answer's JSON or its text)."""
    data = json.dumps(body).encode()
    connection = http.client.HTTPConnection(host, port, timeout=TIMEOUT)
    try:
        connection.request(
            "POST", path, body=data, headers={"Content-Type": "application/json", **(headers or {})}
        )
        response = connection.getresponse()
        raw = response.read().decode(errors="replace")
    finally:
        connection.close()
    try:
        return response.status, json.loads(raw) if raw else None
    except ValueError:
        return response.status, raw


def subscribe(tenant_slug: str, external_id: str, web_port: int) -> Subscribed:
    """Make a fake-service subscription and register it for `external_id` of the tenant.

    The recipient is created if the tenant has none by that id (as a first notification would).
    `web_port` is where this web server listens on 127.0.0.1; the registration is sent there with
    the tenant's domain in the Host header (its *.localhost name does not resolve in Python).
    """
    service = push_service_url()
    if service is None:
        raise SubscribeError(
            "The fake push service is not in use: `make run` starts it and names it in DEV_PUSH_DIR.", 503
        )
    tenant = Tenant.objects.filter(slug=tenant_slug).first()
    if tenant is None:
        raise SubscribeError(f"There is no tenant {tenant_slug!r}.", 400)
    domain = tenant.get_primary_domain()
    if domain is None:
        raise SubscribeError(f"Tenant {tenant_slug!r} has no primary domain.", 400)

    with schema_context(tenant.schema_name):
        public_key, _ = ensure_vapid_keys()
        recipient = upsert_recipient(RecipientSpec(external_id=external_id))
        token = recipient_token(str(recipient.id))

    parts = urlsplit(service)
    try:
        status, subscription = post_json(
            parts.hostname or "127.0.0.1",
            parts.port or 80,
            "/subscriptions",
            {"applicationServerKey": public_key},
        )
    except OSError as exc:
        raise SubscribeError(f"The fake push service at {service} does not answer ({exc}).") from None
    if status != 201 or not isinstance(subscription, dict) or "endpoint" not in subscription:
        raise SubscribeError(f"The fake push service at {service} answered {status}: {subscription!r:.300}")

    try:
        status, answer = post_json(
            "127.0.0.1",
            web_port,
            "/u/push/subscriptions",
            subscription,
            {"Host": f"{domain.domain}:{web_port}", "Authorization": f"Recipient {token}"},
        )
    except OSError as exc:
        raise SubscribeError(f"Herald's web server on port {web_port} does not answer ({exc}).") from None
    if status not in (200, 201):
        raise SubscribeError(
            f"POST /u/push/subscriptions on {domain.domain} answered {status}: {answer!r:.300}"
        )
    return Subscribed(
        tenant=tenant_slug,
        external_id=external_id,
        endpoint=str(subscription["endpoint"]),
        created=status == 201,
    )
