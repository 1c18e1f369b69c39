"""The path of a notification: accept (write rows), enqueue (after commit), record events.

Other packages call `accept` and `enqueue`; nothing outside this package touches the models
of a delivery's state directly.
"""

import logging
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import connection, transaction
from django.utils import timezone
from django_tenants.utils import schema_context
from psycopg2.extras import execute_values

from tenants.schemas import current_schema

from .compose import ComposeError, Source, render_content
from .links import recipient_token, tenant_url, unsubscribe_token
from .models import (
    Broadcast,
    Category,
    Channel,
    Delivery,
    DeliveryEvent,
    DeliveryStatus,
    Notification,
    Preference,
    Priority,
    PushSubscription,
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
    """Write one notification and its deliveries in one transaction; enqueue after commit."""
    (notification,) = accept_many([spec])
    return notification


def accept_many(specs: Sequence[NotificationSpec], broadcast: Broadcast | None = None) -> list[Notification]:
    """Write notifications and their deliveries in one transaction, in bulk; enqueue after commit.

    A handful of statements whatever the number of notifications: recipients upserted in one
    INSERT .. ON CONFLICT, preferences and push subscriptions read in one query each, rows
    written with bulk inserts. Each delivery's content is rendered here, once. A delivery the
    recipient opted out of (or with nowhere to go, like push without a subscription) is written
    as `suppressed` with the reason; one whose content can't be rendered for this recipient
    (a broadcast's per-recipient data) as `failed` with the reason. Nothing is silently dropped.
    """
    if not specs:
        return []
    with transaction.atomic():
        recipients = upsert_recipients([spec.recipient for spec in specs])
        cats = {key: categories.category(key) for key in {spec.category for spec in specs}}
        opted_out = _opted_out({r.id for r in recipients.values()}, cats.values())
        needs_push = {recipients[s.recipient.external_id].id for s in specs if Channel.PUSH in s.channels}
        with_push = set(
            PushSubscription.objects.filter(recipient_id__in=needs_push).values_list(
                "recipient_id", flat=True
            )
        )
        notifications: list[Notification] = []
        deliveries: list[Delivery] = []
        for spec in specs:
            recipient = recipients[spec.recipient.external_id]
            category = cats[spec.category]
            notification = Notification(
                recipient=recipient,
                category=category.key,
                template_key=spec.template_key,
                locale=spec.locale,
                priority=spec.priority,
                channels=list(spec.channels),
                subject=spec.subject,
                body=spec.body,
                data=spec.data,
                broadcast=broadcast,
            )
            notifications.append(notification)
            links = recipient_links(recipient, category)
            for channel in spec.channels:
                deliveries.append(
                    _delivery(notification, recipient, category, channel, spec, links, opted_out, with_push)
                )
        Notification.objects.bulk_create(notifications)
        statuses: dict[uuid.UUID, list[str]] = {}
        for d in deliveries:
            statuses.setdefault(d.notification.id, []).append(d.status)
        for n in notifications:  # what the API answers right away
            n.initial_status = Notification.summarize(statuses.get(n.id, []))
        Delivery.objects.bulk_create(deliveries)
        now = timezone.now()
        DeliveryEvent.objects.bulk_create(
            DeliveryEvent(delivery_id=d.id, status=d.status, detail=d.last_error, created_at=now)
            for d in deliveries
        )
        by_priority: dict[str, list[str]] = {}
        for d in deliveries:
            if d.status == DeliveryStatus.QUEUED:
                by_priority.setdefault(d.notification.priority, []).append(str(d.id))
        if by_priority:
            schema = current_schema()  # publish for this tenant, whatever is current at commit time
            transaction.on_commit(lambda: enqueue_all(by_priority, schema=schema))
    return notifications


def _delivery(
    notification: Notification,
    recipient: Recipient,
    category: Category,
    channel: str,
    spec: NotificationSpec,
    links: dict[str, str],
    opted_out: set[tuple[uuid.UUID, int, str]],
    with_push: set[uuid.UUID],
) -> Delivery:
    content: dict[str, str] = {}
    status, reason = delivery_status(recipient, category, channel, opted_out, with_push)
    try:
        content = render_content(channel, spec.sources[channel], spec.data, links)
    except ComposeError as exc:
        if status == DeliveryStatus.QUEUED:
            status, reason = DeliveryStatus.FAILED, f"{exc.field}: {exc.message}"
    if channel == Channel.EMAIL and not category.required:
        content["list_unsubscribe"] = links["unsubscribe_url"]
    return Delivery(
        notification=notification,
        channel=channel,
        address=_address(recipient, channel),
        status=status,
        last_error=reason,
        content=content,
    )


def delivery_status(
    recipient: Recipient,
    category: Category,
    channel: str,
    opted_out: set[tuple[uuid.UUID, int, str]],
    with_push: set[uuid.UUID],
) -> tuple[str, str]:
    """(status, reason) a new delivery starts in: queued, or suppressed or failed with why."""
    if (recipient.id, category.pk, channel) in opted_out:
        return DeliveryStatus.SUPPRESSED, f"recipient opted out of {category.key!r} on {channel}"
    if channel == Channel.PUSH and recipient.id not in with_push:
        return DeliveryStatus.SUPPRESSED, "recipient has no push subscription"
    if not _address(recipient, channel):
        return DeliveryStatus.FAILED, f"recipient has no {ADDRESS_FIELD[channel]} for the {channel} channel"
    return DeliveryStatus.QUEUED, ""


ADDRESS_FIELD: dict[str, str] = {"email": "email", "sms": "phone", "push": "id", "in_app": "id"}


def _opted_out(recipient_ids: set[uuid.UUID], cats: Iterable[Category]) -> set[tuple[uuid.UUID, int, str]]:
    optional = [c.pk for c in cats if not c.required]
    if not optional or not recipient_ids:
        return set()
    rows = Preference.objects.filter(recipient_id__in=recipient_ids, category_id__in=optional, enabled=False)
    return set(rows.values_list("recipient_id", "category_id", "channel"))


def recipient_links(recipient: Recipient, category: Category) -> dict[str, str]:
    """The links every message may use; none to unsubscribe from a required category."""
    prefs = tenant_url(f"/u/preferences/?token={recipient_token(str(recipient.id))}")
    if category.required:
        return {"unsubscribe_url": prefs, "preferences_url": prefs}
    unsubscribe = tenant_url(f"/u/unsubscribe/{unsubscribe_token(str(recipient.id), category.key)}/")
    return {"unsubscribe_url": unsubscribe, "preferences_url": prefs}


def upsert_recipient(spec: RecipientSpec) -> Recipient:
    return upsert_recipients([spec])[spec.external_id]


_UPSERT_SQL = """
    INSERT INTO {table} (id, external_id, email, phone, locale, created_at, updated_at) VALUES %s
    ON CONFLICT (external_id) DO UPDATE SET
        email = CASE WHEN EXCLUDED.email <> '' THEN EXCLUDED.email ELSE {table}.email END,
        phone = CASE WHEN EXCLUDED.phone <> '' THEN EXCLUDED.phone ELSE {table}.phone END,
        locale = CASE WHEN EXCLUDED.locale <> '' THEN EXCLUDED.locale ELSE {table}.locale END,
        updated_at = EXCLUDED.updated_at
    RETURNING id, external_id, email, phone, locale
"""


def upsert_recipients(specs: Sequence[RecipientSpec]) -> dict[str, Recipient]:
    """Insert or update recipients by external_id in one statement (safe under concurrency).

    A field not given keeps its stored value. The same external_id twice: the later wins.
    """
    merged: dict[str, dict[str, str]] = {}
    for spec in specs:
        row = merged.setdefault(spec.external_id, {"email": "", "phone": "", "locale": ""})
        for name in ("email", "phone", "locale"):
            if value := getattr(spec, name):
                row[name] = value
    now = timezone.now()
    values = [
        (uuid.uuid4(), external_id, f["email"], f["phone"], f["locale"], now, now)
        for external_id, f in merged.items()
    ]
    table = connection.ops.quote_name(Recipient._meta.db_table)
    with connection.cursor() as cursor:
        rows = execute_values(
            cursor.cursor, _UPSERT_SQL.format(table=table), values, page_size=1000, fetch=True
        )
    return {
        external_id: Recipient(id=rid, external_id=external_id, email=email, phone=phone, locale=locale)
        for rid, external_id, email, phone, locale in rows
    }


def _address(recipient: Recipient, channel: str) -> str:
    if channel == Channel.EMAIL:
        return recipient.email
    if channel == Channel.SMS:
        return recipient.phone
    return str(recipient.id)


def enqueue_all(by_priority: Mapping[str, list[str]], *, schema: str | None = None, batch: int = 100) -> None:
    """Enqueue many deliveries, `batch` ids per message (never a message per delivery).

    Bulk batches go to the fair dispatcher when one is running (notifications.dispatch).
    """
    from . import dispatch

    schema = schema or current_schema()
    for priority, ids in by_priority.items():
        batches = [ids[start : start + batch] for start in range(0, len(ids), batch)]
        if dispatch.hold(schema, priority, batches):
            continue
        for chunk in batches:
            enqueue(chunk, priority, schema=schema)


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
    # From sending too: a provider's report can arrive before the worker has recorded `sent`.
    DeliveryStatus.DELIVERED: frozenset({DeliveryStatus.SENDING, DeliveryStatus.SENT}),
    DeliveryStatus.FAILED: frozenset({DeliveryStatus.QUEUED, DeliveryStatus.SENDING, DeliveryStatus.SENT}),
    DeliveryStatus.BOUNCED: frozenset(
        {DeliveryStatus.SENDING, DeliveryStatus.SENT, DeliveryStatus.DELIVERED}
    ),
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
