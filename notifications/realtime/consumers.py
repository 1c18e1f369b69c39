"""The end user's live feed: `wss://<tenant domain>/ws/feed/?token=<recipient token>[&after=...]`.

The protocol, server to client (JSON text frames):

    {"type": "feed.item", "item": {...}, "unread": n}   a new item (the same shape as over REST)
    {"type": "feed.counts", "unread": n, "total": n}    the counts changed (read in another tab...)
    {"type": "feed.ready", "unread": n, "missed": k, "more": bool}
                                                        subscribed; sent after the missed items
    {"type": "pong"}                                    answer to {"type": "ping"}

On connect with `after=<item id>` or `after=<ISO 8601 time>` the items created since then are
sent first (at most CATCH_UP_LIMIT, oldest first; `more` says the client should reload the feed
over REST). The socket joins the recipient's group before reading them, so nothing created in
between is lost; an item that arrives both ways is sent once.

Close codes: 4400 a bad `after`; 4401 a missing, forged or expired token, or one of another
tenant (the reason says which) -- get a new token, don't reconnect with this one; 4404 (during
the handshake, seen as HTTP 403) a host that is no active tenant's.
"""

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.db.models import Q
from django.utils.dateparse import parse_datetime
from django_tenants.utils import tenant_context

from tenants.models import Tenant

from .. import feed
from ..feed.serializers import item_json
from ..links import BadToken, read_recipient_token
from ..models import FeedStatus, InAppMessage, Recipient
from . import feed_group

CATCH_UP_LIMIT = 100

CLOSE_BAD_REQUEST = 4400
CLOSE_UNAUTHORIZED = 4401
CLOSE_UNKNOWN_HOST = 4404


class Refused(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass(frozen=True)
class CatchUp:
    items: list[dict[str, Any]]
    unread: int
    more: bool


def recipient_for_token(tenant: Tenant, token: str) -> str:
    """The recipient id the token names, checked against `tenant` (raises Refused)."""
    if not token:
        raise Refused(CLOSE_UNAUTHORIZED, "token missing: connect to /ws/feed/?token=<recipient token>")
    with tenant_context(tenant):
        try:
            claim = read_recipient_token(token)
        except BadToken as exc:
            raise Refused(CLOSE_UNAUTHORIZED, str(exc)) from None
        if not Recipient.objects.filter(id=claim.recipient_id).exists():
            raise Refused(CLOSE_UNAUTHORIZED, "recipient no longer exists")
    return claim.recipient_id


def parse_after(after: str) -> uuid.UUID | datetime | None:
    """`after` is an item id or an ISO 8601 time (raises Refused otherwise)."""
    if not after:
        return None
    try:
        return uuid.UUID(after)
    except ValueError:
        pass
    # A '+' of a time zone offset that was not URL-encoded arrives as a space.
    moment = parse_datetime(after.replace(" ", "+"))
    if moment is None:
        raise Refused(CLOSE_BAD_REQUEST, "after must be an item id or an ISO 8601 time")
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def catch_up(tenant: Tenant, recipient_id: str, after: uuid.UUID | datetime | None) -> CatchUp:
    """The items created after `after` (none if it is None), and the unread count."""
    with tenant_context(tenant):
        unread = feed.counts(recipient_id)["unread"]
        if after is None:
            return CatchUp(items=[], unread=unread, more=False)
        mine = InAppMessage.objects.filter(recipient_id=recipient_id).exclude(status=FeedStatus.ARCHIVED)
        if isinstance(after, uuid.UUID):
            ref = InAppMessage.objects.filter(recipient_id=recipient_id, id=after).first()
            if ref is None:  # not theirs, or gone: nothing to anchor on; the client reloads
                return CatchUp(items=[], unread=unread, more=True)
            newer = mine.filter(
                Q(created_at__gt=ref.created_at) | Q(created_at=ref.created_at, id__gt=ref.id)
            )
        else:
            newer = mine.filter(created_at__gt=after)
        found = list(newer.order_by("-created_at", "-id")[: CATCH_UP_LIMIT + 1])
    return CatchUp(
        items=[item_json(item) for item in reversed(found[:CATCH_UP_LIMIT])],
        unread=unread,
        more=len(found) > CATCH_UP_LIMIT,
    )


class TenantSocket(AsyncJsonWebsocketConsumer):  # type: ignore[misc]  # channels ships no types
    """A socket that listens to one channel-layer group of the tenant it connected to.

    It accepts before checking anything, so that a refusal carries a close code and a reason
    the browser can read, and leaves its group when it closes.
    """

    group: str | None = None

    async def open_for_tenant(self) -> tuple[Tenant, dict[str, list[str]]] | None:
        """Accept; the tenant and the query parameters, or None (closed) without a tenant."""
        await self.accept()
        tenant: Tenant | None = self.scope.get("tenant")
        if tenant is None:  # routed without TenantFromHostMiddleware
            await self.close(code=CLOSE_UNKNOWN_HOST, reason="no tenant for this host")
            return None
        return tenant, parse_qs(self.scope.get("query_string", b"").decode("latin-1"))

    async def refuse(self, refused: Refused) -> None:
        await self.close(code=refused.code, reason=refused.reason)

    async def join(self, group: str) -> None:
        self.group = group
        await self.channel_layer.group_add(group, self.channel_name)

    async def disconnect(self, code: int) -> None:
        if self.group is not None:
            await self.channel_layer.group_discard(self.group, self.channel_name)
            self.group = None


class FeedConsumer(TenantSocket):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sent_ids: set[str] = set()

    async def connect(self) -> None:
        opened = await self.open_for_tenant()
        if opened is None:
            return
        tenant, params = opened
        try:
            after = parse_after(params.get("after", [""])[0])
            recipient_id = await database_sync_to_async(recipient_for_token)(
                tenant, params.get("token", [""])[0]
            )
        except Refused as refused:
            await self.refuse(refused)
            return
        await self.join(feed_group(tenant.schema_name, recipient_id))
        missed = await database_sync_to_async(catch_up)(tenant, recipient_id, after)
        for item in missed.items:
            self.sent_ids.add(str(item["id"]))
            await self.send_json({"type": "feed.item", "item": item, "unread": missed.unread})
        await self.send_json(
            {"type": "feed.ready", "unread": missed.unread, "missed": len(missed.items), "more": missed.more}
        )

    async def receive(
        self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any
    ) -> None:
        # Clients only listen; marking read goes over REST. A ping gets a pong (keeps proxies open).
        if text_data and '"ping"' in text_data:
            await self.send_json({"type": "pong"})

    # --- messages from the channel layer --------------------------------------------------------

    async def feed_item(self, event: dict[str, Any]) -> None:
        item = event["item"]
        if str(item.get("id")) in self.sent_ids:  # already sent while catching up
            return
        await self.send_json({"type": "feed.item", "item": item, "unread": event.get("unread")})

    async def feed_counts(self, event: dict[str, Any]) -> None:
        await self.send_json(
            {"type": "feed.counts", "unread": event.get("unread"), "total": event.get("total")}
        )
