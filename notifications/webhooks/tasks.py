"""Webhook tasks (tenant tasks: each runs in the schema its signed header names)."""

from typing import Any

from celery import shared_task

from . import sender


@shared_task(
    name="webhooks.send_messages",
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
    soft_time_limit=sender.SOFT_TIME_LIMIT,
    time_limit=sender.TIME_LIMIT,
)
def send_messages(message_ids: list[int]) -> dict[str, int]:
    """Send these messages where they are due (a redelivered message sends nothing twice)."""
    return sender.send(message_ids)


@shared_task(name="webhooks.send_due", ignore_result=True, soft_time_limit=60, time_limit=90)
def send_due() -> int:
    """Enqueue the tenant's due messages: retries scheduled past a countdown, lost tasks (beat)."""
    return sender.enqueue_due()


@shared_task(name="webhooks.prune", ignore_result=True, soft_time_limit=120, time_limit=150)
def prune() -> dict[str, Any]:
    """Delete delivered and failed messages older than the retention period."""
    return sender.prune()
