"""Sending webhook messages: claim the due ones, post each signed, log every try, retry or give up.

A task claims messages by moving their `next_attempt_at` to the end of a lease (past the task's
hard time limit) under SELECT ... FOR UPDATE SKIP LOCKED: a repeated or concurrent task finds
nothing due, and if the worker dies the lease runs out and `send_due` (beat) sends them again.

A 2xx is success. 410 Gone turns the endpoint off. Anything else (another status, a timeout, a
refused connection) is retried after base * factor**(n-1) seconds, +-20% jitter, capped (or the
endpoint's Retry-After on 429/503 when that is later), up to `max_attempts` tries; then the
message is failed. Redirects are not followed (a 3xx is a failure the tenant should fix).

When an endpoint can't be reached at all (timeout, refused, blocked), its other messages in the
same batch are not tried again right then: each gets an attempt that says so, and its own retry.
That keeps a dead endpoint from spending a batch's time limit on timeouts, while every message
still moves through its tries and ends.
"""

import logging
import random
import time
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import requests
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from notifications.providers.base import parse_retry_after
from tenants.crypto import DecryptionError
from tenants.schemas import current_schema

from . import service, signing
from .models import Endpoint, MessageStatus, WebhookAttempt, WebhookMessage
from .transport import describe_error, guarded_session

log = logging.getLogger(__name__)

SOFT_TIME_LIMIT = 120
TIME_LIMIT = 150
LEASE = timedelta(seconds=TIME_LIMIT + 30)
CLAIM_CHUNK = 100
EXCERPT_CHARS = 500
MAX_READ = 64 * 1024  # read a small answer whole, so its connection is kept for the next message
DUE_GRACE = timedelta(seconds=10)  # fresh messages are their own task's job, not the sweep's


@dataclass(frozen=True)
class Policy:
    max_attempts: int
    base: float
    factor: float
    cap: float
    connect_timeout: float
    read_timeout: float

    @classmethod
    def current(cls) -> "Policy":
        w = settings.WEBHOOKS
        return cls(
            int(w["max_attempts"]),
            float(w["retry_base"]),
            float(w["retry_factor"]),
            float(w["retry_cap"]),
            float(w["connect_timeout"]),
            float(w["read_timeout"]),
        )

    def backoff(self, tries: int) -> float:
        """Seconds before the try after `tries` failed ones in this round."""
        delay = min(self.cap, self.base * self.factor ** max(tries - 1, 0))
        return delay * random.uniform(0.8, 1.2)  # noqa: S311 (jitter, not cryptography)


@dataclass
class Result:
    status_code: int | None = None
    excerpt: str = ""
    error: str = ""
    retry_after: float | None = None
    unreachable: bool = False  # no HTTP answer at all

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def claim(message_ids: list[int]) -> list[WebhookMessage]:
    """The due pending messages among these, now held by this task until the lease ends."""
    now = timezone.now()
    with transaction.atomic():
        rows = list(
            WebhookMessage.objects.select_for_update(skip_locked=True)
            .filter(id__in=message_ids, status=MessageStatus.PENDING, next_attempt_at__lte=now)
            .order_by("id")
        )
        if rows:
            WebhookMessage.objects.filter(id__in=[m.id for m in rows]).update(next_attempt_at=now + LEASE)
    return rows


def release(messages: list[WebhookMessage]) -> None:
    WebhookMessage.objects.filter(id__in=[m.id for m in messages], status=MessageStatus.PENDING).update(
        next_attempt_at=timezone.now()
    )


def send(message_ids: list[int]) -> dict[str, int]:
    """Send what is due among `message_ids` within the task's time; hand the rest to a new task."""
    policy = Policy.current()
    started = time.monotonic()
    # Stop starting requests while one more could still finish before the soft time limit.
    budget = SOFT_TIME_LIMIT - (policy.connect_timeout + policy.read_timeout) - 5
    todo = list(dict.fromkeys(int(i) for i in message_ids))
    left: list[int] = []
    stats: Counter[str] = Counter()
    endpoints: dict[Any, Endpoint | None] = {}
    unreachable: dict[Any, str] = {}
    session = guarded_session()
    try:
        while todo:
            if time.monotonic() - started > budget:
                left += todo
                break
            chunk, todo = todo[:CLAIM_CHUNK], todo[CLAIM_CHUNK:]
            claimed = claim(chunk)
            missing = {m.endpoint_id for m in claimed} - set(endpoints)
            if missing:
                found = Endpoint.objects.in_bulk(list(missing))
                endpoints.update({eid: found.get(eid) for eid in missing})
            for index, message in enumerate(claimed):
                if time.monotonic() - started > budget:
                    release(claimed[index:])
                    left += [m.id for m in claimed[index:]] + todo
                    todo = []
                    break
                stats[_deliver(session, policy, message, endpoints, unreachable)] += 1
    finally:
        session.close()
    if left:
        service.enqueue(left)
    _schedule_retries([i for i in dict.fromkeys(int(i) for i in message_ids) if i not in set(left)])
    return dict(stats)


def _deliver(
    session: requests.Session,
    policy: Policy,
    message: WebhookMessage,
    endpoints: dict[Any, Endpoint | None],
    unreachable: dict[Any, str],
) -> str:
    endpoint = endpoints.get(message.endpoint_id)
    if endpoint is None or not endpoint.is_active:
        reason = endpoint.disabled_reason if endpoint is not None and endpoint.disabled_reason else ""
        _finish(message, MessageStatus.FAILED, error=reason or "the endpoint is disabled")
        return "failed"
    number = message.attempts + 1
    started_at = timezone.now()
    started = time.monotonic()
    if endpoint.id in unreachable:
        result = Result(error=f"not tried: {unreachable[endpoint.id]} (an earlier message in this batch)")
    else:
        result = _post(session, policy, endpoint, message, number)
        if result.unreachable:
            unreachable[endpoint.id] = result.error
    duration_ms = int((time.monotonic() - started) * 1000)
    return _record(policy, message, endpoint, number, started_at, duration_ms, result)


def _post(
    session: requests.Session, policy: Policy, endpoint: Endpoint, message: WebhookMessage, number: int
) -> Result:
    body = message.body.encode()
    try:
        signature = signing.sign(body, endpoint.signing_secrets())
    except DecryptionError:
        return Result(error="the signing secret cannot be decrypted with the configured keys; rotate it")
    headers = {
        "Content-Type": "application/json",
        "Herald-Event-Id": message.event_id,
        "Herald-Event-Type": message.event_type,
        "Herald-Delivery-Attempt": str(number),
        signing.HEADER: signature,
    }
    started = time.monotonic()
    try:
        response = session.post(
            endpoint.url,
            data=body,
            headers=headers,
            timeout=(policy.connect_timeout, policy.read_timeout),
            allow_redirects=False,
            stream=True,
        )
    except requests.RequestException as exc:
        return Result(error=describe_error(exc), unreachable=True)
    except Exception as exc:  # a URL urllib3 can't use, say: the tenant must see why
        return Result(error=describe_error(exc), unreachable=True)
    try:
        read = bytearray()
        try:
            for chunk in response.iter_content(8192):
                read += chunk
                if len(read) > MAX_READ or time.monotonic() - started > 2 * policy.read_timeout:
                    break
        except requests.RequestException as exc:  # the status is known; the body is a bonus
            read += f"[answer cut: {describe_error(exc)}]".encode()
    finally:
        response.close()
    status = response.status_code
    excerpt = bytes(read).decode("utf-8", "replace")[:EXCERPT_CHARS]
    error = ""
    if not 200 <= status < 300:
        error = f"HTTP {status}" + (" (redirects are not followed)" if 300 <= status < 400 else "")
    retry_after = parse_retry_after(response.headers.get("Retry-After")) if status in (429, 503) else None
    return Result(status_code=status, excerpt=excerpt, error=error, retry_after=retry_after)


def _record(
    policy: Policy,
    message: WebhookMessage,
    endpoint: Endpoint,
    number: int,
    started_at: Any,
    duration_ms: int,
    result: Result,
) -> str:
    now = timezone.now()
    next_retry = None
    if result.succeeded:
        status, outcome = MessageStatus.DELIVERED, "delivered"
    elif result.status_code == 410:
        status, outcome = MessageStatus.FAILED, "failed"
        _disable(endpoint, f"it answered 410 Gone on {now:%Y-%m-%d %H:%M} UTC")
    elif number - message.round_base >= policy.max_attempts:
        status, outcome = MessageStatus.FAILED, "failed"
    else:
        delay = policy.backoff(number - message.round_base)
        if result.retry_after is not None:
            delay = max(delay, min(result.retry_after, policy.cap))
        status, outcome, next_retry = MessageStatus.PENDING, "retry", now + timedelta(seconds=delay)
    try:
        _log_try(message, number, started_at, duration_ms, result, status, next_retry, now)
    except IntegrityError:
        # Its endpoint was deleted while this try was under way: there is nothing left to log.
        log.info("webhooks: message %s was deleted during its try", message.id)
        return "gone"
    return outcome


def _log_try(
    message: WebhookMessage,
    number: int,
    started_at: Any,
    duration_ms: int,
    result: Result,
    status: str,
    next_retry: Any,
    now: Any,
) -> None:
    with transaction.atomic():
        WebhookAttempt.objects.create(
            message=message,
            number=number,
            started_at=started_at,
            duration_ms=duration_ms,
            status_code=result.status_code,
            succeeded=result.succeeded,
            response_excerpt=result.excerpt,
            error=result.error[:1000],
            next_retry_at=next_retry,
        )
        WebhookMessage.objects.filter(id=message.id).update(
            status=status,
            attempts=number,
            next_attempt_at=next_retry,
            last_status_code=result.status_code,
            last_error=result.error[:1000],
            updated_at=now,
            delivered_at=now if result.succeeded else None,
        )


def _finish(message: WebhookMessage, status: str, error: str) -> None:
    WebhookMessage.objects.filter(id=message.id).update(
        status=status, next_attempt_at=None, last_error=error, updated_at=timezone.now()
    )


def _disable(endpoint: Endpoint, reason: str) -> None:
    endpoint.is_active = False
    endpoint.disabled_reason = f"Turned off by Herald: {reason}."
    Endpoint.objects.filter(id=endpoint.id).update(
        is_active=False, disabled_reason=endpoint.disabled_reason, updated_at=timezone.now()
    )
    service.forget_endpoints()
    log.info("webhooks: endpoint %s of %s turned off (410 Gone)", endpoint.id, current_schema())


def _schedule_retries(message_ids: list[int]) -> None:
    """One task, with a countdown, for the retries of these messages that are due soon."""
    if not message_ids:
        return
    horizon = timezone.now() + timedelta(seconds=float(settings.WEBHOOKS["schedule_within"]))
    soon = [
        (message_id, due)
        for message_id, due in WebhookMessage.objects.filter(
            id__in=message_ids, status=MessageStatus.PENDING, next_attempt_at__lte=horizon
        ).values_list("id", "next_attempt_at")
        if due is not None
    ]
    if not soon:
        return
    first = min(due for _, due in soon)
    countdown = max((first - timezone.now()).total_seconds(), 0.0)
    service.enqueue([i for i, _ in soon], countdown=countdown or None)


def enqueue_due(limit: int = 5000, per_task: int = 500) -> int:
    """Publish send tasks for the messages that are due and that no task is about to send."""
    cutoff = timezone.now() - DUE_GRACE
    ids = list(
        WebhookMessage.objects.filter(status=MessageStatus.PENDING, next_attempt_at__lte=cutoff)
        .order_by("next_attempt_at")
        .values_list("id", flat=True)[:limit]
    )
    for start in range(0, len(ids), per_task):
        service.enqueue(ids[start : start + per_task])
    return len(ids)


def prune(limit: int = 10_000) -> dict[str, Any]:
    """Delete delivered and failed messages past the retention period, oldest first."""
    cutoff = timezone.now() - timedelta(days=int(settings.WEBHOOKS["retention_days"]))
    ids = list(
        WebhookMessage.objects.filter(created_at__lt=cutoff)
        .exclude(status=MessageStatus.PENDING)
        .order_by("created_at")
        .values_list("id", flat=True)[:limit]
    )
    with transaction.atomic():
        attempts, _ = WebhookAttempt.objects.filter(message_id__in=ids).delete()
        messages, _ = WebhookMessage.objects.filter(id__in=ids).delete()
    return {"messages": messages, "attempts": attempts}
