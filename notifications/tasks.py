"""Sending: tasks take delivery ids, claim them, hand them to providers, record what happened.

One task sends a batch. For each channel in it, the tenant's primary provider is used, or its
secondary when the delivery has already failed `failover_after` times or the primary's recent
error rate is too high. Every try is a DeliveryAttempt row. A transient failure goes back to
`queued` and is sent again after exponential backoff with full jitter (or the provider's own
Retry-After), up to the channel's `max_attempts`; a permanent one fails at once.
"""

import json
import logging
import random
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from celery import shared_task, signals
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from tenants.schemas import current_schema, current_tenant

from . import compose, dispatch, health, live, ratelimit, urgency
from .links import RecipientLinks
from .models import (
    AttemptOutcome,
    Channel,
    Delivery,
    DeliveryAttempt,
    DeliveryEvent,
    DeliveryStatus,
    Notification,
)
from .pipeline import BULK_QUEUE, QUEUE_FOR_PRIORITY, enqueue, transition
from .providers.base import Outcome, OutgoingMessage
from .providers.registry import ProviderChoice, resolve

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int
    base: float
    cap: float
    failover_after: int

    @classmethod
    def for_channel(cls, channel: str) -> "RetryPolicy":
        p = settings.RETRY_POLICIES.get(channel, settings.RETRY_POLICIES["email"])
        return cls(int(p["max_attempts"]), float(p["base"]), float(p["cap"]), int(p["failover_after"]))

    def backoff(self, attempts_made: int) -> float:
        """Full jitter: uniform(0, min(cap, base * 2**(n-1)))."""
        ceiling = min(self.cap, self.base * 2 ** max(attempts_made - 1, 0))
        return random.uniform(0, ceiling)  # noqa: S311 (jitter, not cryptography)


# A queued delivery is due unless its retry is set for later (a second's leeway for clocks). The
# claim and the rate-limit count take only due ones; _send_when_due publishes the rest for later.
_DUE = "(next_attempt_at IS NULL OR next_attempt_at <= now() + interval '1 second')"

# The send path's statements find their rows by id, and test the status with COALESCE(status, '')
# so that the planner cannot use the partial status index (delivery_unsettled_updated) for it.
# During a broadcast the table's statistics lag behind (a few thousand rows analysed, 100,000
# there), `status = 'sending'` looks like one row, and the planner walked that index through every
# dead entry of every delivery ever sent: mark_sent took 5-7 ms per batch instead of ~2.
_CLAIM_SQL = """
    WITH picked AS (
        SELECT id FROM {deliveries}
        WHERE id = ANY(%s::uuid[]) AND COALESCE(status, '') = 'queued'
          AND {due}
        FOR UPDATE SKIP LOCKED
    ), moved AS (
        UPDATE {deliveries} AS d SET status = 'sending', updated_at = now(), attempts = d.attempts + 1
        FROM picked WHERE d.id = picked.id
        RETURNING d.id, d.notification_id, d.channel, d.address, d.content, d.attempts, d.provider
    ), events AS (
        INSERT INTO {events} (delivery_id, status, detail, created_at)
        SELECT id, 'sending', '', now() FROM moved
        RETURNING id, delivery_id, created_at
    )
    SELECT m.id::text, m.channel, m.address, m.content, m.attempts, m.provider, n.id::text, n.priority,
           n.data, n.broadcast_id::text, n.recipient_id::text, n.category, NULL::bigint, NULL::timestamptz
    FROM moved AS m JOIN {notifications} AS n ON n.id = m.notification_id
    UNION ALL
    SELECT e.delivery_id::text, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
           e.id, e.created_at
    FROM events AS e
"""
# The events come back as rows of their own (the UNION ALL) rather than joined to their
# deliveries: taking `moved` as one row, the planner joined them in a nested loop that compared
# every delivery with every event (n x n for a batch of n).


@dataclass(slots=True)
class Claimed:
    """What a send needs of one claimed delivery and its notification.

    A plain record, not Delivery and Notification instances: building 200 model instances
    (their field defaults included) was a tenth of a send batch's CPU.
    """

    id: str
    notification_id: str
    broadcast_id: str | None
    recipient_id: str
    category: str
    channel: str
    address: str
    content: dict[str, Any]
    attempts: int
    provider: str
    priority: str
    data: dict[str, Any]


def claim(delivery_ids: Sequence[str]) -> list[Claimed]:
    """Move queued deliveries to sending; only the ones this call moved are ours to send.

    A redelivered or replayed message finds its deliveries no longer queued and sends nothing, and
    one that comes early (a copy of a batch, from a redelivery or the sweeper) leaves a delivery
    waiting for its retry's backoff alone until `next_attempt_at` (within a second, for clocks):
    its own message, due then, sends it.
    One statement: pick the queued rows not locked by another claim (SKIP LOCKED), move them,
    write their `sending` events, and return what the send needs (a batch used to take a
    SELECT, an UPDATE and an INSERT through the ORM).
    """
    quote = connection.ops.quote_name
    sql = _CLAIM_SQL.format(
        due=_DUE,
        deliveries=quote(Delivery._meta.db_table),
        events=quote(DeliveryEvent._meta.db_table),
        notifications=quote(Notification._meta.db_table),
    )
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, [list(delivery_ids)])
        rows = cursor.fetchall()
    sending = {row[0]: (row[12], row[13]) for row in rows if row[12] is not None}
    claimed: list[Claimed] = []
    events: list[live.Event] = []
    # A broadcast's deliveries carry the same content (its mark) and data, as the same text:
    # each distinct text is decoded once and its value shared (nothing changes these values: a
    # mark is replaced by its expansion, and outgoing() copies the data).
    decoded: dict[str | bytes, Any] = {}
    for row in rows:
        did, channel, address, content, attempts, provider, nid, priority, data, bid, rid, cat, eid, at = row
        if eid is not None:
            continue  # a `sending` event's row: taken above
        eid, at = sending[did]
        events.append(live.event_json(eid, did, nid, bid, channel, DeliveryStatus.SENDING, "", at))
        claimed.append(
            Claimed(
                id=did,
                notification_id=nid,
                broadcast_id=bid,
                recipient_id=rid,
                category=cat,
                channel=channel,
                address=address,
                content=_decoded(content, decoded),
                attempts=attempts,
                provider=provider,
                priority=priority,
                data=_decoded(data, decoded),
            )
        )
    live.events_written((), known=events)
    return claimed


def _decoded(value: Any, seen: dict[str | bytes, Any]) -> Any:
    """_json(value) or {}, decoding each distinct text once (`seen` holds what was decoded)."""
    if not isinstance(value, str | bytes):
        return value or {}
    if value not in seen:
        seen[value] = _json(value) or {}
    return seen[value]


def _json(value: Any) -> Any:
    # Django has psycopg2 hand jsonb over as text (its JSONField decodes it).
    return json.loads(value) if isinstance(value, str | bytes) else value


@shared_task(
    bind=True,
    name="notifications.send_deliveries",
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
    soft_time_limit=120,
    time_limit=150,
)
def send_deliveries(self: Any, delivery_ids: list[str], reserved: bool = False) -> None:
    """Send these deliveries, after waiting for the tenant's rate limit if it asks to.

    Over the limit the message is published again to run when the reserved turn comes
    (`reserved=True`: the turn is already taken); it is never dropped and never spins.
    """
    queue = (self.request.delivery_info or {}).get("routing_key") or "default"
    if not reserved:
        delay = rate_limit_delay(delivery_ids)
        if delay > RATE_LIMIT_SLACK:
            self.apply_async(args=(delivery_ids,), kwargs={"reserved": True}, countdown=delay, queue=queue)
            # The tenant's held normal and bulk batches wait for that turn too, in the dispatcher's
            # list rather than as delayed messages (noted before this one's place in the bound is
            # freed, so that the dispatcher does not fill it with another of this tenant's). Not its
            # critical and high ones: those wait in the broker, as this one (dispatch.NO_NEXT_TURN).
            dispatch.next_turn_in(current_schema(), _PRIORITY_OF_QUEUE.get(queue, ""), delay)
            return  # its note and its place in the bound end with it (send_ended)
    if queue == BULK_QUEUE:
        with urgency.bulk_work():
            urgency.checkpoint()
            _send(delivery_ids)
        return
    if self.request.id:  # renewed for the send itself; cleared when it ends (send_ended)
        urgency.note(self.request.id)
    _send(delivery_ids)


@signals.task_postrun.connect(weak=False)
def send_ended(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    """A send task of a priority other than bulk has ended, however: its body returned or raised,
    the tenancy gate rejected it before its body ran (its tenant deactivated or deleted since it
    was published), or the gate's own tenant look-up failed (a database blip). Its urgent-work
    note is cleared, and its place in the fair dispatcher's bound freed if the dispatcher released
    it, now rather than when their leases run out: with four places a priority, four such ends
    would otherwise hold every tenant's held work of that priority back for the 150 s lease.

    Celery sends task_postrun after the task's call whatever its outcome (a Reject included), in
    the process that ran it, for messages the consumer's signature check let through."""
    if task is None or not task_id or task.name != send_deliveries.name:
        return
    if (task.request.delivery_info or {}).get("routing_key") == BULK_QUEUE:
        return  # bulk work is neither noted nor counted in the bound
    urgency.done(task_id)
    dispatch.release_ended(task_id)


def _send(delivery_ids: list[str]) -> None:
    by_channel: dict[str, list[Claimed]] = defaultdict(list)
    with live.batched():  # one live message for everything this task records
        signer: RecipientLinks | None = None
        claimed = claim(delivery_ids)
        left = set(delivery_ids) - {d.id for d in claimed}
        if left:
            _send_when_due(left)
        for delivery in claimed:
            if compose.SHARED_KEY in delivery.content:  # a broadcast's content, with this recipient's links
                signer = signer or RecipientLinks()
                try:
                    delivery.content = compose.expand(
                        delivery.content,
                        channel=delivery.channel,
                        broadcast_id=delivery.broadcast_id,
                        recipient_id=delivery.recipient_id,
                        category=delivery.category,
                        signer=signer,
                    )
                except (compose.SharedContentGone, compose.ComposeError) as exc:
                    transition(delivery.id, DeliveryStatus.FAILED, f"cannot build its content: {exc}")
                    continue
                except (KeyError, TypeError, ValueError):  # a stored message it cannot read
                    log.exception("delivery %s: cannot build its content", delivery.id)
                    transition(delivery.id, DeliveryStatus.FAILED, "cannot build its content")
                    continue
            missing = [
                f for f in compose.REQUIRED_CONTENT.get(delivery.channel, ()) if not delivery.content.get(f)
            ]
            if missing:  # never send an empty message (a mark read by code that cannot rebuild it)
                transition(delivery.id, DeliveryStatus.FAILED, f"its content has no {', '.join(missing)}")
                continue
            by_channel[delivery.channel].append(delivery)
        for channel, deliveries in by_channel.items():
            send_channel(channel, deliveries)


_NOT_DUE_SQL = """
    SELECT d.id::text, n.priority, EXTRACT(EPOCH FROM d.next_attempt_at - now())
    FROM {deliveries} d JOIN {notifications} n ON n.id = d.notification_id
    WHERE d.id = ANY(%s::uuid[]) AND COALESCE(d.status, '') = 'queued' AND NOT {due}
"""


def _send_when_due(unclaimed: set[str]) -> None:
    """Publish again, for when they are due, the deliveries the claim left because their retry is
    not due yet. Their own retry message normally comes then anyway; this one covers a retry
    message that came early by a worker's clock, or was never published (its worker died
    between recording the retry and publishing it). A copy too many claims nothing."""
    quote = connection.ops.quote_name
    sql = _NOT_DUE_SQL.format(
        due=_DUE,  # unambiguous in the join: only deliveries have next_attempt_at
        deliveries=quote(Delivery._meta.db_table),
        notifications=quote(Notification._meta.db_table),
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [sorted(unclaimed)])
        rows = cursor.fetchall()
    by_priority: dict[str, list[tuple[str, float]]] = defaultdict(list)
    for delivery_id, priority, wait in rows:
        by_priority[priority].append((delivery_id, float(wait)))
    for priority, items in by_priority.items():
        log.info("%d deliveries are not due yet; sending them when they are", len(items))
        enqueue([i for i, _ in items], priority, countdown=max(w for _, w in items))


RATE_LIMIT_SLACK = 0.05  # seconds: closer than this to its turn, a batch just goes
_PRIORITY_OF_QUEUE = {queue: priority for priority, queue in QUEUE_FOR_PRIORITY.items()}


def send_limit(channel: str) -> tuple[float, int]:
    """(rate per second, burst) for the current tenant on `channel`."""
    tenant = current_tenant()
    own = (getattr(tenant, "rate_limits", None) or {}).get(channel) or {}
    default = settings.SEND_RATE_LIMITS.get(channel, {"rate": 100.0, "burst": 100})
    return float(own.get("rate", default["rate"])), int(own.get("burst", default["burst"]))


_COUNT_QUEUED_SQL = """
    SELECT channel, count(*) FROM {deliveries}
    WHERE id = ANY(%s::uuid[]) AND COALESCE(status, '') = 'queued' AND {due}
    GROUP BY channel
"""


def rate_limit_delay(delivery_ids: list[str]) -> float:
    """Reserve this batch's sends in the tenant's per-channel limits; seconds until they are due."""
    sql = _COUNT_QUEUED_SQL.format(due=_DUE, deliveries=connection.ops.quote_name(Delivery._meta.db_table))
    with connection.cursor() as cursor:
        cursor.execute(sql, [list(delivery_ids)])
        counts = cursor.fetchall()
    delay = 0.0
    for channel, n in counts:
        rate, burst = send_limit(channel)
        delay = max(delay, ratelimit.reserve(f"send:{current_schema()}:{channel}", rate, burst, cost=n))
    return delay


def send_channel(channel: str, deliveries: list[Claimed]) -> None:
    policy = RetryPolicy.for_channel(channel)
    primary, secondary = resolve(channel)
    if primary is None:
        for d in deliveries:
            transition(d.id, DeliveryStatus.FAILED, f"no {channel} provider is configured")
        return
    primary_unhealthy = secondary is not None and health.is_unhealthy(channel, primary.name)
    on_primary: list[Claimed] = []
    on_secondary: list[Claimed] = []
    for d in deliveries:
        failed_before = d.attempts - 1
        use_secondary = secondary is not None and (
            primary_unhealthy or failed_before >= policy.failover_after
        )
        (on_secondary if use_secondary else on_primary).append(d)
    batches: list[tuple[ProviderChoice, list[Claimed]]] = [(primary, on_primary)]
    if secondary is not None:
        batches.append((secondary, on_secondary))

    retry: list[tuple[Claimed, float]] = []
    for choice, batch in batches:
        if not batch:
            continue
        provider = choice.build()
        by_id = {d.id: d for d in batch}
        messages = [outgoing(d) for d in batch]
        outcomes: list[Outcome] = []
        for start in range(0, len(messages), provider.batch_size):
            urgency.checkpoint()
            outcomes.extend(provider.send_batch(messages[start : start + provider.batch_size]))
        urgency.checkpoint()
        with transaction.atomic():  # one commit (one WAL flush) for the attempts and the successes
            log_attempts(by_id, outcomes)
            mark_sent([o for o in outcomes if o.ok], by_id)
        health.record(
            channel, choice.name, ok=sum(o.ok for o in outcomes), failed=sum(not o.ok for o in outcomes)
        )
        for outcome in outcomes:
            if outcome.ok:
                continue
            delay = apply_outcome(by_id[outcome.delivery_id], outcome, policy)
            if delay is not None:
                retry.append((by_id[outcome.delivery_id], delay))
    schedule_retries(retry)


# The batch's successes and their `sent` events in one statement. What a live event needs besides
# (notification, broadcast, channel) the claim has already read.
# Each row's provider and message id are looked up by its id in one jsonb object (`m.j`), not
# joined from a row set: the planner takes the deliveries as one row (the COALESCE estimate) and
# joined a row set in a nested loop, comparing every delivery with every outcome (n x n for a
# batch of n; at 125, 2 of the statement's 4-6 ms).
_MARK_SENT_SQL = """
    WITH sent AS (
        UPDATE {deliveries} AS d
        SET status = 'sent', provider = m.j -> d.id::text ->> 0,
            provider_message_id = m.j -> d.id::text ->> 1,
            sent_at = now(), updated_at = now(), last_error = ''
        FROM (SELECT %(outcomes)s::jsonb AS j) AS m
        WHERE d.id = ANY(%(ids)s::uuid[]) AND COALESCE(d.status, '') = 'sending'
        RETURNING d.id, d.provider
    )
    INSERT INTO {events} (delivery_id, status, detail, created_at)
    SELECT id, 'sent', 'via ' || provider, now() FROM sent
    RETURNING id, delivery_id::text, detail, created_at
"""


def mark_sent(outcomes: list[Outcome], claimed: Mapping[str, Claimed]) -> list[str]:
    """Move every successful delivery of a batch to `sent`, with its event, in one statement;
    return the ids that moved (their `sent` events were written with them).

    Only deliveries still `sending` move (the state machine's rule for `sent`). `claimed`: the
    batch's deliveries by id, as the claim returned them.
    """
    if not outcomes:
        return []
    quote = connection.ops.quote_name
    sql = _MARK_SENT_SQL.format(
        deliveries=quote(Delivery._meta.db_table), events=quote(DeliveryEvent._meta.db_table)
    )
    by_id = {o.delivery_id: (o.provider, o.provider_message_id[:255]) for o in outcomes}
    with connection.cursor() as cursor:
        cursor.execute(sql, {"outcomes": json.dumps(by_id), "ids": list(by_id)})
        rows = cursor.fetchall()
    events = []
    for eid, did, detail, at in rows:
        d = claimed[did]
        events.append(
            live.event_json(
                eid, did, d.notification_id, d.broadcast_id, d.channel, DeliveryStatus.SENT, detail, at
            )
        )
    live.events_written((), known=events)
    return [row[1] for row in rows]


def outgoing(delivery: Claimed) -> OutgoingMessage:
    content = delivery.content
    headers: dict[str, str] = {}
    if delivery.channel == Channel.EMAIL and content.get("list_unsubscribe"):
        # RFC 8058 one-click unsubscribe; absent for required categories.
        headers = {
            "List-Unsubscribe": f"<{content['list_unsubscribe']}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        }
    return OutgoingMessage(
        delivery_id=delivery.id,
        channel=delivery.channel,
        to=delivery.address,
        subject=content.get("subject") or content.get("title", ""),
        text=content.get("text") or content.get("body", ""),
        html=content.get("html", ""),
        priority=delivery.priority,
        headers=headers,
        # The rendered url wins over a `url` key in the request's data.
        data={**delivery.data, "url": content.get("url", "")},
    )


# Rows travel as one JSON document: psycopg2 quoting each value of each row (execute_values)
# cost several times what the statement itself did.
_ATTEMPTS_SQL = """
    INSERT INTO {table} (delivery_id, number, provider, outcome, response, duration_ms, started_at)
    SELECT delivery_id, number, provider, outcome, response, duration_ms, started_at
    FROM json_to_recordset(%s::json) AS v(
        delivery_id uuid, number int, provider text, outcome text, response text, duration_ms int,
        started_at timestamptz
    )
"""


def log_attempts(by_id: dict[str, Claimed], outcomes: list[Outcome]) -> None:
    """One DeliveryAttempt row per outcome, in one INSERT."""
    if not outcomes:
        return
    now = timezone.now()
    values = [
        {
            "delivery_id": o.delivery_id,
            "number": by_id[o.delivery_id].attempts,
            "provider": o.provider,
            "outcome": _attempt_outcome(o),
            "response": o.response,
            "duration_ms": o.duration_ms,
            # when the call began, not when this row is written
            "started_at": (o.started_at or now).isoformat(),
        }
        for o in outcomes
    ]
    sql = _ATTEMPTS_SQL.format(table=connection.ops.quote_name(DeliveryAttempt._meta.db_table))
    with connection.cursor() as cursor:
        cursor.execute(sql, [json.dumps(values)])


def _attempt_outcome(outcome: Outcome) -> str:
    if outcome.error is None:
        return AttemptOutcome.SENT
    return AttemptOutcome.PERMANENT_ERROR if outcome.error.permanent else AttemptOutcome.TRANSIENT_ERROR


def apply_outcome(delivery: Claimed, outcome: Outcome, policy: RetryPolicy) -> float | None:
    """Record a failed outcome; return the delay before the next try when there should be one.

    (Successes are recorded for the whole batch at once by mark_sent.)
    """
    error = outcome.error
    assert error is not None
    if error.permanent:
        transition(
            delivery.id,
            DeliveryStatus.FAILED,
            f"{outcome.provider}: {error.reason}",
            provider=outcome.provider,
        )
        return None
    if delivery.attempts >= policy.max_attempts:
        reason = f"gave up after {delivery.attempts} attempts; last: {outcome.provider}: {error.reason}"
        transition(delivery.id, DeliveryStatus.FAILED, reason, provider=outcome.provider)
        return None
    delay = max(policy.backoff(delivery.attempts), error.retry_after or 0.0)
    transition(
        delivery.id,
        DeliveryStatus.QUEUED,
        f"will retry in {delay:.1f}s: {outcome.provider}: {error.reason}",
        last_error=error.reason,
        provider=outcome.provider,
        next_attempt_at=timezone.now() + timedelta(seconds=delay),
    )
    return delay


def schedule_retries(retry: list[tuple[Claimed, float]]) -> None:
    """One message per priority, sent after the longest delay among its deliveries."""
    groups: dict[str, list[tuple[Claimed, float]]] = defaultdict(list)
    for delivery, delay in retry:
        groups[delivery.priority].append((delivery, delay))
    for priority, items in groups.items():
        enqueue([d.id for d, _ in items], priority, countdown=max(delay for _, delay in items))


# --- recovery -----------------------------------------------------------------------------------


def _sweep_limits() -> tuple[timedelta, timedelta]:
    """(queued grace, sending timeout): a queued delivery nobody picked up in the first is
    orphaned; one in `sending` longer than the second (well past the send task's hard time
    limit of 150 s) lost its worker."""
    return (
        timedelta(seconds=settings.SWEEP_QUEUED_AFTER),
        timedelta(seconds=settings.SWEEP_SENDING_AFTER),
    )


@shared_task(
    name="notifications.sweep_stuck_deliveries", ignore_result=True, soft_time_limit=60, time_limit=90
)
def sweep_stuck_deliveries() -> dict[str, int]:
    """Put orphaned deliveries back to work (beat runs this for every tenant).

    The database is the truth: a delivery queued while the broker was down, or claimed by a
    worker that died, is found here by its age and enqueued again. Claims make a repeated
    message harmless; a delivery stuck in `sending` may have reached the provider before its
    worker died, so it is sent again (email carries the same Message-ID).
    """
    now = timezone.now()
    queued_grace, sending_timeout = _sweep_limits()
    stuck = Delivery.objects.filter(status=DeliveryStatus.SENDING, updated_at__lt=now - sending_timeout)
    revived = [
        delivery_id
        for delivery_id in stuck.values_list("id", flat=True)[:10_000]
        if transition(delivery_id, DeliveryStatus.QUEUED, "its worker stopped answering; sending again")
    ]
    due = (
        Delivery.objects.filter(status=DeliveryStatus.QUEUED, updated_at__lt=now - queued_grace)
        .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lt=now - queued_grace))
        .order_by("updated_at")
    )
    # What a live dispatcher holds, it releases in turn. (Sweeping held work by its age instead
    # sent a long backlog, a rate-limited tenant's say, around the dispatcher, first in first out.)
    for priority in dispatch.FAIR_PRIORITIES:
        if dispatch.holding(current_schema(), priority):
            due = due.exclude(notification__priority=priority)
    rows = list(due.values_list("id", "notification__priority")[:10_000])
    rows += list(Delivery.objects.filter(id__in=revived).values_list("id", "notification__priority"))
    by_priority: dict[str, list[str]] = defaultdict(list)
    for delivery_id, priority in rows:
        by_priority[priority].append(str(delivery_id))
    Delivery.objects.filter(id__in=[r[0] for r in rows]).update(
        updated_at=timezone.now(), next_attempt_at=None
    )
    for priority, ids in by_priority.items():
        for start in range(0, len(ids), 100):
            enqueue(ids[start : start + 100], priority)
    return {"revived_from_sending": len(revived), "enqueued": len(rows)}
