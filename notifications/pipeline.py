"""The path of a notification: accept (write rows), enqueue (after commit), record events.

Other packages call `accept` and `enqueue`; nothing outside this package touches the models
of a delivery's state directly.
"""

import json
import logging
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any, NamedTuple

from django.db import DEFAULT_DB_ALIAS, connection, connections, transaction
from django.db.models import Field, Model
from django.db.models.fields import AutoFieldMixin
from django.utils import timezone
from django_tenants.utils import schema_context
from psycopg2 import sql

from tenant_platform.broker import DirectPublisher
from tenants.schemas import current_schema

from . import live, urgency
from .compose import SHARED_KEY, ComposeError, Source, render_content
from .ids import new_id_str
from .links import RecipientLinks, recipient_token, tenant_url, unsubscribe_token
from .models import (
    RETRY_FROM,
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
BULK_QUEUE = QUEUE_FOR_PRIORITY[Priority.BULK.value]


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
    # No locale given: take the recipient's, as stored once this notification's upsert is done.
    locale_of_recipient: bool = False
    subject: str = ""
    body: str = ""


def accept(spec: NotificationSpec) -> Notification:
    """Write one notification and its deliveries in one transaction; enqueue after commit."""
    (notification,) = accept_many([spec])
    return notification


class KnownRecipient(NamedTuple):
    """A recipient as the upsert returned it, its id as text: what accepting reads of it.

    Not a Recipient instance: a model instance per recipient (its __init__ walking every field)
    was a seventh of a broadcast chunk's CPU, and parsing each id into a UUID to print it again
    another few percent.
    """

    id: str
    external_id: str
    email: str
    phone: str
    locale: str


def accept_many(specs: Sequence[NotificationSpec], broadcast: Broadcast | None = None) -> list[Notification]:
    """Write notifications and their deliveries in one transaction, in bulk; enqueue after commit.

    A handful of statements whatever the number of notifications: recipients upserted in one
    INSERT .. ON CONFLICT that also reads their opt-outs, whether they have a push subscription
    and the categories named, then the rows written with bulk inserts. Each delivery's content
    is rendered here, once. A delivery the
    recipient opted out of (or with nowhere to go, like push without a subscription) is written
    as `suppressed` with the reason; one whose content can't be rendered for this recipient
    (a broadcast's per-recipient data) as `failed` with the reason. Nothing is silently dropped.
    """
    if not specs:
        return []
    with transaction.atomic():
        keys = sorted({spec.category for spec in specs})
        known = upsert_and_read([spec.recipient for spec in specs], keys)
        recipients = known.recipients
        # A category named for the first time is made here (service.category creates it).
        cats = {key: known.categories.get(key) or categories.category(key) for key in keys}
        optional = {c.pk for c in cats.values() if not c.required}
        opted_out = {entry for entry in known.opted_out if entry[1] in optional}
        with_push = known.with_push
        notifications: list[Notification] = []
        deliveries: list[Delivery] = []
        signer = RecipientLinks()  # the tokens recipient_links makes, keyed once for all specs
        models: dict[str, Recipient] = {}  # one instance per recipient, for its notifications
        for spec in specs:
            recipient = recipients[spec.recipient.external_id]
            model = models.get(recipient.id)
            if model is None:
                model = models[recipient.id] = Recipient(
                    id=uuid.UUID(recipient.id),
                    external_id=recipient.external_id,
                    email=recipient.email,
                    phone=recipient.phone,
                    locale=recipient.locale,
                )
            category = cats[spec.category]
            notification = Notification(
                recipient=model,
                category=category.key,
                template_key=spec.template_key,
                locale=spec.locale or (recipient.locale if spec.locale_of_recipient else ""),
                priority=spec.priority,
                channels=list(spec.channels),
                subject=spec.subject,
                body=spec.body,
                data=spec.data,
                broadcast=broadcast,
            )
            notifications.append(notification)
            links = signer.message_links(recipient.id, category.key, category.required)
            for channel in spec.channels:
                deliveries.append(
                    _delivery(notification, recipient, category, channel, spec, links, opted_out, with_push)
                )
        statuses: dict[uuid.UUID, list[str]] = {}
        for d in deliveries:
            statuses.setdefault(d.notification.id, []).append(d.status)
        for n in notifications:  # what the API answers right away
            n.initial_status = Notification.summarize(statuses.get(n.id, []))
        now = timezone.now()
        events = [
            DeliveryEvent(delivery_id=d.id, status=d.status, detail=d.last_error, created_at=now)
            for d in deliveries
        ]
        event_ids = insert_rows(notifications, deliveries, events, returning=True)
        live.events_written(
            event_ids,
            known=(
                live.event_json(
                    eid,
                    d.id,
                    d.notification.id,
                    broadcast.id if broadcast else None,
                    d.channel,
                    d.status,
                    d.last_error,
                    now,
                )
                for eid, d in zip(event_ids, deliveries, strict=True)
            ),
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
    recipient: KnownRecipient,
    category: Category,
    channel: str,
    spec: NotificationSpec,
    links: dict[str, str],
    opted_out: set[tuple[str, int, str]],
    with_push: set[str],
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


def insert_rows(*batches: Sequence[Model], returning: bool = False) -> list[Any]:
    """INSERT each batch of new model instances (one model per batch), all in one round trip.

    With `returning`, the primary keys of the last batch's rows are returned (the database's,
    for an auto-increment key); otherwise an empty list.

    What bulk_create does, without its per-value machinery (a third of a 1,000-item batch's
    time) and one statement per round trip: each field's value is prepared as bulk_create
    prepares it (pre_save, get_db_prep_save), the rows are quoted by psycopg2, and the
    statements go together. Primary keys must be set already, except an auto-increment one.
    A model with a field this can't write as plainly (a database default, a custom
    placeholder) goes through bulk_create instead.
    """
    statements: list[str] = []
    keys: list[Any] = []
    db = connections[DEFAULT_DB_ALIAS]  # the wrapper itself: `connection` is a proxy, slow per use
    with db.cursor() as cursor:
        for index, objs in enumerate(batches):
            if not objs:
                continue
            last = index == len(batches) - 1
            model = type(objs[0])
            fields = _insertable_fields(model)
            if fields is None:
                made = model._default_manager.bulk_create(objs)
                if returning and last:
                    keys = [obj.pk for obj in made]
                continue
            head, row, tail = _insert_sql(model, fields, returning and last, cursor.cursor)
            statement = head + ", ".join([row] * len(objs)) + tail
            params = [f.get_db_prep_save(f.pre_save(obj, True), db) for obj in objs for f in fields]
            statements.append(cursor.mogrify(statement, params).decode())
        if statements:
            cursor.execute(";\n".join(statements))
            if returning and batches and batches[-1] and _insertable_fields(type(batches[-1][0])) is not None:
                keys = [row[0] for row in cursor.fetchall()]
    for objs in batches:
        for obj in objs:
            obj._state.adding = False
            obj._state.db = db.alias
    return keys


_INSERT_SQL: dict[tuple[type[Model], bool], tuple[str, str, str]] = {}


def _insert_sql(
    model: type[Model], fields: "list[Field[Any, Any]]", returning: bool, cursor: Any
) -> tuple[str, str, str]:
    """(`INSERT INTO t (columns) VALUES `, one row's placeholders, ` RETURNING pk` or ""), quoted
    once per process: composing them again for every request cost more than quoting the values."""
    parts = _INSERT_SQL.get((model, returning))
    if parts is None:
        head = sql.SQL("INSERT INTO {} ({}) VALUES ").format(
            sql.Identifier(model._meta.db_table),
            sql.SQL(", ").join(sql.Identifier(str(f.column)) for f in fields),
        )
        tail = sql.SQL(" RETURNING {}").format(sql.Identifier(str(model._meta.pk.column)))
        row = "(" + ", ".join(["%s"] * len(fields)) + ")"
        parts = (head.as_string(cursor), row, tail.as_string(cursor) if returning else "")
        _INSERT_SQL[(model, returning)] = parts
    return parts


@cache
def _insertable_fields(model: type[Model]) -> "list[Field[Any, Any]] | None":
    """The columns insert_rows writes for `model`, or None if it must leave it to bulk_create."""
    fields = []
    for f in model._meta.concrete_fields:
        if f.primary_key and isinstance(f, AutoFieldMixin):
            continue  # the sequence gives it
        if f.generated or f.has_db_default() or hasattr(f, "get_placeholder"):
            return None
        fields.append(f)
    return fields


def delivery_status(
    recipient: KnownRecipient,
    category: Category,
    channel: str,
    opted_out: set[tuple[str, int, str]],
    with_push: set[str],
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


def recipient_links(recipient: Recipient, category: Category) -> dict[str, str]:
    """The links every message may use; none to unsubscribe from a required category."""
    prefs = tenant_url(f"/u/preferences/?token={recipient_token(str(recipient.id))}")
    if category.required:
        return {"unsubscribe_url": prefs, "preferences_url": prefs}
    unsubscribe = tenant_url(f"/u/unsubscribe/{unsubscribe_token(str(recipient.id), category.key)}/")
    return {"unsubscribe_url": unsubscribe, "preferences_url": prefs}


def upsert_recipient(spec: RecipientSpec) -> Recipient:
    return upsert_recipients([spec])[spec.external_id]


# The rows travel as one JSON document: psycopg2 quoting every value of every row cost more
# CPU than the statement did.
# A recipient that exists and whose given fields are what is stored already (the common case: a
# tenant notifies the same people again and again, and a topic's chunks give external ids only)
# is not rewritten: DO UPDATE's WHERE leaves it alone. It is still locked (its row gets a lock
# mark and a small WAL record), but gets no new row version and no index entries; rewriting it
# anyway cost ~580 bytes of WAL and a dead row per recipient per request, and per subscriber per
# topic broadcast. `up` is what was written; the rest is read by _READ_CTES.
_UPSERT_CTES = """
    v AS (
        SELECT * FROM json_to_recordset(%(rows)s::json)
            AS v(id uuid, external_id text, email text, phone text, locale text)
    ), up AS (
        INSERT INTO {table} AS r (id, external_id, email, phone, locale, created_at, updated_at)
        SELECT v.id, v.external_id, v.email, v.phone, v.locale, %(now)s, %(now)s FROM v
        ON CONFLICT (external_id) DO UPDATE SET
            email = CASE WHEN EXCLUDED.email <> '' THEN EXCLUDED.email ELSE r.email END,
            phone = CASE WHEN EXCLUDED.phone <> '' THEN EXCLUDED.phone ELSE r.phone END,
            locale = CASE WHEN EXCLUDED.locale <> '' THEN EXCLUDED.locale ELSE r.locale END,
            updated_at = EXCLUDED.updated_at
        WHERE (EXCLUDED.email <> '' AND EXCLUDED.email <> r.email)
           OR (EXCLUDED.phone <> '' AND EXCLUDED.phone <> r.phone)
           OR (EXCLUDED.locale <> '' AND EXCLUDED.locale <> r.locale)
        RETURNING r.id, r.external_id, r.email, r.phone, r.locale
    )
"""
# Recipients read by external id: those named by it alone, and those the upsert left alone. The
# latter in a statement of their own, not in the upsert's: its snapshot predates the wait ON
# CONFLICT may have made for another transaction's row, so it would return a recipient as it was
# before that transaction changed it (its old email), or miss one that transaction inserted. A
# new statement has a new snapshot (READ COMMITTED) and reads the latest version (inside a
# transaction, the upsert's lock keeps it so until the transaction ends).
_READ_CTES = """
    up AS (
        SELECT r.id, r.external_id, r.email, r.phone, r.locale FROM {table} AS r
        WHERE r.external_id = ANY(%(external_ids)s)
    )
"""
_RECIPIENT_COLUMNS = "SELECT id, external_id, email, phone, locale FROM up"


def _upsert_rows(
    specs: Sequence[RecipientSpec], select: str, params: dict[str, Any] | None = None
) -> list[tuple[Any, ...]]:
    """Upsert these recipients and run `select` over them (`up`: each recipient once, as stored);
    the rows it returns. `select`'s second column must be the external_id.

    A recipient named by its external id alone (a topic's chunks name them so; so does a request
    for a known recipient that gives no address) changes nothing: such recipients are read first,
    without the upsert's insert attempt and row lock, and only those not there yet are upserted.
    """
    table = connection.ops.quote_name(Recipient._meta.db_table)
    params = params or {}
    given = {spec.external_id for spec in specs if spec.email or spec.phone or spec.locale}
    bare = {spec.external_id for spec in specs} - given
    rows: list[tuple[Any, ...]] = []
    with connection.cursor() as cursor:
        if bare:
            cursor.execute(
                "WITH " + _READ_CTES.format(table=table) + select, {"external_ids": sorted(bare), **params}
            )
            rows = cursor.fetchall()
        found = {row[1] for row in rows}
        rest = [spec for spec in specs if spec.external_id not in found]
        if rest:
            cursor.execute(
                "WITH " + _UPSERT_CTES.format(table=table) + select, {**_upsert_values(rest), **params}
            )
            written = cursor.fetchall()
            rows += written
            unwritten = {spec.external_id for spec in rest} - {row[1] for row in written}
            if unwritten:
                cursor.execute(
                    "WITH " + _READ_CTES.format(table=table) + select,
                    {"external_ids": sorted(unwritten), **params},
                )
                rows += cursor.fetchall()
    return rows


def upsert_recipients(specs: Sequence[RecipientSpec]) -> dict[str, Recipient]:
    """Insert or update recipients by external_id in one statement (safe under concurrency).

    A field not given keeps its stored value. The same external_id twice: the later wins.
    """
    return {
        external_id: Recipient(id=rid, external_id=external_id, email=email, phone=phone, locale=locale)
        for rid, external_id, email, phone, locale in _upsert_rows(specs, _RECIPIENT_COLUMNS)
    }


def _upsert_values(specs: Sequence[RecipientSpec]) -> dict[str, Any]:
    """_UPSERT_CTES's parameters: one row per external_id (the later spec's fields win)."""
    merged: dict[str, dict[str, str]] = {}
    for spec in specs:
        row = merged.get(spec.external_id)
        if row is None:
            row = merged[spec.external_id] = {
                "id": new_id_str(),
                "external_id": spec.external_id,
                "email": "",
                "phone": "",
                "locale": "",
            }
        if spec.email:
            row["email"] = spec.email
        if spec.phone:
            row["phone"] = spec.phone
        if spec.locale:
            row["locale"] = spec.locale
    return {"now": timezone.now(), "rows": json.dumps(list(merged.values()))}


@dataclass
class _Known:
    """What accepting needs to know about its recipients, read by the statement that upserts them."""

    recipients: dict[str, KnownRecipient]
    opted_out: set[tuple[str, int, str]]  # (recipient id, category, channel) turned off
    with_push: set[str]  # ids of the recipients with at least one push subscription
    categories: dict[str, Category]  # of the keys asked for, those that exist


# Read with the upsert, per recipient: its disabled preferences and whether it has a push
# subscription; plus (an InitPlan, computed once per statement) the categories asked for.
_READ_KNOWN_SQL = """
    SELECT up.id::text, up.external_id, up.email, up.phone, up.locale,
        ARRAY(SELECT p.category_id::text || ':' || p.channel FROM {preference} p
              WHERE p.recipient_id = up.id AND NOT p.enabled),
        EXISTS(SELECT 1 FROM {push} s WHERE s.recipient_id = up.id),
        (SELECT json_agg(json_build_array(c.id, c.key, c.name, c.required))::text
         FROM {category} c WHERE c.key = ANY(%(keys)s))
    FROM up
"""


def upsert_and_read(specs: Sequence[RecipientSpec], category_keys: Sequence[str]) -> _Known:
    """upsert_recipients, and in the same statement what accept_many reads about them."""
    quote = connection.ops.quote_name
    select = _READ_KNOWN_SQL.format(
        preference=quote(Preference._meta.db_table),
        push=quote(PushSubscription._meta.db_table),
        category=quote(Category._meta.db_table),
    )
    rows = _upsert_rows(specs, select, {"keys": list(category_keys)})
    known = _Known(recipients={}, opted_out=set(), with_push=set(), categories={})
    for rid, external_id, email, phone, locale, disabled, has_push, _ in rows:
        known.recipients[external_id] = KnownRecipient(rid, external_id, email, phone, locale)
        for entry in disabled:
            category_id, channel = entry.split(":", 1)
            known.opted_out.add((rid, int(category_id), channel))
        if has_push:
            known.with_push.add(rid)
    for pk, key, name, required in json.loads(rows[0][7] or "[]") if rows else []:
        known.categories[key] = Category(pk=pk, key=key, name=name, required=required)
    return known


def _address(recipient: KnownRecipient, channel: str) -> str:
    if channel == Channel.EMAIL:
        return recipient.email
    if channel == Channel.SMS:
        return recipient.phone
    return recipient.id


def enqueue_all(by_priority: Mapping[str, list[str]], *, schema: str | None = None, batch: int = 100) -> None:
    """Enqueue many deliveries, `batch` ids per message (never a message per delivery).

    Bulk batches, and critical, high and normal ones while their queue is contended, go to the fair
    dispatcher when one is running (notifications.dispatch).
    """
    from . import dispatch

    schema = schema or current_schema()
    for priority, ids in by_priority.items():
        batches = [ids[start : start + batch] for start in range(0, len(ids), batch)]
        for chunk in dispatch.hold(schema, priority, batches):
            if not enqueue(chunk, priority, schema=schema):
                return  # the broker is down: the rest stay queued too, without waiting on it again


def enqueue(
    delivery_ids: list[str], priority: str, *, schema: str | None = None, countdown: float | None = None
) -> bool:
    """Hand deliveries to the send queue for their priority.

    The rows are already committed; if the broker can't take the message we log and return
    False, and the deliveries stay `queued` in the database for the sweeper to enqueue again.
    """
    from .tasks import send_deliveries

    queue = QUEUE_FOR_PRIORITY.get(priority, "default")
    schema = schema or current_schema()
    try:
        if countdown:
            with schema_context(schema):
                send_deliveries.apply_async(args=(delivery_ids,), queue=queue, countdown=countdown)
        elif queue == BULK_QUEUE:
            publish_send(delivery_ids, queue, schema)
        else:  # bulk work steps aside until it has been sent
            publish_urgent(delivery_ids, queue, schema, str(uuid.uuid4()))
    except Exception:  # any publish failure: the database still has the work
        log.warning(
            "could not enqueue %d deliveries; left queued for the sweeper", len(delivery_ids), exc_info=True
        )
        return False
    return True


def publish_urgent(delivery_ids: list[str], queue: str, schema: str, task_id: str) -> None:
    """publish_send for work bulk work steps aside for (notifications.urgency): noted as urgent
    under the id its message will carry before it is published, the note cleared if the publish
    fails. Noted after, a task that ran and ended first would leave the note for its lease, with
    bulk work waiting on nothing."""
    urgency.note(task_id)
    try:
        publish_send(delivery_ids, queue, schema, task_id)
    except Exception:
        urgency.done(task_id)
        raise


def publish_send(delivery_ids: list[str], queue: str, schema: str, task_id: str | None = None) -> str:
    """Publish one send task for these deliveries of tenant `schema` onto `queue`, to run now; its
    task id (`task_id`, or a new one). Raises what publishing raised."""
    from .tasks import send_deliveries

    direct = _direct_publisher()
    if direct is not None and direct.takes(send_deliveries):
        return direct.publish(send_deliveries, (delivery_ids,), queue, schema, task_id)
    with schema_context(schema):
        return str(send_deliveries.apply_async(args=(delivery_ids,), queue=queue, task_id=task_id).id)


@cache
def _direct_publisher() -> DirectPublisher | None:
    """This process's direct publisher (tenant_platform.broker), if its broker takes one."""
    from .tasks import send_deliveries

    return DirectPublisher.for_app(send_deliveries.app)


def record_events(delivery_ids: Iterable[uuid.UUID | str], status: str, detail: str = "") -> None:
    now = timezone.now()
    events = DeliveryEvent.objects.bulk_create(
        DeliveryEvent(delivery_id=delivery_id, status=status, detail=detail, created_at=now)
        for delivery_id in delivery_ids
    )
    live.events_written(e.id for e in events)


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


def retry(delivery_ids: Iterable[uuid.UUID | str], by: str = "") -> list[str]:
    """Move failed deliveries back to queued and enqueue them; return the ids moved.

    Only the deliveries Delivery.retriable says could be sent move (the same rule, as a query):
    those that reached a provider (attempts > 0). One that failed when it was accepted (no
    address for the channel, content that can't be rendered) would fail the same way again, and
    so would a broadcast's delivery whose broadcast has been deleted since (Delivery.content_gone).
    The attempts history is kept; `next_attempt_at` is cleared so the sweeper and the send task
    treat it as due now.
    """
    ids = [str(i) for i in delivery_ids]
    if not ids:
        return []
    now = timezone.now()
    detail = f"retried from the console by {by}" if by else "retried from the console"
    with transaction.atomic():
        rows = list(
            Delivery.objects.select_for_update(of=("self",))
            .filter(id__in=ids, status__in=RETRY_FROM, attempts__gt=0)
            .exclude(content__has_key=SHARED_KEY, notification__broadcast__isnull=True)
            .values_list("id", "notification__priority")
        )
        moved = [delivery_id for delivery_id, _ in rows]
        if not moved:
            return []
        Delivery.objects.filter(id__in=moved).update(
            status=DeliveryStatus.QUEUED, updated_at=now, next_attempt_at=None
        )
        record_events(moved, DeliveryStatus.QUEUED, detail)
        by_priority: dict[str, list[str]] = {}
        for delivery_id, priority in rows:
            by_priority.setdefault(priority, []).append(str(delivery_id))
        schema = current_schema()
        transaction.on_commit(lambda: enqueue_all(by_priority, schema=schema))
    return [str(i) for i in moved]
