"""The path of a notification: accept (write rows), enqueue (after commit), record events.

Other packages call `accept` and `enqueue`; nothing outside this package touches the models
of a delivery's state directly.
"""

import logging
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.utils import timezone
from kombu.exceptions import OperationalError

from .models import Channel, Delivery, DeliveryEvent, DeliveryStatus, Notification, Priority, Recipient

log = logging.getLogger(__name__)

QUEUE_FOR_PRIORITY = {
    Priority.CRITICAL: "critical",
    Priority.HIGH: "high",
    Priority.NORMAL: "default",
    Priority.BULK: "bulk",
}


@dataclass(frozen=True)
class RecipientSpec:
    external_id: str
    email: str | None = None
    phone: str | None = None


@dataclass(frozen=True)
class NotificationSpec:
    recipient: RecipientSpec
    channels: Sequence[str]
    body: str
    subject: str = ""
    data: dict[str, Any] | None = None
    priority: str = Priority.NORMAL
    category: str = "general"


def accept(spec: NotificationSpec) -> Notification:
    """Write the notification and its deliveries in one transaction; enqueue after commit."""
    with transaction.atomic():
        recipient = upsert_recipient(spec.recipient)
        notification = Notification.objects.create(
            recipient=recipient,
            category=spec.category,
            priority=spec.priority,
            channels=list(spec.channels),
            subject=spec.subject,
            body=spec.body,
            data=spec.data or {},
        )
        deliveries = [
            Delivery(notification=notification, channel=channel, address=_address(recipient, channel))
            for channel in spec.channels
        ]
        Delivery.objects.bulk_create(deliveries)
        record_events((d.id for d in deliveries), DeliveryStatus.QUEUED)
        ids = [str(d.id) for d in deliveries]
        transaction.on_commit(lambda: enqueue(ids, spec.priority))
    return notification


def upsert_recipient(spec: RecipientSpec) -> Recipient:
    """Insert or update by external_id in one statement (safe under concurrent requests)."""
    given = {field: value for field in ("email", "phone") if (value := getattr(spec, field)) is not None}
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
    return recipient.external_id


def enqueue(delivery_ids: list[str], priority: str) -> bool:
    """Hand deliveries to the send queue for their priority.

    The rows are already committed; if the broker is unreachable we log and return False, and
    the deliveries stay `queued` in the database for the sweeper to enqueue again.
    """
    from .tasks import send_deliveries

    queue = QUEUE_FOR_PRIORITY.get(Priority(priority), "default")
    try:
        send_deliveries.apply_async(args=(delivery_ids,), queue=queue)
    except OperationalError:
        log.warning("broker unreachable: %d deliveries left queued for the sweeper", len(delivery_ids))
        return False
    return True


def record_events(delivery_ids: Iterable[uuid.UUID | str], status: str, detail: str = "") -> None:
    now = timezone.now()
    DeliveryEvent.objects.bulk_create(
        DeliveryEvent(delivery_id=delivery_id, status=status, detail=detail, created_at=now)
        for delivery_id in delivery_ids
    )
