"""A send claims its deliveries (tasks.claim): only queued ones, and not before a retry is due."""

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone
from django_tenants.utils import schema_context

from notifications import tasks
from notifications.models import Delivery, DeliveryStatus, Notification, Recipient
from tests.conftest import Personas

pytestmark = pytest.mark.django_db


def queued_delivery(**fields: object) -> Delivery:
    recipient = Recipient.objects.create(external_id=f"u-{uuid.uuid4()}", email="ana@example.com")
    notification = Notification.objects.create(recipient=recipient, body="B", channels=["email"])
    return Delivery.objects.create(
        notification=notification,
        channel="email",
        address="ana@example.com",
        content={"subject": "S", "text": "B"},
        **fields,
    )


def test_a_delivery_waiting_for_its_retry_is_not_claimed_before_it_is_due(personas: Personas) -> None:
    """A copy of its batch arriving early (redelivered, or re-sent by the sweeper) must not send it
    before the backoff the provider asked for (Retry-After) has passed."""
    with schema_context("alpha"):
        waiting = queued_delivery(attempts=1, next_attempt_at=timezone.now() + timedelta(seconds=30))
        due = queued_delivery(attempts=1, next_attempt_at=timezone.now() - timedelta(seconds=1))
        fresh = queued_delivery()
        claimed = {c.id for c in tasks.claim([str(waiting.id), str(due.id), str(fresh.id)])}
        assert claimed == {str(due.id), str(fresh.id)}
        waiting.refresh_from_db()
        assert (waiting.status, waiting.attempts) == (DeliveryStatus.QUEUED, 1)

        Delivery.objects.filter(pk=waiting.pk).update(next_attempt_at=timezone.now())
        assert [c.id for c in tasks.claim([str(waiting.id)])] == [str(waiting.id)]  # due now
        assert tasks.claim([str(waiting.id)]) == []  # and claimed once


def test_a_send_that_meets_a_delivery_not_yet_due_publishes_it_for_then(
    personas: Personas, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If its retry message came early (a worker's clock) or was never published (its worker died
    in between), the delivery is published again for when it is due, not left to the sweeper.
    (What is published is captured at `enqueue`, the broker's door; the rows are real.)"""
    published: list[tuple[list[str], str, float | None]] = []
    monkeypatch.setattr(
        tasks, "enqueue", lambda ids, priority, countdown=None: published.append((ids, priority, countdown))
    )
    with schema_context("alpha"):
        waiting = queued_delivery(attempts=1, next_attempt_at=timezone.now() + timedelta(seconds=30))
        sent_already = queued_delivery(status=DeliveryStatus.SENT)
        tasks._send([str(waiting.id), str(sent_already.id)])
    ((ids, priority, countdown),) = published
    assert (ids, priority) == ([str(waiting.id)], "normal")
    assert countdown is not None
    assert 28 < countdown <= 30
