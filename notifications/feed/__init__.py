"""A recipient's in-app feed: its items, their read state and the badge count.

The in-app provider (notifications.providers.inapp) adds items; the REST views here (for the
tenant's backend under /api/v1/recipients/<external_id>/feed, for the end user under /u/feed/)
read and mark them; the WebSocket consumer (notifications.realtime) pushes new ones live.
Every change of a feed is published to the recipient's open WebSockets after it commits, so
badges in other tabs follow.
"""

import uuid
from collections.abc import Iterable
from typing import Any

from django.db import transaction
from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from tenants.schemas import current_schema

from ..models import FeedStatus, InAppMessage, Recipient
from ..realtime import feed_group, publish_to_groups

VISIBLE = (FeedStatus.UNREAD, FeedStatus.READ)  # what a feed shows unless archived items are asked for


def items(recipient: Recipient, status: str | None = None) -> QuerySet[InAppMessage]:
    """The recipient's items, newest first: one status, or (None) everything not archived."""
    wanted = [status] if status else list(VISIBLE)
    return InAppMessage.objects.filter(recipient=recipient, status__in=wanted).order_by("-created_at", "-id")


def counts(recipient_id: uuid.UUID | str) -> dict[str, int]:
    """{"unread": n, "total": n}: total counts the items not archived."""
    row = InAppMessage.objects.filter(recipient_id=recipient_id, status__in=VISIBLE).aggregate(
        unread=Count("id", filter=Q(status=FeedStatus.UNREAD)), total=Count("id")
    )
    return {"unread": int(row["unread"] or 0), "total": int(row["total"] or 0)}


def unread_counts(recipient_ids: Iterable[uuid.UUID | str]) -> dict[str, int]:
    """Unread items per recipient id (as str), in one query."""
    ids = {str(r) for r in recipient_ids}
    rows = (
        InAppMessage.objects.filter(recipient_id__in=ids, status=FeedStatus.UNREAD)
        .values("recipient_id")
        .annotate(n=Count("id"))
    )
    found = {str(row["recipient_id"]): int(row["n"]) for row in rows}
    return {r: found.get(r, 0) for r in ids}


def set_status(item: InAppMessage, status: str) -> InAppMessage:
    """Mark one item unread, read or archived; read_at is when it was first read."""
    fields = ["status"]
    item.status = status
    if status == FeedStatus.READ and item.read_at is None:
        item.read_at = timezone.now()
        fields.append("read_at")
    elif status == FeedStatus.UNREAD and item.read_at is not None:
        item.read_at = None
        fields.append("read_at")
    item.save(update_fields=fields)
    announce_counts(item.recipient_id)
    return item


def mark_all_read(recipient: Recipient) -> int:
    """Mark every unread item read; returns how many changed."""
    updated = InAppMessage.objects.filter(recipient=recipient, status=FeedStatus.UNREAD).update(
        status=FeedStatus.READ, read_at=timezone.now()
    )
    if updated:
        announce_counts(recipient.id)
    return updated


def announce_counts(recipient_id: uuid.UUID | str) -> None:
    """Tell the recipient's open feeds the new unread count, once the change is committed."""
    schema = current_schema()

    def publish() -> None:
        message: dict[str, Any] = {"type": "feed.counts", **counts(recipient_id)}
        publish_to_groups([(feed_group(schema, recipient_id), message)])

    transaction.on_commit(publish)
