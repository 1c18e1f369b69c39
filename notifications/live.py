"""Delivery state changes, live: to the tenant's console (channel layer) and its webhooks.

Whoever writes DeliveryEvent rows calls `events_written(ids)` inside the writing transaction.
After that transaction commits, the new events are read back in one query (with their
delivery's notification, channel and broadcast) and published to the tenant's group
`tenant.<schema>` as one message per batch of up to PUBLISH_BATCH events: never a group_send per
delivery. Inside `batched()` (a send task wraps its whole run in it) everything committed is held
and published once when the scope ends, so a task that claims 100 deliveries, sends them and
records retries publishes one message, not one per transaction.

Broadcasts touched by a batch get their progress recounted every 1 to 5 seconds, by size
(`broadcast_progress_soon`), by a delayed task on the broadcast's own queue; the last change is
always followed by one more count, so a progress bar always ends at the truth.

All of this is best effort. The database is the truth: a page that missed a message catches
up from the DeliveryEvent table on reconnect (`/ws/console/?after=<event id>`).
"""

import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime
from typing import Any

from celery import shared_task
from django.db import connection, transaction

from tenants.redis_client import get_redis
from tenants.schemas import current_schema

log = logging.getLogger(__name__)

PUBLISH_BATCH = 1000
PROGRESS_INTERVAL_MS = 1000

_held: ContextVar[list[Any] | None] = ContextVar("herald_live_held", default=None)


def tenant_group(schema: str) -> str:
    return f"tenant.{schema}"


def publish(event_type: str, payload: dict[str, Any]) -> None:
    """Best effort: the database is the truth, and a page that missed this catches up from it."""
    from .realtime import publish_to_groups

    publish_to_groups([(tenant_group(current_schema()), {"type": event_type, **payload})])


# --- delivery events ----------------------------------------------------------------------------


Event = dict[str, Any]


def events_written(event_ids: Iterable[int], known: Iterable[Event] | None = None) -> None:
    """Publish these DeliveryEvent rows once the current transaction commits (see the module).

    A writer that already holds everything an event says (`event_json`) passes it as `known`
    and spares the read-back query; otherwise the events are read back by id.
    """
    items: list[int | Event] = list(known) if known is not None else [i for i in event_ids if i is not None]
    if not items:
        return

    def committed() -> None:
        held = _held.get()
        if held is not None:
            held.extend(items)
        else:
            publish_events(items)

    transaction.on_commit(committed)


def event_json(
    event_id: int,
    delivery_id: Any,
    notification_id: Any,
    broadcast_id: Any,
    channel: str,
    status: str,
    detail: str,
    created_at: datetime,
) -> Event:
    """An event as the console and webhooks see it."""
    return {
        "id": event_id,
        "delivery": str(delivery_id),
        "notification": str(notification_id),
        "broadcast": str(broadcast_id) if broadcast_id else None,
        "channel": channel,
        "status": status,
        "detail": detail,
        "at": created_at.isoformat(),
    }


@contextmanager
def batched() -> Iterator[None]:
    """Hold what commits inside this scope and publish it as one batch at its end."""
    if _held.get() is not None:  # already inside one: the outer scope publishes
        yield
        return
    token = _held.set([])
    try:
        yield
    finally:
        held = _held.get() or []
        _held.reset(token)
        if held:
            publish_events(held)


_EVENT_ROWS_SQL = """
    SELECT e.id, e.delivery_id, d.notification_id, n.broadcast_id, d.channel, e.status, e.detail,
           e.created_at
    FROM {events} e JOIN {deliveries} d ON d.id = e.delivery_id
    JOIN {notifications} n ON n.id = d.notification_id
    WHERE e.id = ANY(%s) ORDER BY e.id
"""


def event_rows(event_ids: list[int]) -> list[Event]:
    """The events as the console and webhooks see them, in id order (one query, no ORM: this
    runs after every batch of state changes)."""
    from .models import Delivery, DeliveryEvent, Notification

    quote = connection.ops.quote_name
    sql = _EVENT_ROWS_SQL.format(
        events=quote(DeliveryEvent._meta.db_table),
        deliveries=quote(Delivery._meta.db_table),
        notifications=quote(Notification._meta.db_table),
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [list(event_ids)])
        return [event_json(*row) for row in cursor.fetchall()]


def publish_events(items: list[int | Event]) -> None:
    """Send committed events on (console group, webhooks, progress), reading back those not known."""
    events = [item for item in items if isinstance(item, dict)]
    ids = sorted({item for item in items if not isinstance(item, dict)})
    if ids:
        try:
            events += event_rows(ids)
        except Exception:
            log.warning("live: could not read %d events back", len(ids), exc_info=True)
    if not events:
        return
    events.sort(key=lambda e: int(e["id"]))
    from .realtime import publish_to_groups

    group = tenant_group(current_schema())
    publish_to_groups(
        (group, {"type": "delivery.events", "events": events[start : start + PUBLISH_BATCH]})
        for start in range(0, len(events), PUBLISH_BATCH)
    )
    _to_webhooks(events)
    for broadcast_id in {e["broadcast"] for e in events if e["broadcast"]}:
        broadcast_progress_soon(broadcast_id)


def _to_webhooks(events: list[dict[str, Any]]) -> None:
    from .webhooks.service import on_delivery_events

    try:
        on_delivery_events(events)
    except Exception:  # it promises not to raise; a bug there must not fail a send
        log.warning("live: webhooks could not take %d events", len(events), exc_info=True)


# --- broadcast progress -------------------------------------------------------------------------


def broadcast_progress_soon(broadcast_id: str) -> None:
    """Count the broadcast's deliveries again shortly (progress_interval), unless a count is pending.

    The count (every delivery of the broadcast, by status) runs in a task on the broadcast's own
    queue: a bulk broadcast's counts use the bulk pool, never the capacity of another tenant's
    normal or critical sends (counting in the default pool held their sends back by a count's
    time, bench/noisy_neighbour.py). The pending task clears the key when it starts, so whatever
    commits after that schedules one more count: the last change is always followed by a count.
    """
    schema = current_schema()
    try:
        if not get_redis().set(_pending_key(schema, broadcast_id), 1, nx=True, px=PROGRESS_PENDING_MS):
            return
        from .models import Broadcast
        from .pipeline import QUEUE_FOR_PRIORITY

        row = Broadcast.objects.filter(pk=broadcast_id).values_list("priority", "recipient_count").first()
        priority, recipients = row or ("", 0)
        broadcast_progress.apply_async(
            args=(broadcast_id,),
            countdown=progress_interval(recipients),
            queue=QUEUE_FOR_PRIORITY.get(priority, "default"),
        )
    except Exception:
        log.warning("live: could not schedule progress of broadcast %s", broadcast_id, exc_info=True)


PROGRESS_PENDING_MS = 60_000  # a count lost with its message is retried after this


def progress_interval(recipients: int) -> float:
    """Seconds between counts: 1 s up to 20,000 recipients, then longer with the size, up to 5 s.

    A count reads every delivery of the broadcast, so its cost grows with the broadcast; a
    longer interval keeps the counting of a big one to a small, steady share of the database.
    """
    return min(5.0, max(PROGRESS_INTERVAL_MS / 1000, recipients / 20_000))


def _pending_key(schema: str, broadcast_id: str) -> str:
    return f"herald:bprog-pending:{schema}:{broadcast_id}"


def publish_broadcast_progress(broadcast_id: str) -> None:
    from .fanout import progress
    from .models import Broadcast

    broadcast = Broadcast.objects.filter(pk=broadcast_id).first()
    if broadcast is not None:
        publish("broadcast.progress", {"broadcast": progress(broadcast, fresh=True)})


@shared_task(name="notifications.broadcast_progress", ignore_result=True, soft_time_limit=30, time_limit=45)
def broadcast_progress(broadcast_id: str) -> None:
    """The broadcast's progress, counted and published (see broadcast_progress_soon)."""
    get_redis().delete(_pending_key(current_schema(), broadcast_id))
    publish_broadcast_progress(broadcast_id)
