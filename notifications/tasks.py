"""Sending: tasks take delivery ids, claim them, call the provider, record each state change."""

import logging
import random
from typing import Any

from celery import shared_task
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from .models import Channel, Delivery, DeliveryStatus
from .pipeline import record_events
from .providers import smtp
from .providers.base import Message, Outcome
from .rendering import RenderError, render

log = logging.getLogger(__name__)

MAX_RETRIES = 5
BACKOFF_BASE = 2.0  # seconds
BACKOFF_CAP = 300.0


def backoff(retries: int) -> float:
    """Exponential backoff with full jitter."""
    return random.uniform(0, min(BACKOFF_CAP, BACKOFF_BASE * 2**retries))  # noqa: S311 (jitter, not crypto)


def claim(delivery_ids: list[str]) -> list[Delivery]:
    """Move queued deliveries to sending; only the ones this call moved are ours to send.

    A redelivered or replayed message finds its deliveries no longer queued and sends nothing.
    """
    with transaction.atomic():
        claimed = list(
            Delivery.objects.select_for_update(skip_locked=True)
            .filter(id__in=delivery_ids, status=DeliveryStatus.QUEUED)
            .select_related("notification")
        )
        if not claimed:
            return []
        now = timezone.now()
        Delivery.objects.filter(id__in=[d.id for d in claimed]).update(
            status=DeliveryStatus.SENDING, updated_at=now, attempts=F("attempts") + 1
        )
        record_events((d.id for d in claimed), DeliveryStatus.SENDING)
    return claimed


@shared_task(
    bind=True,
    name="notifications.send_deliveries",
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=MAX_RETRIES,
    soft_time_limit=120,
    time_limit=150,
)
def send_deliveries(self: Any, delivery_ids: list[str]) -> dict[str, int]:
    deliveries = claim(delivery_ids)
    messages: list[Message] = []
    for delivery in deliveries:
        if delivery.channel != Channel.EMAIL:
            _finish_failed(delivery, f"channel {delivery.channel!r} has no provider yet")
            continue
        try:
            messages.append(_email_message(delivery))
        except RenderError as exc:
            _finish_failed(delivery, f"template error: {exc}")
    outcomes = smtp.send_batch(messages) if messages else []
    to_retry = _apply_outcomes(outcomes, retries=self.request.retries)
    if to_retry:
        with transaction.atomic():
            Delivery.objects.filter(id__in=to_retry).update(
                status=DeliveryStatus.QUEUED, updated_at=timezone.now()
            )
        raise self.retry(args=[to_retry], countdown=backoff(self.request.retries))
    return {"claimed": len(deliveries), "sent": sum(o.error is None for o in outcomes)}


def _email_message(delivery: Delivery) -> Message:
    notification = delivery.notification
    data = notification.data or {}
    return Message(
        delivery_id=str(delivery.id),
        to=delivery.address,
        subject=render(notification.subject, data),
        text=render(notification.body, data),
    )


def _apply_outcomes(outcomes: list[Outcome], retries: int) -> list[str]:
    """Record each outcome; return the ids of transient failures still worth a retry."""
    now = timezone.now()
    to_retry: list[str] = []
    for outcome in outcomes:
        error = outcome.error
        if error is None:
            Delivery.objects.filter(id=outcome.delivery_id).update(
                status=DeliveryStatus.SENT,
                provider=smtp.NAME,
                provider_message_id=outcome.provider_message_id,
                sent_at=now,
                updated_at=now,
                last_error="",
            )
            record_events([outcome.delivery_id], DeliveryStatus.SENT)
        elif error.permanent or retries >= MAX_RETRIES:
            reason = (
                error.reason if error.permanent else f"gave up after {retries + 1} attempts: {error.reason}"
            )
            Delivery.objects.filter(id=outcome.delivery_id).update(
                status=DeliveryStatus.FAILED, provider=smtp.NAME, last_error=reason, updated_at=now
            )
            record_events([outcome.delivery_id], DeliveryStatus.FAILED, reason)
        else:
            Delivery.objects.filter(id=outcome.delivery_id).update(last_error=error.reason, updated_at=now)
            record_events([outcome.delivery_id], DeliveryStatus.QUEUED, f"will retry: {error.reason}")
            to_retry.append(outcome.delivery_id)
    return to_retry


def _finish_failed(delivery: Delivery, reason: str) -> None:
    Delivery.objects.filter(id=delivery.id).update(
        status=DeliveryStatus.FAILED, last_error=reason, updated_at=timezone.now()
    )
    record_events([delivery.id], DeliveryStatus.FAILED, reason)
