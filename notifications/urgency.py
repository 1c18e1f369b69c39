"""Bulk work steps aside while urgent work is in flight.

Queues and pools keep a critical or normal message from waiting in a queue behind bulk work,
but the pools still share the machine's CPU and the database: a broadcast sending at full speed
doubled another tenant's critical latency on two cores (`bench/noisy_neighbour.py`). So every
non-bulk send is noted in Redis from its publish to the end of its task, and a bulk task about
to start its next batch (a send batch or a fan-out chunk) waits while any is noted, for at most
`BULK_YIELD_MAX_MS`. Inside a bulk task, `checkpoint()` between its heavy steps (the
claim, the provider call, the write of the results; a chunk's upsert and inserts) waits the same
way, so urgent work that arrives mid-batch shares the machine with at most one statement of it.

Bulk work is slowed, never stopped. Urgent work can be in flight all the time (a tenant sending
one notification after another keeps a note alive almost without a gap), so waiting is rationed:
each bulk process earns waiting time as it works, `BULK_YIELD_SHARE / (1 - BULK_YIELD_SHARE)`
seconds per second of work, up to `BULK_YIELD_MAX_MS` banked. Under a steady stream of urgent
work a bulk process spends at most that share of its time waiting, so a broadcast keeps at least
the rest of its speed (a fifth, by default) whatever the other tenants send: say, a stream of
critical SMS whose provider takes a second to answer, which keeps notes alive while the machine
itself is idle.

The notes are members of one sorted set scored by when they lapse, so a task that dies without
clearing its note holds bulk work back for at most `URGENT_LEASE_MS`.
"""

import contextvars
import logging
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import redis
from django.conf import settings

from tenants.redis_client import get_redis

log = logging.getLogger(__name__)

URGENT_KEY = "herald:urgent"
URGENT_LEASE_MS = 5_000  # a noted message is forgotten after this, whatever happened to it
POLL_SECONDS = 0.005


def _now_ms() -> int:
    return int(time.time() * 1000)


def note(message_id: str | None = None) -> str:
    """Note urgent work (a published message or a running task); returns its id for `done`."""
    message_id = message_id or uuid.uuid4().hex
    try:
        get_redis().zadd(URGENT_KEY, {message_id: _now_ms() + URGENT_LEASE_MS})
    except redis.RedisError:  # yielding is an optimisation: never fail a send over it
        log.debug("could not note urgent work", exc_info=True)
    return message_id


def done(message_id: str) -> None:
    try:
        get_redis().zrem(URGENT_KEY, message_id)
    except redis.RedisError:
        log.debug("could not clear urgent work", exc_info=True)


def in_flight() -> int:
    """Urgent messages noted and not lapsed."""
    client = get_redis()
    now = _now_ms()
    pipe = client.pipeline(transaction=False)
    pipe.zremrangebyscore(URGENT_KEY, "-inf", now)
    pipe.zcard(URGENT_KEY)
    return int(pipe.execute()[1])


class YieldBudget:
    """How long this process's bulk work may still wait: earned by working, spent by waiting."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.banked: float | None = None  # None: full (nothing spent yet)
        self.since = time.monotonic()  # end of the last wait: what came after it was work

    def available(self, cap: float, share: float) -> float:
        if share <= 0:
            return 0.0
        if self.banked is None or share >= 1:
            return cap
        earned = (time.monotonic() - self.since) * share / (1 - share)
        return min(cap, self.banked + earned)

    def spend(self, available: float, waited: float) -> None:
        self.banked = max(0.0, available - waited)
        self.since = time.monotonic()


_budget = YieldBudget()


def yield_to_urgent() -> float:
    """Wait while urgent work is in flight, up to BULK_YIELD_MAX_MS and within this process's
    waiting budget (BULK_YIELD_SHARE); the seconds waited."""
    cap = settings.BULK_YIELD_MAX_MS / 1000
    if cap <= 0:
        return 0.0
    limit = _budget.available(cap, float(settings.BULK_YIELD_SHARE))
    started = time.monotonic()
    try:
        while limit > 0 and in_flight():
            left = limit - (time.monotonic() - started)
            if left <= 0:
                break
            time.sleep(min(POLL_SECONDS, left))  # never past the budget
    except redis.RedisError:
        log.debug("could not read urgent work", exc_info=True)
    waited = time.monotonic() - started
    _budget.spend(limit, waited)
    return waited


_in_bulk = contextvars.ContextVar("herald_bulk_work", default=False)


@contextmanager
def bulk_work(bulk: bool = True) -> Iterator[None]:
    """Mark the code inside as bulk work (or not): its checkpoints yield to urgent work."""
    token = _in_bulk.set(bulk)
    try:
        yield
    finally:
        _in_bulk.reset(token)


def checkpoint() -> None:
    """Between two heavy steps: in bulk work, wait while urgent work is in flight; else nothing."""
    if _in_bulk.get():
        yield_to_urgent()
