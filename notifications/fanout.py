"""Broadcasts: one message to a topic or an inline list of up to 100,000 recipients.

The request writes the Broadcast and, for an inline list, its chunks of CHUNK_SIZE recipients;
nothing else. After commit a Celery chord fans out: one task per chunk writes that chunk's
notifications and deliveries in one transaction (pipeline.accept_many: a handful of bulk
statements) and enqueues their sends, SEND_BATCH deliveries per message; the chord's callback marks
the broadcast fanned out. A chunk is done exactly once (its row is locked and flagged in the
same transaction as its writes), so a repeated task or a sweeper re-run never doubles a
notification. Progress is read from the deliveries themselves and pushed to the tenant's
channel-layer group as chunks finish.
"""

import json
import logging
import time
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any

import phonenumbers
import redis
from celery import chain, chord, shared_task
from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models import Count, Max
from django.utils import timezone
from django_tenants.utils import schema_context

from tenants.redis_client import get_redis
from tenants.schemas import current_schema

from . import live, urgency
from .compose import ComposeError, SharedContent, Source, render_content, shared_mark
from .ids import new_id_str
from .links import RecipientLinks
from .models import (
    Broadcast,
    BroadcastChunk,
    BroadcastStatus,
    Channel,
    Delivery,
    DeliveryEvent,
    DeliveryStatus,
    Notification,
    Topic,
    TopicSubscription,
)
from .pipeline import (
    BULK_QUEUE,
    QUEUE_FOR_PRIORITY,
    NotificationSpec,
    RecipientSpec,
    _address,
    delivery_status,
    enqueue_all,
    upsert_and_read,
)
from .preferences import service as categories
from .recipients import spec_of

log = logging.getLogger(__name__)

# Recipients per chunk (one task, one transaction). Smaller chunks let bulk work step aside for
# urgent work more often (notifications.urgency yields between chunks): with 1,000 another
# tenant's critical p99 was 4.9x its value alone during a 100,000-recipient fan-out, with 250
# 2.8x (500: 3.9x; bench/noisy_neighbour.py, back to back), for about a tenth of the broadcast
# throughput (bench/broadcast.py: 1,193 deliveries/s against 1,335).
CHUNK_SIZE = 250
# Deliveries per send task: a whole chunk's. Each task has fixed costs (its message, claim,
# rate-limit count, provider resolution, results and live message): 100 + 100 + 50 cost a third
# more tasks than 125 + 125, and one of 250 in turn sent 3.5 points more of the baseline's
# throughput than two of 125, with the other tenant's p99 about the same (docs/delivery-engine.md).
SEND_BATCH = CHUNK_SIZE
LINK_LENGTH_BOUND = 2048  # characters: no link Herald signs comes near it
MAX_RECIPIENTS = 100_000
# Chunks are fanned out in this many sequential lanes (a chord over chains): a lane's next
# chunk is published when its previous one has committed, behind the sends that one released,
# so the bulk pool alternates between writing and sending and the first mail leaves within a
# chunk's time of the POST instead of after the whole fan-out.
FAN_OUT_LANES = 4


def message_of(spec: NotificationSpec) -> dict[str, Any]:
    """A validated message (without recipient) as JSON for Broadcast.message."""
    return {
        "channels": list(spec.channels),
        "sources": {channel: asdict(source) for channel, source in spec.sources.items()},
        "data": spec.data,
        "category": spec.category,
        "template_key": spec.template_key,
        "locale": spec.locale,
        "subject": spec.subject,
        "body": spec.body,
    }


def create(
    message: NotificationSpec, recipients: list[dict[str, Any]] | None, topic: Topic | None
) -> Broadcast:
    """Write the broadcast (and an inline list's chunks); fan out after commit."""
    with transaction.atomic():
        broadcast = Broadcast.objects.create(
            topic_key=topic.key if topic else "",
            message=message_of(message),
            priority=message.priority,
            recipient_count=len(recipients) if recipients is not None else 0,
        )
        if recipients is not None:
            _write_chunks(broadcast, recipients)
        schema = current_schema()
        transaction.on_commit(lambda: start(str(broadcast.id), schema))
    return broadcast


def _write_chunks(broadcast: Broadcast, recipients: list[dict[str, Any]]) -> None:
    chunks = [
        BroadcastChunk(broadcast=broadcast, index=i, recipients=recipients[start : start + CHUNK_SIZE])
        for i, start in enumerate(range(0, len(recipients), CHUNK_SIZE))
    ]
    BroadcastChunk.objects.bulk_create(chunks, batch_size=20)
    Broadcast.objects.filter(pk=broadcast.pk).update(chunk_count=len(chunks), recipient_count=len(recipients))


def start(broadcast_id: str, schema: str) -> None:
    """Publish the fan-out (plan first for a topic). A failure here leaves it to the sweeper."""
    try:
        with schema_context(schema):
            queue = QUEUE_FOR_PRIORITY[Broadcast.objects.get(pk=broadcast_id).priority]
            plan_broadcast.apply_async(args=(broadcast_id,), queue=queue)
    except Exception:
        log.warning("could not start broadcast %s; the sweeper will", broadcast_id, exc_info=True)


# No result kept: nothing reads it, and apply_async of a task whose result is kept first
# subscribes to that result on the result backend (by default the broker's Redis): on a silent
# Redis that held the API's request for minutes (Celery's 120 s per read, retried up to 20
# times), however short the broker's own timeouts.
@shared_task(name="notifications.plan_broadcast", ignore_result=True, soft_time_limit=300, time_limit=360)
def plan_broadcast(broadcast_id: str) -> int:
    """Cut a topic's subscribers into chunks if needed, then run the chord over pending chunks."""
    broadcast = Broadcast.objects.get(pk=broadcast_id)
    if broadcast.topic_key and not broadcast.chunks.exists():
        external_ids = list(
            TopicSubscription.objects.filter(topic__key=broadcast.topic_key)
            .order_by("id")
            .values_list("recipient__external_id", flat=True)[:MAX_RECIPIENTS]
        )
        with transaction.atomic():
            if not BroadcastChunk.objects.select_for_update().filter(broadcast=broadcast).exists():
                _write_chunks(broadcast, [{"external_id": e} for e in external_ids])
    pending = list(broadcast.chunks.filter(done=False).order_by("index").values_list("index", flat=True))
    Broadcast.objects.filter(pk=broadcast_id, status=BroadcastStatus.ACCEPTED).update(
        status=BroadcastStatus.FANNING_OUT
    )
    queue = QUEUE_FOR_PRIORITY[broadcast.priority]
    if not pending:
        finish_broadcast.apply_async(args=([], broadcast_id), queue=queue)
        return 0
    lanes = [pending[lane::FAN_OUT_LANES] for lane in range(FAN_OUT_LANES) if pending[lane::FAN_OUT_LANES]]
    header = [
        chain(*[fan_out_chunk.si(broadcast_id, index).set(queue=queue) for index in lane]) for lane in lanes
    ]
    chord(header)(finish_broadcast.s(broadcast_id).set(queue=queue))
    return len(pending)


@shared_task(
    name="notifications.fan_out_chunk",
    soft_time_limit=300,
    time_limit=360,
    # A lane's later chunks wait on this one, so a failure (a lost connection, a deadlock) is
    # retried and a worker that dies mid-chunk has the message delivered again, rather than
    # ending the lane; a repeated chunk writes nothing (its `done` flag).
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=(DatabaseError,),
    retry_backoff=2,
    max_retries=6,
    bind=True,
)
def fan_out_chunk(self: Any, broadcast_id: str, index: int) -> int:
    """Write one chunk's notifications and deliveries, once; their sends go out after commit."""
    with urgency.bulk_work((self.request.delivery_info or {}).get("routing_key") == BULK_QUEUE):
        urgency.checkpoint()
        return _fan_out_chunk(broadcast_id, index)


def _fan_out_chunk(broadcast_id: str, index: int) -> int:
    with transaction.atomic():
        # Lock the chunk only: FOR UPDATE of the joined broadcast too made every chunk of a
        # broadcast wait for the one before it (and blocked their inserts' foreign-key checks).
        chunk = (
            BroadcastChunk.objects.select_for_update(of=("self",))
            .select_related("broadcast")
            .filter(broadcast_id=broadcast_id, index=index)
            .first()
        )
        if chunk is None or chunk.done:
            return 0
        written = write_chunk(chunk.broadcast, chunk.recipients)
        chunk.done, chunk.done_at = True, timezone.now()
        chunk.save(update_fields=["done", "done_at"])
    publish_progress(chunk.broadcast, full=False)
    return written


def write_chunk(broadcast: Broadcast, items: list[dict[str, Any]]) -> int:
    """Write these recipients' notifications, deliveries and `queued` events; send after commit.

    What pipeline.accept_many does for one request, cut to a broadcast's shape (one message,
    one category, many recipients) and to a handful of statements: the recipients upserted, with
    their opt-outs and push subscriptions, in one (as for a request), the notifications inserted
    in one, the deliveries and their events in one. Each channel's content is rendered once for the
    whole chunk when only the links differ between recipients (compose.SharedContent), and then
    stored as a mark (compose.shared_mark) that the send rebuilds; else per recipient. Statuses
    and reasons are accept_many's (pipeline.delivery_status).
    """
    if not items:
        return 0
    message = broadcast.message
    channels: list[str] = list(message["channels"])
    sources = {channel: Source(**source) for channel, source in message["sources"].items()}
    category = categories.category(message["category"])
    specs = [_normalised(spec_of(item)) for item in items]
    known = upsert_and_read(specs, [category.key])
    urgency.checkpoint()
    recipients, with_push = known.recipients, known.with_push
    opted_out = {e for e in known.opted_out if e[1] == category.pk} if not category.required else set()
    shared_data: dict[str, Any] = message["data"]
    shared: dict[str, SharedContent | None] = dict.fromkeys(channels)
    if any(not item.get("data") for item in items):  # someone gets the message's own data
        shared = {
            channel: SharedContent.prepare(channel, sources[channel], shared_data) for channel in channels
        }
    # Where one render serves every recipient, each delivery stores only a mark (the content
    # with links of any plausible length still fits), rebuilt when it is sent.
    marks: dict[str, dict[str, Any] | None] = {
        channel: shared_mark(category.required) if once is not None and once.fits(LINK_LENGTH_BOUND) else None
        for channel, once in shared.items()
    }
    signer = RecipientLinks()
    now = timezone.now()
    notification_rows: list[dict[str, Any]] = []
    delivery_rows: list[tuple[Any, ...]] = []
    queued: list[str] = []
    for item, spec in zip(items, specs, strict=True):
        recipient = recipients[spec.external_id]
        own_data = item.get("data")
        data = {**shared_data, **own_data} if own_data else shared_data
        notification_id = new_id_str()
        notification_rows.append(
            {
                "id": notification_id,
                "recipient_id": recipient.id,
                "locale": message["locale"] or spec.locale or "",
                "data": data if own_data else None,  # None: the message's own (shared) data
            }
        )
        links: dict[str, str] | None = None
        for channel in channels:
            status, reason = delivery_status(recipient, category, channel, opted_out, with_push)
            mark = marks[channel]
            if mark is not None and not own_data:
                content = mark  # compose.expand rebuilds it, with this recipient's links
            else:
                if links is None:
                    links = signer.message_links(recipient.id, category.key, category.required)
                try:
                    content = render_content(channel, sources[channel], data, links)
                except ComposeError as exc:
                    content = {}
                    if status == DeliveryStatus.QUEUED:
                        status, reason = DeliveryStatus.FAILED, f"{exc.field}: {exc.message}"
                if channel == Channel.EMAIL and not category.required:
                    content["list_unsubscribe"] = links["unsubscribe_url"]
            delivery_id = new_id_str()
            address = _address(recipient, channel)
            delivery_rows.append(
                (delivery_id, notification_id, channel, address, status, reason, content, now)
            )
            if status == DeliveryStatus.QUEUED:
                queued.append(delivery_id)
    shared_row = {
        "category": category.key,
        "template_key": message["template_key"],
        "priority": broadcast.priority,
        "channels": json.dumps(channels),
        "subject": message["subject"],
        "body": message["body"],
        "data": json.dumps(shared_data),
        "broadcast_id": str(broadcast.id),
        "created_at": now,
    }
    urgency.checkpoint()
    written = _insert_rows(shared_row, notification_rows, delivery_rows)
    by_delivery = {row[0]: row for row in delivery_rows}
    live.events_written(
        (),
        known=[
            live.event_json(eid, did, nid, broadcast.id, channel, status, reason, at)
            for eid, did in written
            for _, nid, channel, _, status, reason, _, at in [by_delivery[did]]
        ],
    )
    if queued:
        schema = current_schema()  # publish for this tenant, whatever is current at commit time
        by_priority = {broadcast.priority: queued}
        transaction.on_commit(lambda: enqueue_all(by_priority, schema=schema, batch=SEND_BATCH))
    return len(items)


# Rows travel as one JSON document each, what all rows share as plain parameters: psycopg2
# quoting every value of every row (execute_values) cost more CPU than the statements did.
_NOTIFICATIONS_SQL = """
    INSERT INTO {table} (id, recipient_id, category, template_key, locale, priority, channels,
                         subject, body, data, broadcast_id, created_at)
    SELECT v.id, v.recipient_id, %(category)s, %(template_key)s, v.locale, %(priority)s,
           %(channels)s::jsonb, %(subject)s, %(body)s, coalesce(v.data, %(data)s::jsonb),
           %(broadcast_id)s::uuid, %(created_at)s
    FROM json_to_recordset(%(rows)s::json) AS v(id uuid, recipient_id uuid, locale text, data jsonb)
"""

# The deliveries and their first event in one statement: the event is the delivery's status.
_DELIVERIES_SQL = """
    WITH written AS (
        INSERT INTO {deliveries} (id, notification_id, channel, address, status, last_error, content,
                                  created_at, updated_at, attempts, provider, provider_message_id)
        SELECT v.id, v.notification_id, v.channel, v.address, v.status, v.last_error, v.content,
               %(created_at)s, %(created_at)s, 0, '', ''
        FROM json_to_recordset(%(rows)s::json) AS v(
            id uuid, notification_id uuid, channel text, address text, status text, last_error text,
            content jsonb
        )
        RETURNING id, status, last_error, created_at
    )
    INSERT INTO {events} (delivery_id, status, detail, created_at)
    SELECT id, status, last_error, created_at FROM written
    RETURNING id, delivery_id::text
"""


def _insert_rows(
    shared: dict[str, Any], notifications: list[dict[str, Any]], deliveries: list[tuple[Any, ...]]
) -> list[Any]:
    """Insert the rows; return (event id, delivery id) of each delivery's first event."""
    quote = connection.ops.quote_name
    delivery_json = json.dumps(
        [
            {
                "id": did,
                "notification_id": nid,
                "channel": channel,
                "address": address,
                "status": status,
                "last_error": reason,
                "content": content,
            }
            for did, nid, channel, address, status, reason, content, _ in deliveries
        ]
    )
    with connection.cursor() as cursor:
        cursor.execute(
            _NOTIFICATIONS_SQL.format(table=quote(Notification._meta.db_table)),
            {**shared, "rows": json.dumps(notifications)},
        )
        cursor.execute(
            _DELIVERIES_SQL.format(
                deliveries=quote(Delivery._meta.db_table), events=quote(DeliveryEvent._meta.db_table)
            ),
            {"created_at": shared["created_at"], "rows": delivery_json},
        )
        written: list[Any] = cursor.fetchall()
    return written


@shared_task(name="notifications.finish_broadcast", soft_time_limit=60, time_limit=90)
def finish_broadcast(results: list[int], broadcast_id: str) -> str:
    broadcast = Broadcast.objects.get(pk=broadcast_id)
    if not broadcast.chunks.filter(done=False).exists():
        Broadcast.objects.filter(pk=broadcast_id).exclude(status=BroadcastStatus.FANNED_OUT).update(
            status=BroadcastStatus.FANNED_OUT, fanned_out_at=timezone.now()
        )
        broadcast.refresh_from_db()
    publish_progress(broadcast)
    return broadcast.status


def _normalised(spec: RecipientSpec) -> RecipientSpec:
    """The full phone check the API skipped for speed: an invalid number is dropped here, and the
    SMS delivery then fails with the reason (no phone) rather than going to a wrong number."""
    if not spec.phone:
        return spec
    try:
        number = phonenumbers.parse(spec.phone, None)
        valid = phonenumbers.is_valid_number(number)
    except phonenumbers.NumberParseException:
        valid = False
    phone = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164) if valid else None
    return RecipientSpec(external_id=spec.external_id, email=spec.email, phone=phone, locale=spec.locale)


def progress(broadcast: Broadcast, *, fresh: bool = False) -> dict[str, Any]:
    """The broadcast's state with its deliveries counted per status (a COUNT over all of them).

    The count reads every delivery of the broadcast (~100 ms at 100,000), so one made less than
    `live.progress_interval` ago (1 s, up to 5 s for the biggest) is reused by whoever asks:
    API clients polling GET /broadcasts/<id> and consoles polling without a live stream then
    cost at most one count per interval between them, whatever their number. `counted_at` says
    when the counts were read. `fresh`: count now (the live progress task, which runs after
    changes and so keeps the reused count current).
    """
    max_age = 0.0 if fresh else live.progress_interval(broadcast.recipient_count)
    counts, counted_at = delivery_counts(broadcast, max_age)
    expected = broadcast.recipient_count * len(broadcast.message.get("channels", []))
    settled = sum(n for status, n in counts.items() if status not in ("queued", "sending"))
    return {
        **fan_out_progress(broadcast),
        "deliveries": {"expected": expected, "by_status": counts},
        "percent_settled": round(100 * settled / expected, 1) if expected else 0.0,
        "counted_at": datetime.fromtimestamp(counted_at, tz=UTC).isoformat(),
    }


COUNTS_TTL = 3600  # seconds a count is kept for reuse (it is reused only while younger than max_age)


def delivery_counts(broadcast: Broadcast, max_age: float) -> tuple[dict[str, int], float]:
    """The broadcast's deliveries per status, and when they were counted (epoch seconds): the
    last count if it is at most `max_age` seconds old, else a new one (kept in Redis, per tenant
    and broadcast, for the next caller). Without Redis, every call counts."""
    key = f"herald:bcounts:{current_schema()}:{broadcast.id}"
    if max_age > 0:
        try:
            raw = get_redis().get(key)
        except redis.RedisError:
            raw = None
        if raw:
            kept = json.loads(raw)
            if 0 <= time.time() - kept["at"] <= max_age:
                return {str(k): int(v) for k, v in kept["by_status"].items()}, float(kept["at"])
    started = time.time()  # a count sees the rows as of its start (older than its end: the safe side)
    counts: dict[str, int] = dict(
        Delivery.objects.filter(notification__broadcast=broadcast)
        .values_list("status")
        .annotate(n=Count("id"))
        .values_list("status", "n")
    )
    try:
        get_redis().set(key, json.dumps({"by_status": counts, "at": started}), ex=COUNTS_TTL)
    except redis.RedisError:
        log.warning("could not keep the counts of broadcast %s", broadcast.id, exc_info=True)
    return counts, started


def fan_out_progress(broadcast: Broadcast) -> dict[str, Any]:
    """The broadcast's state without counting its deliveries: cheap enough after every chunk."""
    chunks_done = broadcast.chunks.filter(done=True).count()
    return {
        "id": str(broadcast.id),
        "status": broadcast.status,
        "topic": broadcast.topic_key or None,
        "recipients": broadcast.recipient_count,
        "chunks": {"done": chunks_done, "total": broadcast.chunk_count},
        "created_at": broadcast.created_at.isoformat(),
        "fanned_out_at": broadcast.fanned_out_at.isoformat() if broadcast.fanned_out_at else None,
    }


def publish_progress(broadcast: Broadcast, *, full: bool = True) -> None:
    """Push the broadcast's state to the tenant's group; after a chunk, without the delivery
    counts (counting every delivery after every chunk grew with chunks x deliveries)."""
    body = progress(broadcast, fresh=True) if full else fan_out_progress(broadcast)
    live.publish("broadcast.progress", {"broadcast": body})


@shared_task(name="notifications.sweep_broadcasts", ignore_result=True, soft_time_limit=60, time_limit=90)
def sweep_broadcasts() -> int:
    """Start again the fan-outs that stalled (beat runs this for every tenant); return how many.

    A broadcast still `accepted` after SWEEP_BROADCAST_AFTER seconds never got its first task
    (the broker was down when it was accepted); one `fanning_out` with chunks still pending and
    none finished for that long lost a lane (its worker died, or a chunk failed past its
    retries). Starting again is safe: each chunk is written once (locked and flagged in its own
    transaction), and the finishing callback only moves a broadcast forward.
    """
    cutoff = timezone.now() - timedelta(seconds=settings.SWEEP_BROADCAST_AFTER)
    stalled = Broadcast.objects.filter(
        status__in=(BroadcastStatus.ACCEPTED, BroadcastStatus.FANNING_OUT), created_at__lt=cutoff
    ).annotate(last_chunk_done=Max("chunks__done_at"))
    schema = current_schema()
    restarted = 0
    for broadcast in stalled[:100]:
        moving = broadcast.last_chunk_done is not None and broadcast.last_chunk_done >= cutoff
        if broadcast.status == BroadcastStatus.FANNING_OUT and moving:
            continue
        log.warning("broadcast %s stalled (%s); starting its fan-out again", broadcast.id, broadcast.status)
        start(str(broadcast.id), schema)
        restarted += 1
    return restarted
