"""The path of a notification: accept (write rows), enqueue (after commit), record events.

Other packages call `accept` and `enqueue`; nothing outside this package touches the models
of a delivery's state directly.
"""

import logging
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.utils import timezone
from django_tenants.utils import schema_context

from tenants.schemas import current_schema

from .compose import Source, render_content
from .links import recipient_token, tenant_url, unsubscribe_token
from .models import (
    Category,
    Channel,
    Delivery,
    DeliveryEvent,
    DeliveryStatus,
    Notification,
    Priority,
    Recipient,
)
from .preferences import service as categories
from .preferences.service import DEFAULT_CATEGORY

log = logging.getLogger(__name__)

QUEUE_FOR_PRIORITY: dict[str, str] = {
    Priority.CRITICAL.value: "critical",
    Priority.HIGH.value: "high",
    Priority.NORMAL.value: "default",
    Priority.BULK.value: "bulk",
}


@dataclass(frozen=True)
class RecipientSpec:
    external_id: str
    email: str | None = None
    phone: str | None = None
    locale: str | None = None


@dataclass(frozen=True)
class NotificationSpec:
    """A validated request: who, which channels, and the unrendered text for each channel."""

    recipient: RecipientSpec
    channels: Sequence[str]
    sources: Mapping[str, Source]
    data: dict[str, Any] = field(default_factory=dict)
    priority: str = Priority.NORMAL
    category: str = DEFAULT_CATEGORY
    template_key: str = ""
    locale: str = ""
    subject: str = ""
    body: str = ""


def accept(spec: NotificationSpec) -> Notification:
    """Write the notification and its deliveries in one transaction; enqueue after commit.

    Each delivery's content is rendered here, once. A delivery the recipient opted out of (or
    that has nowhere to go, like push without a subscription) is written as `suppressed` with
    the reason, never silently dropped.
    """
    with transaction.atomic():
        recipient = upsert_recipient(spec.recipient)
        category = categories.category(spec.category)
        notification = Notification.objects.create(
            recipient=recipient,
            category=category.key,
            template_key=spec.template_key,
            locale=spec.locale,
            priority=spec.priority,
            channels=list(spec.channels),
            subject=spec.subject,
            body=spec.body,
            data=spec.data,
        )
        link_vars = recipient_links(recipient, category)
        reasons = suppression_reasons(recipient, category, spec.channels)
        deliveries = []
        for channel in spec.channels:
            reason = reasons.get(channel)
            content = render_content(channel, spec.sources[channel], spec.data, link_vars)
            if channel == Channel.EMAIL and not category.required:
                content["list_unsubscribe"] = link_vars["unsubscribe_url"]
            deliveries.append(
                Delivery(
                    notification=notification,
                    channel=channel,
                    address=_address(recipient, channel),
                    status=DeliveryStatus.SUPPRESSED if reason else DeliveryStatus.QUEUED,
                    last_error=reason or "",
                    content=content,
                )
            )
        Delivery.objects.bulk_create(deliveries)
        record_events((d.id for d in deliveries if d.status == DeliveryStatus.QUEUED), DeliveryStatus.QUEUED)
        for d in deliveries:
            if d.status == DeliveryStatus.SUPPRESSED:
                record_events([d.id], DeliveryStatus.SUPPRESSED, d.last_error)
        ids = [str(d.id) for d in deliveries if d.status == DeliveryStatus.QUEUED]
        if ids:
            schema = current_schema()  # publish for this tenant, whatever is current at commit time
            transaction.on_commit(lambda: enqueue(ids, spec.priority, schema=schema))
    return notification


def suppression_reasons(recipient: Recipient, category: Category, channels: Sequence[str]) -> dict[str, str]:
    reasons = {
        channel: f"recipient opted out of {category.key!r} on {channel}"
        for channel in categories.opted_out_channels(recipient, category) & set(channels)
    }
    if Channel.PUSH in channels and Channel.PUSH not in reasons and not recipient.push_subscriptions.exists():
        reasons[Channel.PUSH] = "recipient has no push subscription"
    return reasons


def recipient_links(recipient: Recipient, category: Category) -> dict[str, str]:
    """The links every message may use; none to unsubscribe from a required category."""
    prefs = tenant_url(f"/u/preferences/?token={recipient_token(str(recipient.id))}")
    if category.required:
        return {"unsubscribe_url": prefs, "preferences_url": prefs}
    unsubscribe = tenant_url(f"/u/unsubscribe/{unsubscribe_token(str(recipient.id), category.key)}/")
    return {"unsubscribe_url": unsubscribe, "preferences_url": prefs}


def upsert_recipient(spec: RecipientSpec) -> Recipient:
    """Insert or update by external_id in one statement (safe under concurrent requests)."""
    given = {f: value for f in ("email", "phone", "locale") if (value := getattr(spec, f)) is not None}
    Recipient.objects.bulk_create(
        [Recipient(external_id=spec.external_id, updated_at=timezone.now(), **given)],
        update_conflicts=True,
        unique_fields=["external_id"],
        update_fields=["updated_at", *given],
    )
    # The object passed in keeps its own new id even when the row existed: read the real one.
    return Recipient.objects.get(external_id=spec.external_id)


def _address(recipient: Recipient, channel: str) -> str:
    if channel == Channel.EMAIL:
        return recipient.email
    if channel == Channel.SMS:
        return recipient.phone
    return str(recipient.id)


def enqueue(
    delivery_ids: list[str], priority: str, *, schema: str | None = None, countdown: float | None = None
) -> bool:
    """Hand deliveries to the send queue for their priority.

    The rows are already committed; if the broker can't take the message we log and return
    False, and the deliveries stay `queued` in the database for the sweeper to enqueue again.
    """
    from .tasks import send_deliveries

    queue = QUEUE_FOR_PRIORITY.get(priority, "default")
    try:
        with schema_context(schema or current_schema()):
            if countdown:
                send_deliveries.apply_async(args=(delivery_ids,), queue=queue, countdown=countdown)
            else:
                send_deliveries.apply_async(args=(delivery_ids,), queue=queue)
    except Exception:  # any publish failure: the database still has the work
        log.warning(
            "could not enqueue %d deliveries; left queued for the sweeper", len(delivery_ids), exc_info=True
        )
        return False
    return True


def record_events(delivery_ids: Iterable[uuid.UUID | str], status: str, detail: str = "") -> None:
    now = timezone.now()
    DeliveryEvent.objects.bulk_create(
        DeliveryEvent(delivery_id=delivery_id, status=status, detail=detail, created_at=now)
        for delivery_id in delivery_ids
    )


# Which state a delivery may move to from which: anything else is a late or repeated report.
ALLOWED_FROM: dict[str, frozenset[str]] = {
    DeliveryStatus.SENDING: frozenset({DeliveryStatus.QUEUED}),
    DeliveryStatus.QUEUED: frozenset({DeliveryStatus.SENDING}),
    DeliveryStatus.SENT: frozenset({DeliveryStatus.SENDING}),
    DeliveryStatus.DELIVERED: frozenset({DeliveryStatus.SENT}),
    DeliveryStatus.FAILED: frozenset({DeliveryStatus.QUEUED, DeliveryStatus.SENDING, DeliveryStatus.SENT}),
    DeliveryStatus.BOUNCED: frozenset({DeliveryStatus.SENT, DeliveryStatus.DELIVERED}),
    DeliveryStatus.SUPPRESSED: frozenset({DeliveryStatus.QUEUED}),
}


def transition(delivery_id: uuid.UUID | str, status: str, detail: str = "", **fields: Any) -> bool:
    """Move a delivery to `status` if the state machine allows it from where it is; record the event.

    Conditional UPDATE: of two concurrent reports only one moves the delivery. Returns whether
    this call moved it. Extra `fields` (provider_message_id, last_error...) are set with it.
    """
    now = timezone.now()
    extra = dict(fields)
    if status == DeliveryStatus.FAILED or status == DeliveryStatus.BOUNCED:
        extra.setdefault("last_error", detail)
    with transaction.atomic():
        moved = Delivery.objects.filter(id=delivery_id, status__in=ALLOWED_FROM[status]).update(
            status=status, updated_at=now, **extra
        )
        if moved:
            record_events([delivery_id], status, detail)
    return bool(moved)
