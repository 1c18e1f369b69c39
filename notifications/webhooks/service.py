"""What the rest of Herald calls: `on_delivery_events` after events are committed.

The tenant's active endpoints (ids and status filters only, no secrets) are cached in each
process (tenants.process_cache), so a batch of events of a tenant without webhooks costs neither a
query nor a Redis round trip (a Redis cache read was a fiftieth of an API request). Any change to
an endpoint drops this process's entries at once and, when its transaction commits, every other
process's within TENANT_CACHE_CHECK_INTERVAL (1 s): a new or re-enabled endpoint gets the events
committed from about a second after it was saved (those another process handles in that second
are not written for it). An entry is read again after ENDPOINTS_MAX_AGE in any case, which bounds
a change whose invalidation could not reach Redis.
"""

import json
import logging
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models.signals import post_delete, post_save
from django.utils import timezone
from django_tenants.utils import schema_context
from psycopg2.extras import execute_values

from notifications.models import DeliveryEvent
from tenants.process_cache import ProcessCache
from tenants.schemas import current_schema

from .models import Endpoint, MessageStatus, WebhookMessage

log = logging.getLogger(__name__)

ENDPOINTS_MAX_AGE = 30.0  # seconds
TEST_EVENT_TYPE = "webhook.test"
Endpoints = list[tuple[str, frozenset[str]]]
_endpoints: ProcessCache[str, Endpoints] = ProcessCache(
    "herald:webhooks:endpoints:generation", max_age=ENDPOINTS_MAX_AGE, max_entries=10_000
)


def active_endpoints(*, refresh: bool = False) -> Endpoints:
    """(endpoint id, statuses it wants) for each active endpoint of the current tenant; with
    `refresh`, read from the database again."""
    if refresh:
        _endpoints.clear()

    def load() -> Endpoints:
        rows = Endpoint.objects.filter(is_active=True).values_list("id", "statuses")
        return [(str(eid), frozenset(statuses)) for eid, statuses in rows]

    return _endpoints.get_or_load(current_schema(), load) or []


def forget_endpoints() -> None:
    """Drop the cached endpoints: this process's at once, every process's after commit (one
    generation for every tenant: endpoints change rarely)."""
    _endpoints.clear()
    transaction.on_commit(_endpoints.invalidate)


def _endpoint_changed(sender: Any, **_: Any) -> None:
    forget_endpoints()


def connect_signals() -> None:
    post_save.connect(_endpoint_changed, sender=Endpoint, dispatch_uid="webhooks.endpoint_saved")
    post_delete.connect(_endpoint_changed, sender=Endpoint, dispatch_uid="webhooks.endpoint_deleted")


def payload(event: dict[str, Any]) -> dict[str, Any]:
    """The JSON a backend receives for one delivery event."""
    status = str(event["status"])
    return {
        "id": f"evt_{event['id']}",
        "type": f"delivery.{status}",
        "created_at": event["at"],
        "data": {
            "delivery": event["delivery"],
            "notification": event["notification"],
            "broadcast": event.get("broadcast"),
            "channel": event["channel"],
            "status": status,
            "detail": event.get("detail") or "",
        },
    }


def encode(body: dict[str, Any]) -> str:
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False)


def on_delivery_events(events: list[dict[str, Any]]) -> int:
    """Write a webhook message per active endpoint that wants each event; enqueue one send task.

    Called inside the tenant's schema after the events' transaction committed. Never raises: a
    problem is logged and 0 returned (the events themselves are safe in the database). Returns
    how many messages were written; an event already written for an endpoint is not written twice.
    """
    try:
        if not events:
            return 0
        endpoints = active_endpoints()
        if not endpoints:
            return 0
        try:
            ids = _write(events, endpoints)
        except IntegrityError:
            # An endpoint was deleted since it was cached: read them again and retry once.
            ids = _write(events, active_endpoints(refresh=True))
        if ids:
            enqueue(ids)
        return len(ids)
    except Exception:
        log.exception("webhooks: could not write messages for %d delivery events", len(events))
        return 0


_INSERT_SQL = """
    INSERT INTO {table} (endpoint_id, event_id, event_type, body, status, attempts, round_base,
                         next_attempt_at, last_error, created_at, updated_at)
    VALUES %s
    ON CONFLICT (endpoint_id, event_id) DO NOTHING
    RETURNING id
"""


def _write(events: Sequence[dict[str, Any]], endpoints: Sequence[tuple[str, frozenset[str]]]) -> list[int]:
    now = timezone.now()
    rows = []
    for event in events:
        status = str(event["status"])
        wanted = [eid for eid, statuses in endpoints if status in statuses]
        if not wanted:
            continue
        body = payload(event)
        text = encode(body)
        for endpoint_id in wanted:
            rows.append(
                (endpoint_id, body["id"], body["type"], text, MessageStatus.PENDING, 0, 0, now, "", now, now)
            )
    if not rows:
        return []
    table = connection.ops.quote_name(WebhookMessage._meta.db_table)
    with transaction.atomic(), connection.cursor() as cursor:
        result = execute_values(
            cursor.cursor, _INSERT_SQL.format(table=table), rows, page_size=1000, fetch=True
        )
    return [row[0] for row in result]


def enqueue(message_ids: list[int], countdown: float | None = None, schema: str | None = None) -> bool:
    """Publish one send task for these messages (after the current transaction commits).

    If the broker can't take it the messages are still due in the database, and the beat task
    `webhooks.send_due` finds them.
    """
    from .tasks import send_messages

    schema = schema or current_schema()

    def publish() -> None:
        try:
            with schema_context(schema):
                options: dict[str, Any] = {"queue": settings.WEBHOOKS["queue"]}
                if countdown:
                    options["countdown"] = countdown
                send_messages.apply_async(args=(message_ids,), **options)
        except Exception:
            log.warning(
                "webhooks: could not enqueue %d messages; left for send_due", len(message_ids), exc_info=True
            )

    transaction.on_commit(publish)
    return True


def events_from_rows(rows: Iterable[DeliveryEvent]) -> list[dict[str, Any]]:
    """The event dicts `on_delivery_events` takes, from DeliveryEvent rows (with their delivery and
    notification loaded: `select_related("delivery__notification")`)."""
    return [
        {
            "id": e.id,
            "delivery": str(e.delivery_id),
            "notification": str(e.delivery.notification_id),
            "broadcast": str(e.delivery.notification.broadcast_id)
            if e.delivery.notification.broadcast_id
            else None,
            "channel": e.delivery.channel,
            "status": e.status,
            "detail": e.detail,
            "at": e.created_at.isoformat(),
        }
        for e in rows
    ]


def send_test_event(endpoint: Endpoint) -> WebhookMessage:
    """A `webhook.test` message to one endpoint, whatever its filter, sent right away."""
    event_id = f"evt_test_{uuid.uuid4().hex}"
    body = {
        "id": event_id,
        "type": TEST_EVENT_TYPE,
        "created_at": timezone.now().isoformat(),
        "data": {"endpoint": str(endpoint.id), "message": "A test event sent from the Herald console."},
    }
    message = WebhookMessage.objects.create(
        endpoint=endpoint,
        event_id=event_id,
        event_type=TEST_EVENT_TYPE,
        body=encode(body),
        next_attempt_at=timezone.now(),
    )
    enqueue([message.id])
    return message


def resend(message: WebhookMessage) -> None:
    """Send a delivered or failed message again, with a new round of retries."""
    now = timezone.now()
    WebhookMessage.objects.filter(id=message.id).exclude(status=MessageStatus.PENDING).update(
        status=MessageStatus.PENDING, round_base=message.attempts, next_attempt_at=now, updated_at=now
    )
    enqueue([message.id])


def delete_endpoint(endpoint: Endpoint) -> None:
    """An endpoint with its messages and their attempts (in bulk, not row by row).

    A send task may be logging a try of one of its messages at this moment, and the live stream
    may be writing new messages for it: the foreign keys are checked at commit, so a row they add
    after our deletes would fail the whole delete. Locking the endpoint (which a new message's key
    check needs) and then its messages (which a try's update holds) first makes both wait for us
    or finish before we look.
    """
    from .models import WebhookAttempt

    with transaction.atomic():
        list(Endpoint.objects.select_for_update().filter(pk=endpoint.pk).values_list("pk", flat=True))
        list(
            WebhookMessage.objects.select_for_update().filter(endpoint=endpoint).values_list("id", flat=True)
        )
        WebhookAttempt.objects.filter(message__endpoint=endpoint).delete()
        WebhookMessage.objects.filter(endpoint=endpoint).delete()
        endpoint.delete()
