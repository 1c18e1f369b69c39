"""Webhooks to tenants' backends: what `on_delivery_events` writes and what a real worker sends.

Each test uses real DeliveryEvent rows (from a notification accepted by the API), a local
receiver that checks every signature with Herald's verify helper, and the session's worker.

Every committed batch of delivery events reaches `on_delivery_events` by itself (notifications.live),
so each notification a test posts writes webhook messages for its queued, sending and sent events
to every endpoint that wants them, in this process and in the worker, during the test and after
it. Tests of the sending machinery therefore give their endpoints only statuses that no automatic
flow here produces (ONLY_FROM_TESTS), and tests that do want the automatic flow look only at the
events of their own notification.
"""

import base64
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
import redis
from django.conf import settings
from django.db import connection, transaction
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_tenants.utils import schema_context

from notifications.models import Delivery, DeliveryEvent
from notifications.webhooks import sender, service, signing
from notifications.webhooks.models import (
    Endpoint,
    MessageStatus,
    WebhookAttempt,
    WebhookMessage,
    all_statuses,
    new_secret,
)
from notifications.webhooks.service import events_from_rows, on_delivery_events
from tenants.task_tenancy import SCHEMA_HEADER
from tests.conftest import REPO, Broker, Persona, Personas, Process, celery_bin, service_env, wait_until
from tests.fakes.smtp_server import FakeSmtpServer
from tests.fakes.webhook_receiver import WebhookReceiver

pytestmark = [pytest.mark.worker]

# An in-app or email notification here goes queued -> sending -> sent by itself (the local SMTP
# server reports nothing back); these statuses come only from events a test writes by hand.
ONLY_FROM_TESTS = ["delivered", "failed", "bounced"]
AUTOMATIC = ["queued", "sending", "sent"]


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    server = WebhookReceiver().start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _no_endpoints_left(live_db: None, personas: Personas) -> Iterator[None]:
    yield
    for persona in (personas.alpha, personas.beta):
        with schema_context(persona.tenant.schema_name):
            # The worker may still be writing or sending messages of notifications this test
            # posted: delete_endpoint copes with that, as it must in the console.
            for endpoint in Endpoint.objects.all():
                service.delete_endpoint(endpoint)
            service.forget_endpoints()


def add_endpoint(
    persona: Persona, receiver: WebhookReceiver, path: str, statuses: list[str] | None = None
) -> Endpoint:
    """An active endpoint at the receiver; by default it wants only the statuses tests write."""
    secret = new_secret()
    with schema_context(persona.tenant.schema_name):
        endpoint = Endpoint(url=receiver.url(path), statuses=statuses or ONLY_FROM_TESTS)
        endpoint.set_secret(secret)
        endpoint.save()
    receiver.secrets.append(secret)
    return endpoint


def notify(persona: Persona, channels: tuple[str, ...] = ("in_app",)) -> str:
    body = {
        "recipient": {"external_id": "u-hook", "email": "hook@example.com"},
        "channels": list(channels),
        "subject": "Hi",
        "body": "Hello",
    }
    response = persona.client().post(
        "/api/v1/notifications", json.dumps(body), content_type="application/json"
    )
    assert response.status_code == 202, response.content
    notification_id: str = response.json()["id"]
    return notification_id


def events_of(persona: Persona, notification_id: str, status: str | None = None) -> list[dict[str, Any]]:
    with schema_context(persona.tenant.schema_name):
        rows = DeliveryEvent.objects.filter(delivery__notification_id=notification_id)
        if status:
            rows = rows.filter(status=status)
        return events_from_rows(rows.select_related("delivery__notification").order_by("id"))


def an_event(
    persona: Persona, status: str, detail: str = "", notification_id: str | None = None
) -> list[dict[str, Any]]:
    """A real DeliveryEvent row with this status (on a delivery of a new notification, by default).

    Written straight to the table, so nothing reports it: the test does, with `report`."""
    notification_id = notification_id or notify(persona)
    with schema_context(persona.tenant.schema_name):
        delivery = Delivery.objects.get(notification_id=notification_id)
        event = DeliveryEvent.objects.create(delivery=delivery, status=status, detail=detail)
        return events_from_rows(
            DeliveryEvent.objects.filter(id=event.id).select_related("delivery__notification")
        )


def event_ids(events: list[dict[str, Any]]) -> set[str]:
    """The webhook event ids (`evt_<DeliveryEvent id>`) of these events."""
    return {f"evt_{e['id']}" for e in events}


def report(persona: Persona, events: list[dict[str, Any]]) -> int:
    with schema_context(persona.tenant.schema_name):
        return on_delivery_events(events)


def messages_of(
    persona: Persona, endpoint: Endpoint, events: list[dict[str, Any]] | None = None
) -> list[WebhookMessage]:
    """The endpoint's messages (only those of these events, if given)."""
    with schema_context(persona.tenant.schema_name):
        rows = WebhookMessage.objects.filter(endpoint=endpoint)
        if events is not None:
            rows = rows.filter(event_id__in=event_ids(events))
        return list(rows.order_by("id"))


def attempts_of(
    persona: Persona, endpoint: Endpoint, events: list[dict[str, Any]] | None = None
) -> list[WebhookAttempt]:
    with schema_context(persona.tenant.schema_name):
        rows = WebhookAttempt.objects.filter(message__endpoint=endpoint)
        if events is not None:
            rows = rows.filter(message__event_id__in=event_ids(events))
        return list(rows.order_by("id"))


def settled(
    persona: Persona, endpoint: Endpoint, count: int, events: list[dict[str, Any]] | None = None
) -> list[WebhookMessage]:
    """Wait until `count` messages of the endpoint (of these events, if given) are delivered or failed."""

    def done() -> list[WebhookMessage] | None:
        rows = messages_of(persona, endpoint, events)
        finished = [m for m in rows if m.status != MessageStatus.PENDING]
        return rows if len(rows) >= count and len(finished) == len(rows) else None

    result: list[WebhookMessage] = wait_until(done, timeout=30)
    return result


def test_a_state_change_reaches_the_tenants_backend_signed(
    worker: Process, personas: Personas, receiver: WebhookReceiver
) -> None:
    endpoint = add_endpoint(personas.alpha, receiver, "/alpha", statuses=["queued"])
    notification_id = notify(personas.alpha, channels=("email", "in_app"))
    events = events_of(personas.alpha, notification_id, status="queued")
    assert len(events) == 2

    # Written when the notification was accepted, without anyone reporting them by hand.
    assert {m.event_id for m in messages_of(personas.alpha, endpoint, events)} == event_ids(events)
    assert report(personas.alpha, events) == 0

    (first, second) = settled(personas.alpha, endpoint, 2, events)
    assert first.status == second.status == MessageStatus.DELIVERED
    got = [r for r in receiver.at("/alpha") if r.json()["id"] in event_ids(events)]
    assert len(got) == 2
    assert all(r.verified for r in got)
    by_event = {r.json()["id"]: r for r in got}
    event = events[0]
    sent = by_event[f"evt_{event['id']}"]
    assert sent.json() == {
        "id": f"evt_{event['id']}",
        "type": "delivery.queued",
        "created_at": event["at"],
        "data": {
            "delivery": event["delivery"],
            "notification": notification_id,
            "broadcast": None,
            "channel": event["channel"],
            "status": "queued",
            "detail": "",
        },
    }
    assert sent.headers["Herald-Event-Id"] == f"evt_{event['id']}"
    assert sent.headers["Herald-Delivery-Attempt"] == "1"
    assert sent.headers["Content-Type"] == "application/json"
    (attempt, _) = attempts_of(personas.alpha, endpoint, events)
    assert attempt.status_code == 200
    assert attempt.succeeded
    assert attempt.next_retry_at is None
    assert '"ok"' in attempt.response_excerpt


def test_a_failing_backend_gets_retries_with_growing_gaps_until_it_answers_and_every_try_is_logged(
    worker: Process, personas: Personas, receiver: WebhookReceiver
) -> None:
    endpoint = add_endpoint(personas.alpha, receiver, "/flaky")
    receiver.fail(2, status=503)

    assert report(personas.alpha, an_event(personas.alpha, "failed", "SMTP said no")) == 1

    (message,) = settled(personas.alpha, endpoint, 1)
    assert message.status == MessageStatus.DELIVERED
    assert message.attempts == 3
    got = receiver.at("/flaky")
    assert [r.attempt for r in got] == [1, 2, 3]
    assert len({r.body for r in got}) == 1  # every try sends the same bytes
    assert all(r.verified for r in got)
    assert got[0].json()["data"]["detail"] == "SMTP said no"
    attempts = attempts_of(personas.alpha, endpoint)
    assert [(a.number, a.status_code, a.succeeded) for a in attempts] == [
        (1, 503, False),
        (2, 503, False),
        (3, 200, True),
    ]
    assert attempts[0].error == "HTTP 503"
    assert all(a.duration_ms >= 0 for a in attempts)
    # Exponential backoff with +-20% jitter: about base, then base * factor.
    base, factor = settings.WEBHOOKS["retry_base"], settings.WEBHOOKS["retry_factor"]
    first_gap = _delay(attempts[0].started_at, attempts[0].next_retry_at)
    second_gap = _delay(attempts[1].started_at, attempts[1].next_retry_at)
    assert 0.8 * base <= first_gap <= 1.2 * base + 0.5
    assert 0.8 * base * factor <= second_gap <= 1.2 * base * factor + 0.5
    assert got[2].at - got[1].at >= 0.8 * base * factor - 0.05


def _delay(start: datetime, due: datetime | None) -> float:
    assert due is not None
    return (due - start).total_seconds()


def test_after_its_last_try_a_message_is_failed_and_not_sent_again(
    worker: Process, personas: Personas, receiver: WebhookReceiver
) -> None:
    endpoint = add_endpoint(personas.alpha, receiver, "/down")
    receiver.fail(100, status=500)

    report(personas.alpha, an_event(personas.alpha, "bounced"))

    (message,) = settled(personas.alpha, endpoint, 1)
    tries = settings.WEBHOOKS["max_attempts"]
    assert message.status == MessageStatus.FAILED
    assert message.attempts == tries
    assert message.last_status_code == 500
    assert message.next_attempt_at is None
    attempts = attempts_of(personas.alpha, endpoint)
    assert [a.number for a in attempts] == list(range(1, tries + 1))
    assert attempts[-1].next_retry_at is None
    time.sleep(1.0)
    assert len(receiver.at("/down")) == tries


def test_a_tenant_without_endpoints_pays_no_query_and_gets_nothing_written(personas: Personas) -> None:
    notification_id = notify(personas.beta)
    events = events_of(personas.beta, notification_id) * 500  # a big batch
    report(personas.beta, events)  # the first call may read the endpoints; later ones must not

    with schema_context(personas.beta.tenant.schema_name), CaptureQueriesContext(connection) as queries:
        written = on_delivery_events(events)
    assert written == 0
    assert queries.captured_queries == []
    with schema_context(personas.beta.tenant.schema_name):
        assert not WebhookMessage.objects.exists()


def test_a_new_endpoint_receives_the_next_batch_at_once(
    worker: Process, personas: Personas, receiver: WebhookReceiver
) -> None:
    report(personas.beta, an_event(personas.beta, "delivered"))  # caches "no endpoint"
    endpoint = add_endpoint(personas.beta, receiver, "/new")

    assert report(personas.beta, an_event(personas.beta, "delivered")) == 1
    settled(personas.beta, endpoint, 1)


def test_an_endpoint_gets_only_the_statuses_it_asked_for(
    worker: Process, personas: Personas, receiver: WebhookReceiver
) -> None:
    endpoint = add_endpoint(personas.alpha, receiver, "/failures", statuses=["failed", "bounced"])
    # A witness that wants the rest: its messages are written by the same calls that would have
    # written any for /failures, so once it has the `sent` event the whole flow was offered.
    witness = add_endpoint(personas.alpha, receiver, "/witness", statuses=AUTOMATIC)
    notification_id = notify(personas.alpha)

    sent = wait_until(lambda: events_of(personas.alpha, notification_id, status="sent"))
    flow = events_of(personas.alpha, notification_id)
    assert {e["status"] for e in flow} == set(AUTOMATIC)
    wait_until(lambda: len(messages_of(personas.alpha, witness, sent)) == 1)
    assert len(messages_of(personas.alpha, witness, flow)) == len(flow)
    assert messages_of(personas.alpha, endpoint) == []
    assert report(personas.alpha, flow) == 0  # nothing for /failures, already written for the witness
    assert report(personas.alpha, an_event(personas.alpha, "failed", "mailbox full")) == 1

    (message,) = settled(personas.alpha, endpoint, 1)
    assert message.event_type == "delivery.failed"
    assert [r.json()["type"] for r in receiver.at("/failures")] == ["delivery.failed"]


def test_one_tenants_events_never_reach_another_tenants_endpoint(
    worker: Process, personas: Personas, receiver: WebhookReceiver
) -> None:
    alpha = add_endpoint(personas.alpha, receiver, "/alpha", statuses=all_statuses())
    beta = add_endpoint(personas.beta, receiver, "/beta", statuses=all_statuses())
    notification_id = notify(personas.alpha)  # its flow is reported by this process and the worker
    wait_until(lambda: events_of(personas.alpha, notification_id, status="sent"))
    assert report(personas.alpha, an_event(personas.alpha, "delivered", notification_id=notification_id)) == 1
    events = events_of(personas.alpha, notification_id)
    assert [e["status"] for e in events] == [*AUTOMATIC, "delivered"]

    settled(personas.alpha, alpha, 4, events)
    time.sleep(0.5)
    got = [r for r in receiver.at("/alpha") if r.json()["id"] in event_ids(events)]
    assert len(got) == 4
    assert all(r.verified for r in got)
    # Beta's endpoint hears only of beta's own deliveries (an earlier test's may still be going on).
    bodies = [r.json() for r in receiver.at("/beta")] + [
        json.loads(m.body) for m in messages_of(personas.beta, beta)
    ]
    assert not [b for b in bodies if b["data"]["notification"] == notification_id]
    with schema_context(personas.beta.tenant.schema_name):
        assert all(Delivery.objects.filter(id=b["data"]["delivery"]).exists() for b in bodies)


def test_the_same_event_reported_twice_is_sent_once(
    worker: Process, personas: Personas, receiver: WebhookReceiver
) -> None:
    endpoint = add_endpoint(personas.alpha, receiver, "/once")
    events = an_event(personas.alpha, "delivered")

    assert report(personas.alpha, events) == 1
    assert report(personas.alpha, events) == 0

    settled(personas.alpha, endpoint, 1)
    time.sleep(0.5)
    assert len(receiver.at("/once")) == 1


def test_an_endpoint_deleted_since_it_was_cached_gets_nothing_and_the_others_still_do(
    worker: Process, personas: Personas, receiver: WebhookReceiver
) -> None:
    kept = add_endpoint(personas.alpha, receiver, "/kept")
    gone = add_endpoint(personas.alpha, receiver, "/deleted")
    with schema_context(personas.alpha.tenant.schema_name):
        stale = service.active_endpoints()
        service.delete_endpoint(gone)
        service.active_endpoints()  # this process has seen the delete's invalidation...
        # ...and holds the endpoints as a process that read them just before the delete.
        service._endpoints._entries[personas.alpha.tenant.schema_name] = (time.monotonic(), stale)
        assert service.active_endpoints() == stale

    assert report(personas.alpha, an_event(personas.alpha, "delivered")) == 1

    settled(personas.alpha, kept, 1)
    assert len(receiver.at("/kept")) == 1


def test_a_tenants_endpoints_are_read_once_per_process_until_one_changes(
    personas: Personas, receiver: WebhookReceiver
) -> None:
    schema = personas.beta.tenant.schema_name
    with schema_context(schema):
        assert service.active_endpoints() == []
        with CaptureQueriesContext(connection) as queries:
            assert service.active_endpoints() == []  # kept: no query
        assert len(queries) == 0
    endpoint = add_endpoint(personas.beta, receiver, "/new")  # saved: every process drops its copy
    with schema_context(schema):
        assert service.active_endpoints() == [(str(endpoint.id), frozenset(ONLY_FROM_TESTS))]


def test_bad_events_are_logged_and_never_raise(
    personas: Personas, receiver: WebhookReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    add_endpoint(personas.alpha, receiver, "/bad")

    assert report(personas.alpha, [{"id": 1, "status": "failed"}]) == 0  # no delivery, no time
    assert "could not write messages" in caplog.text


def test_gone_turns_the_endpoint_off(worker: Process, personas: Personas, receiver: WebhookReceiver) -> None:
    endpoint = add_endpoint(personas.alpha, receiver, "/gone")
    receiver.fail(1, status=410)

    report(personas.alpha, an_event(personas.alpha, "delivered"))

    (message,) = settled(personas.alpha, endpoint, 1)
    assert message.status == MessageStatus.FAILED
    assert message.attempts == 1
    with schema_context(personas.alpha.tenant.schema_name):
        endpoint.refresh_from_db()
    assert not endpoint.is_active
    assert "410 Gone" in endpoint.disabled_reason
    assert report(personas.alpha, an_event(personas.alpha, "failed")) == 0  # the cache knows


def test_a_redirect_is_not_followed(worker: Process, personas: Personas, receiver: WebhookReceiver) -> None:
    endpoint = add_endpoint(personas.alpha, receiver, "/moved")
    receiver.fail(1, status=302, Location=receiver.url("/elsewhere"))

    report(personas.alpha, an_event(personas.alpha, "delivered"))

    settled(personas.alpha, endpoint, 1)
    assert receiver.at("/elsewhere") == []
    first = attempts_of(personas.alpha, endpoint)[0]
    assert first.status_code == 302
    assert "redirects are not followed" in first.error


def test_messages_whose_task_was_lost_are_sent_by_the_periodic_sweep(
    worker: Process, personas: Personas, receiver: WebhookReceiver
) -> None:
    endpoint = add_endpoint(personas.alpha, receiver, "/swept")
    events = an_event(personas.alpha, "delivered")
    with schema_context(personas.alpha.tenant.schema_name):
        # As if the broker had dropped the send task: rows written, nothing enqueued.
        ids = service._write(events, service.active_endpoints())
        WebhookMessage.objects.filter(id__in=ids).update(
            next_attempt_at=timezone.now() - timedelta(minutes=1)
        )
        time.sleep(0.5)
        assert receiver.at("/swept") == []
        from notifications.webhooks.tasks import send_due

        assert send_due.apply().get() == 1

    (message,) = settled(personas.alpha, endpoint, 1)
    assert message.status == MessageStatus.DELIVERED


# In this process, with no retry published (the session's worker would take it).
@override_settings(WEBHOOKS={**settings.WEBHOOKS, "schedule_within": 0})
def test_an_unreachable_endpoint_costs_one_timeout_per_batch_and_every_message_is_logged(
    personas: Personas, receiver: WebhookReceiver
) -> None:
    endpoint = add_endpoint(personas.alpha, receiver, "/slow")
    receiver.delay = settings.WEBHOOKS["read_timeout"] + 1
    with schema_context(personas.alpha.tenant.schema_name):
        ids = service._write(
            an_event(personas.alpha, "failed") + an_event(personas.alpha, "delivered"),
            service.active_endpoints(),
        )
        started = time.monotonic()
        stats = sender.send(ids)  # in this process: the worker must not pick them up first
        took = time.monotonic() - started
    assert stats == {"retry": 2}
    assert took < 2 * settings.WEBHOOKS["read_timeout"]
    first, second = attempts_of(personas.alpha, endpoint)
    assert first.error == f"no answer within {settings.WEBHOOKS['read_timeout']:g} s"
    assert second.error.startswith("not tried: no answer within")
    assert first.next_retry_at is not None
    assert second.next_retry_at is not None
    assert len(receiver.at("/slow")) == 1


@override_settings(WEBHOOKS={**settings.WEBHOOKS, "allow_local": False, "schedule_within": 0})
def test_in_production_a_private_address_is_never_called_and_the_attempt_says_why(
    personas: Personas, receiver: WebhookReceiver
) -> None:
    endpoint = add_endpoint(personas.alpha, receiver, "/internal")  # saved as it was in development
    with schema_context(personas.alpha.tenant.schema_name):
        ids = service._write(an_event(personas.alpha, "delivered"), service.active_endpoints())
        sender.send(ids)
    (attempt,) = attempts_of(personas.alpha, endpoint)
    assert "127.0.0.1 resolves to 127.0.0.1, a private or reserved address" in attempt.error
    assert receiver.received == []


def test_old_sent_and_failed_messages_are_pruned_and_pending_ones_kept(
    personas: Personas, receiver: WebhookReceiver
) -> None:
    endpoint = add_endpoint(personas.alpha, receiver, "/old")
    old = timezone.now() - timedelta(days=settings.WEBHOOKS["retention_days"] + 1)
    with schema_context(personas.alpha.tenant.schema_name):
        rows = {
            status: WebhookMessage.objects.create(
                endpoint=endpoint,
                event_id=f"evt_{status}",
                event_type="t",
                body="{}",
                status=status,
                created_at=old,
            )
            for status in MessageStatus.values
        }
        WebhookAttempt.objects.create(message=rows[MessageStatus.DELIVERED], number=1)
        recent = WebhookMessage.objects.create(
            endpoint=endpoint,
            event_id="evt_recent",
            event_type="t",
            body="{}",
            status=MessageStatus.DELIVERED,
        )

        assert sender.prune() == {"messages": 2, "attempts": 1}

        left = set(WebhookMessage.objects.values_list("id", flat=True))
    assert left == {rows[MessageStatus.PENDING].id, recent.id}


def test_a_later_retry_after_is_respected(
    worker: Process, personas: Personas, receiver: WebhookReceiver
) -> None:
    endpoint = add_endpoint(personas.alpha, receiver, "/busy")
    receiver.fail(1, status=429, Retry_After="1")

    report(personas.alpha, an_event(personas.alpha, "delivered"))

    settled(personas.alpha, endpoint, 1)
    first, second = attempts_of(personas.alpha, endpoint)
    assert first.status_code == 429
    assert second.succeeded
    assert _delay(first.started_at, first.next_retry_at) >= 1.0  # not the 0.3 s of the backoff
    got = receiver.at("/busy")
    assert got[1].at - got[0].at >= 0.95


def test_a_failed_message_resent_from_the_console_gets_a_new_round_and_arrives(
    worker: Process, personas: Personas, receiver: WebhookReceiver
) -> None:
    endpoint = add_endpoint(personas.alpha, receiver, "/later")
    tries = settings.WEBHOOKS["max_attempts"]
    receiver.fail(tries, status=500)
    report(personas.alpha, an_event(personas.alpha, "failed"))
    (message,) = settled(personas.alpha, endpoint, 1)
    assert message.status == MessageStatus.FAILED

    with schema_context(personas.alpha.tenant.schema_name):
        service.resend(message)

    wait_until(lambda: messages_of(personas.alpha, endpoint)[0].status == MessageStatus.DELIVERED, timeout=20)
    got = receiver.at("/later")
    assert [r.attempt for r in got] == list(range(1, tries + 2))
    assert got[-1].verified


def test_a_test_event_reaches_the_endpoint_whatever_its_filter(
    worker: Process, personas: Personas, receiver: WebhookReceiver
) -> None:
    endpoint = add_endpoint(personas.alpha, receiver, "/test", statuses=["bounced"])
    with schema_context(personas.alpha.tenant.schema_name):
        service.send_test_event(endpoint)

    settled(personas.alpha, endpoint, 1)
    (got,) = receiver.at("/test")
    assert got.verified
    assert got.json()["type"] == "webhook.test"
    assert got.headers["Herald-Event-Type"] == "webhook.test"


def test_an_email_posted_through_the_api_reaches_an_endpoint_as_signed_queued_sending_and_sent_by_itself(
    worker: Process, personas: Personas, receiver: WebhookReceiver
) -> None:
    endpoint = add_endpoint(personas.alpha, receiver, "/everything", statuses=all_statuses())
    (secret,) = receiver.secrets

    notification_id = notify(personas.alpha, channels=("email",))  # and nothing reported by hand

    with schema_context(personas.alpha.tenant.schema_name):
        delivery_id = str(Delivery.objects.get(notification_id=notification_id).id)

    def received() -> dict[str, Any] | None:
        mine = {
            r.json()["type"]: r
            for r in receiver.at("/everything")
            if r.json()["data"]["delivery"] == delivery_id
        }
        return mine if len(mine) == 3 else None

    got = wait_until(received, timeout=30)
    assert set(got) == {"delivery.queued", "delivery.sending", "delivery.sent"}
    events = {e["status"]: e for e in events_of(personas.alpha, notification_id)}
    assert set(events) == set(AUTOMATIC)
    for status, event in events.items():
        request = got[f"delivery.{status}"]
        assert signing.verify(request.body, request.headers[signing.HEADER], secret)
        assert not signing.verify(request.body, request.headers[signing.HEADER], new_secret())
        assert request.headers["Herald-Event-Id"] == f"evt_{event['id']}"
        assert request.json()["data"] == {
            "delivery": delivery_id,
            "notification": notification_id,
            "broadcast": None,
            "channel": "email",
            "status": status,
            "detail": event["detail"],
        }
    # One message per event, each delivered at its first try.
    messages = settled(personas.alpha, endpoint, 3, list(events.values()))
    assert sorted(m.event_type for m in messages) == ["delivery.queued", "delivery.sending", "delivery.sent"]
    assert all(m.status == MessageStatus.DELIVERED and m.attempts == 1 for m in messages)
    time.sleep(0.5)
    mine = [r for r in receiver.at("/everything") if r.json()["data"]["delivery"] == delivery_id]
    assert len(mine) == 3


def test_an_endpoint_is_deleted_even_while_a_try_of_one_of_its_messages_is_being_logged(
    personas: Personas, receiver: WebhookReceiver
) -> None:
    endpoint = add_endpoint(personas.alpha, receiver, "/deleted-mid-send")
    schema = personas.alpha.tenant.schema_name
    with schema_context(schema):
        message = WebhookMessage.objects.create(
            endpoint=endpoint, event_id="evt_race", event_type="t", body="{}"
        )
    logging = threading.Event()
    finish = threading.Event()
    errors: list[Exception] = []

    def log_a_try() -> None:  # what the sender does after an answer, held open here
        try:
            with schema_context(schema), transaction.atomic():
                WebhookAttempt.objects.create(
                    message_id=message.id, number=1, status_code=200, succeeded=True
                )
                WebhookMessage.objects.filter(id=message.id).update(
                    attempts=1, status=MessageStatus.DELIVERED
                )
                logging.set()
                finish.wait(20)
        finally:
            connection.close()

    def delete() -> None:  # what the console's Delete does
        try:
            with schema_context(schema):
                service.delete_endpoint(endpoint)
        except Exception as exc:
            errors.append(exc)
        finally:
            connection.close()

    sender_thread = threading.Thread(target=log_a_try)
    sender_thread.start()
    assert logging.wait(20)
    delete_thread = threading.Thread(target=delete)
    delete_thread.start()
    wait_until(_someone_waits_for_a_lock)  # the delete reached the message the try holds
    finish.set()
    sender_thread.join(20)
    delete_thread.join(20)

    assert errors == []
    with schema_context(schema):
        assert not Endpoint.objects.filter(id=endpoint.id).exists()
        assert not WebhookMessage.objects.filter(id=message.id).exists()
        assert not WebhookAttempt.objects.filter(message_id=message.id).exists()


def _someone_waits_for_a_lock() -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        (count,) = cursor.fetchone()
    return bool(count)


# In this process, with no retry published (the session's worker would take it).
@override_settings(WEBHOOKS={**settings.WEBHOOKS, "schedule_within": 0})
def test_a_message_whose_endpoint_is_deleted_during_its_try_is_dropped_and_the_batch_goes_on(
    personas: Personas, receiver: WebhookReceiver
) -> None:
    doomed = add_endpoint(personas.alpha, receiver, "/doomed")
    kept = add_endpoint(personas.alpha, receiver, "/kept")
    schema = personas.alpha.tenant.schema_name

    def delete_the_endpoint(request: Any) -> None:  # as if an admin pressed Delete meanwhile
        if request.path == "/doomed":
            try:
                with schema_context(schema):
                    service.delete_endpoint(doomed)
            finally:
                connection.close()

    receiver.on_receive = delete_the_endpoint
    with schema_context(schema):
        ids = service._write(an_event(personas.alpha, "delivered"), service.active_endpoints())
        assert len(ids) == 2
        stats = sender.send(ids)

    assert stats == {"gone": 1, "delivered": 1}
    assert [r.path for r in receiver.received] == ["/doomed", "/kept"]
    with schema_context(schema):
        assert not Endpoint.objects.filter(id=doomed.id).exists()
        assert not WebhookMessage.objects.filter(endpoint_id=doomed.id).exists()
        assert not WebhookAttempt.objects.filter(message__endpoint_id=doomed.id).exists()
    (message,) = messages_of(personas.alpha, kept)
    assert message.status == MessageStatus.DELIVERED


# --- The webhook queue --------------------------------------------------------------------------
# Webhook sends have a queue of their own (WEBHOOK_QUEUE, default `webhooks`): a tenant's slow
# backend never takes the default pool's turn from normal sends, nor counts in the length of
# `default` that the fair dispatcher reads. These tests publish from a process of their own, with
# Herald's settings as its environment gives them, to a broker of their own that the session's
# worker does not read: what was published stays there to be looked at.

_SEND_TEST_EVENT = """
import sys

import django

django.setup()

from django_tenants.utils import schema_context

from notifications.webhooks import service
from notifications.webhooks.models import Endpoint

with schema_context(sys.argv[1]):
    print(service.send_test_event(Endpoint.objects.get(id=sys.argv[2])).id)
"""


def send_test_event_elsewhere(
    persona: Persona, endpoint: Endpoint, broker: Broker, smtp_server: FakeSmtpServer, **environ: str
) -> int:
    """The console's "Send a test event" in a process whose broker is `broker` and whose
    environment sets no WEBHOOK_QUEUE unless `environ` does; the message's id."""
    env = service_env(smtp_server.url, TEST_CELERY_BROKER_URL=broker.url)
    env.pop("WEBHOOK_QUEUE", None)
    env.update(environ)
    done = subprocess.run(
        [sys.executable, "-c", _SEND_TEST_EVENT, persona.tenant.schema_name, str(endpoint.id)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return int(done.stdout.split()[-1])


def waiting_in(broker: Broker) -> dict[str, list[dict[str, Any]]]:
    """Every task message waiting in the broker, by queue: its task, tenant and arguments."""
    client = redis.Redis.from_url(broker.url)
    found: dict[str, list[dict[str, Any]]] = {}
    for key in client.scan_iter():
        if client.type(key) != b"list":  # kombu's bindings are sets; queues are lists
            continue
        for raw in client.lrange(key, 0, -1):
            message = json.loads(raw)
            args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
            found.setdefault(key.decode(), []).append(
                {
                    "task": message["headers"]["task"],
                    "tenant": message["headers"][SCHEMA_HEADER],
                    "args": args,
                }
            )
    return found


def test_a_webhook_send_waits_in_the_webhooks_queue_and_a_pool_on_that_queue_alone_sends_it(
    personas: Personas, receiver: WebhookReceiver, smtp_server: FakeSmtpServer, broker: Broker
) -> None:
    endpoint = add_endpoint(personas.alpha, receiver, "/own-queue")
    message_id = send_test_event_elsewhere(personas.alpha, endpoint, broker, smtp_server)

    send = {"task": "webhooks.send_messages", "tenant": "alpha", "args": [[message_id]]}
    assert waiting_in(broker) == {"webhooks": [send]}  # nothing in `default`, nor anywhere else
    # A worker as deploy/Procfile's worker-webhooks (one process here), reading only `webhooks`.
    pool = Process(
        "worker-webhooks",
        [
            celery_bin(),
            "-A",
            "tenant_platform",
            "worker",
            "-Q",
            "webhooks",
            "-c",
            "1",
            "-l",
            "info",
            "-n",
            f"webhooks-{os.getpid()}@%h",
            "--without-gossip",
            "--without-mingle",
        ],
        service_env(smtp_server.url, TEST_CELERY_BROKER_URL=broker.url),
    )
    try:
        pool.wait_for_log("ready.", timeout=60)
        (message,) = settled(personas.alpha, endpoint, 1)
    finally:
        pool.stop()
    assert message.status == MessageStatus.DELIVERED
    (got,) = receiver.at("/own-queue")
    assert got.verified
    assert got.json()["type"] == "webhook.test"
    assert waiting_in(broker) == {}


def test_webhook_queue_puts_the_sends_in_the_queue_it_names(
    personas: Personas, receiver: WebhookReceiver, smtp_server: FakeSmtpServer, broker: Broker
) -> None:
    endpoint = add_endpoint(personas.alpha, receiver, "/default-queue")
    message_id = send_test_event_elsewhere(
        personas.alpha, endpoint, broker, smtp_server, WEBHOOK_QUEUE="default"
    )

    send = {"task": "webhooks.send_messages", "tenant": "alpha", "args": [[message_id]]}
    assert waiting_in(broker) == {"default": [send]}
