"""The console's live stream: `wss://<tenant domain>/ws/console/[?after=<event id>]`.

Only for a signed-in console user of this tenant: the Django session cookie the console set on
this domain is read in the tenant's schema (sessions and users live there), its user must still
exist, be active, match the session's auth hash (a changed password ends it) and hold a console
role. A browser must connect from the console's own origin (no cross-site socket hijacking).

Server to client (JSON text frames):

    {"type": "events", "events": [{"id", "delivery", "notification", "broadcast", "channel",
                                   "status", "detail", "at"}, ...]}
                            delivery state changes, in batches, in event-id order per batch
    {"type": "broadcast", "broadcast": {...}}
                            a broadcast's progress (notifications.fanout.progress)
    {"type": "ready", "last": <event id or null>, "missed": k, "more": bool}
                            subscribed; sent after the missed events
    {"type": "pong"}        answer to {"type": "ping"}

Catching up: with `after=<event id>` the events since then are sent before "ready". Ids are
handed out when rows are written but become visible when their transaction commits, so an event
with a smaller id can appear after a larger one has been seen. The catch-up therefore also
resends the OVERLAP ids before `after`, and the client drops ids it has already seen. Past
CATCH_UP_LIMIT events `more` is true: the page should reload its data instead.

Close codes: 1008 (policy violation) for a socket that isn't signed in, a user without a console
role here, a session of another tenant, or a foreign Origin; 4400 a bad `after`; 4404 (during the
handshake, seen as HTTP 403) a host that is no active tenant's.
"""

import time
from dataclasses import dataclass
from importlib import import_module
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit

from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib.auth import get_user
from django.db.models import Max
from django.http.cookie import parse_cookie
from django_tenants.utils import tenant_context

from tenants.models import Tenant

from .. import live
from ..console.roles import role_of
from ..models import DeliveryEvent
from .consumers import CLOSE_BAD_REQUEST, Refused, TenantSocket

CLOSE_POLICY = 1008
CATCH_UP_LIMIT = 10_000
OVERLAP = 2_000
RECHECK_AFTER = 60.0  # seconds between checks that the session is still good


def _header(scope: dict[str, Any], name: bytes) -> str:
    for key, value in scope.get("headers", []):
        if key == name:
            return bytes(value).decode("latin-1")
    return ""


def check_origin(scope: dict[str, Any]) -> None:
    """A browser sends Origin; it must be the page's own origin (the Host it connected to)."""
    origin = _header(scope, b"origin")
    if not origin:  # not a browser: no ambient cookies to abuse
        return
    if urlsplit(origin).netloc.lower() != _header(scope, b"host").lower():
        raise Refused(CLOSE_POLICY, "cross-origin connection refused")


def console_user(tenant: Tenant, scope: dict[str, Any]) -> int:
    """The id of the signed-in console user this socket belongs to (raises Refused)."""
    session_key = parse_cookie(_header(scope, b"cookie")).get(settings.SESSION_COOKIE_NAME)
    if not session_key:
        raise Refused(CLOSE_POLICY, "not signed in to this console")
    with tenant_context(tenant):
        store = import_module(settings.SESSION_ENGINE).SessionStore(session_key=session_key)
        user = get_user(SimpleNamespace(session=store))  # type: ignore[arg-type]
        if not user.is_authenticated:
            raise Refused(CLOSE_POLICY, "not signed in to this console")
        if role_of(user) is None:
            raise Refused(CLOSE_POLICY, "this user has no console role here")
        user_id: int = user.pk
    return user_id


def parse_after(raw: str) -> int | None:
    if not raw:
        return None
    if not raw.isdigit():
        raise Refused(CLOSE_BAD_REQUEST, "after must be an event id (a whole number)")
    return int(raw)


@dataclass(frozen=True)
class CatchUp:
    events: list[dict[str, Any]]
    last: int | None
    more: bool


def catch_up(tenant: Tenant, after: int | None) -> CatchUp:
    with tenant_context(tenant):
        if after is None:
            last = DeliveryEvent.objects.aggregate(last=Max("id"))["last"]
            return CatchUp(events=[], last=last, more=False)
        ids = list(
            DeliveryEvent.objects.filter(id__gt=max(after - OVERLAP, 0))
            .order_by("id")
            .values_list("id", flat=True)[: OVERLAP + CATCH_UP_LIMIT + 1]
        )
        newer = [i for i in ids if i > after]
        more = len(newer) > CATCH_UP_LIMIT
        ids = [i for i in ids if i <= after] + newer[:CATCH_UP_LIMIT]
        events = live.event_rows(ids) if ids else []
    return CatchUp(events=events, last=ids[-1] if ids else after, more=more)


class ConsoleConsumer(TenantSocket):
    checked_at: float = 0.0

    async def connect(self) -> None:
        opened = await self.open_for_tenant()
        if opened is None:
            return
        tenant, params = opened
        try:
            check_origin(self.scope)
            after = parse_after(params.get("after", [""])[0])
            await database_sync_to_async(console_user)(tenant, self.scope)
        except Refused as refused:
            await self.refuse(refused)
            return
        self.checked_at = time.monotonic()
        # Join before reading what was missed: whatever commits in between arrives (perhaps twice).
        await self.join(live.tenant_group(tenant.schema_name))
        missed = await database_sync_to_async(catch_up)(tenant, after)
        step = live.PUBLISH_BATCH
        for start in range(0, len(missed.events), step):
            await self.send_json({"type": "events", "events": missed.events[start : start + step]})
        await self.send_json(
            {
                "type": "ready",
                "last": missed.last,
                "missed": sum(1 for e in missed.events if after is None or e["id"] > after),
                "more": missed.more,
            }
        )

    async def receive(
        self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any
    ) -> None:
        # The page only listens. A ping (every ~25 s) keeps proxies open and is when we check
        # that the session still holds: signed out, password changed or role removed ends it.
        if not text_data or '"ping"' not in text_data:
            return
        if time.monotonic() - self.checked_at > RECHECK_AFTER:
            try:
                await database_sync_to_async(console_user)(self.scope["tenant"], self.scope)
            except Refused as refused:
                await self.refuse(refused)
                return
            self.checked_at = time.monotonic()
        await self.send_json({"type": "pong"})

    # --- messages from the channel layer --------------------------------------------------------

    async def delivery_events(self, message: dict[str, Any]) -> None:
        await self.send_json({"type": "events", "events": message["events"]})

    async def broadcast_progress(self, message: dict[str, Any]) -> None:
        await self.send_json({"type": "broadcast", "broadcast": message["broadcast"]})
