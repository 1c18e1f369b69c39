"""Fair dispatch: bulk and normal work is released to the broker round-robin across tenants.

Without it, a tenant that enqueues 1,000 batches puts another tenant's one batch of the same
priority behind all 1,000. With it, the database still holds every delivery, per-tenant lists in
Redis hold the batches waiting their turn, and the broker's queue holds only a few messages
(BOUND): the dispatcher refills it one batch per tenant per turn. Another tenant's batch then
waits for at most BOUND + (number of busy tenants) batches, whatever the size of the backlog
ahead of it.

Bulk batches are always held. Normal ones only while the `default` queue is contended (the
dispatcher saw BOUND messages waiting in it, or some tenant's normal batches are held already):
an uncontended notification goes straight to the broker, without the dispatcher's step, and a
request brings at most BOUND batches straight to a quiet queue, the rest held. Other tasks share
`default` (normal broadcasts' chunks, beat's fan-outs; webhook sends have a queue of their own
unless WEBHOOK_QUEUE names this one), so for normal work the dispatcher counts only its own
releases still in flight (until their task ends, or the task's time limit), not the queue's
length: other traffic there can slow held work, never stop it.

The dispatcher (`manage.py dispatch`, one per deployment, beside beat) keeps a heartbeat in
Redis per priority it serves. While there is none, `hold` declines and work is published
directly (first in, first out), so nothing waits on a dispatcher that is not running (nor on one
that does not serve that priority, such as an older release during a deploy); and the sweeper
leaves a tenant's deliveries of a priority alone only while a dispatcher serving it is alive and
still holds batches of it for that tenant.
"""

import json
import logging
import time
from collections.abc import Iterable
from typing import Any

import redis
from django.conf import settings
from kombu import Connection
from kombu.exceptions import ChannelError

from tenants.redis_client import get_redis

log = logging.getLogger(__name__)

FAIR_PRIORITIES = frozenset({"bulk", "normal"})
ALWAYS_HELD = frozenset({"bulk"})  # the others are held only while their queue is contended
BOUND = 4  # messages waiting in a fair priority's broker queue at once: twice the bulk pool
HEARTBEAT_KEY = "herald:fair:heartbeat"  # some dispatcher is alive (one serving bulk, at least)
CONTENDED_TTL_MS = 1000  # the dispatcher renews the flag while the queue is full
# How often it counts a queue whose work it holds only when contended: counting `default` on every
# loop as well (20 a second and more) doubled its CPU during a broadcast (bench/broadcast.py).
CONTENDED_LOOK_S = 0.25
HEARTBEAT_TTL = 10  # seconds
# The dispatcher's releases of work it holds only when contended, until their task ends (the
# task clears its own, `release_ended`) or this lease, the send task's hard time limit, runs out.
RELEASED_KEY = "herald:fair:released"
RELEASE_LEASE_MS = 150_000

# Pop the first batch of a tenant's list; forget the tenant when its list is empty.
_POP_LUA = """
local batch = redis.call("LPOP", KEYS[1])
if redis.call("LLEN", KEYS[1]) == 0 then redis.call("SREM", KEYS[2], ARGV[1]) end
return batch
"""


def _list_key(priority: str, schema: str) -> str:
    return f"herald:fair:{priority}:{schema}"


def _tenants_key(priority: str) -> str:
    return f"herald:fair:{priority}:tenants"


def _contended_key(priority: str) -> str:
    return f"herald:fair:{priority}:contended"


def _heartbeat_key(priority: str) -> str:
    return f"{HEARTBEAT_KEY}:{priority}"


def dispatcher_alive(priority: str = "bulk") -> bool:
    """Whether a dispatcher serving this priority is alive (for bulk, one from before per-priority
    heartbeats, which served bulk only, counts too)."""
    keys = [_heartbeat_key(priority)] + ([HEARTBEAT_KEY] if priority == "bulk" else [])
    try:
        return bool(get_redis().exists(*keys))
    except redis.RedisError:
        return False


def hold(schema: str, priority: str, batches: Iterable[list[str]]) -> list[list[str]]:
    """Queue batches for fair release; return those the caller should publish itself (all of
    them without a live dispatcher, or for a priority it does not hold)."""
    batches = list(batches)
    if priority not in FAIR_PRIORITIES or not batches:
        return batches
    direct: list[list[str]] = []  # published by the caller at once
    try:
        client = get_redis()
        if priority in ALWAYS_HELD:
            if not dispatcher_alive(priority):
                return batches
        else:
            alive, crowded = _looked_up(priority)
            if not alive:
                return batches
            # A quiet queue takes up to BOUND of them now; the rest wait their turn with the others.
            direct = [] if crowded else batches[:BOUND]
            batches = batches[len(direct) :]
            if not batches:
                return direct
            _seen[priority] = (time.monotonic(), True, True)  # this process holds some now
        pipe = client.pipeline()
        pipe.rpush(_list_key(priority, schema), *[json.dumps(b) for b in batches])
        pipe.sadd(_tenants_key(priority), schema)
        pipe.execute()
    except redis.RedisError:
        log.warning("fair dispatch unavailable; publishing %d batches directly", len(batches))
        return direct + batches
    return direct


# Per process, per priority held only when contended: (when looked, a dispatcher serving it is
# alive, its queue is contended or some tenant's batches are held). Looked up at most every
# SEEN_FOR seconds: the look was a Redis round trip for every API request.
_seen: dict[str, tuple[float, bool, bool]] = {}
SEEN_FOR = 0.1


def _looked_up(priority: str) -> tuple[bool, bool]:
    """(alive, crowded) for `priority`, as Redis said at most SEEN_FOR seconds ago."""
    now = time.monotonic()
    seen = _seen.get(priority)
    if seen is not None and now - seen[0] < SEEN_FOR:
        return seen[1], seen[2]
    pipe = get_redis().pipeline(transaction=False)
    pipe.exists(_heartbeat_key(priority))
    pipe.exists(_contended_key(priority))
    pipe.scard(_tenants_key(priority))
    alive, contended, waiting = pipe.execute()
    current = _seen.get(priority)
    if current is None or current[0] <= now:  # not over what another thread noted since it looked
        _seen[priority] = (now, bool(alive), bool(contended or waiting))
    return bool(alive), bool(contended or waiting)


def release_ended(task_id: str) -> None:
    """A send task has ended (or handed its turn to a later message): its release, if it was
    one, no longer takes a place in the dispatcher's bound."""
    try:
        get_redis().zrem(RELEASED_KEY, task_id)
    except redis.RedisError:  # the lease ends it, later
        log.debug("could not clear a release", exc_info=True)


def holding(schema: str, priority: str) -> bool:
    """Whether a live dispatcher still holds batches of this tenant (the sweeper waits then)."""
    try:
        return dispatcher_alive(priority) and bool(get_redis().exists(_list_key(priority, schema)))
    except redis.RedisError:
        return False


def _broker() -> Connection:
    """A broker connection with Celery's transport (for redis://, the one that keeps its Redis
    client: tenant_platform.broker), not kombu's default for the URL."""
    return Connection(settings.CELERY_BROKER_URL, transport=settings.CELERY_BROKER_TRANSPORT)


class Dispatcher:
    def __init__(self, priorities: Iterable[str] = FAIR_PRIORITIES, bound: int = BOUND) -> None:
        self.priorities = sorted(priorities)  # a fixed order, whatever the set's hashing
        self.bound = bound
        self.cursors: dict[str, int] = {}  # per priority: where its next round-robin turn starts
        self.released: dict[str, list[str]] = {}  # per priority not ALWAYS_HELD: releases noted
        self.pop = get_redis().register_script(_POP_LUA)
        self.broker = _broker()
        self._sizer: Any = None  # kombu's Redis count (LLEN of each priority list), if the broker has it
        self._beat_at = 0.0
        self._contended: set[str] = set()  # priorities this dispatcher flagged contended
        self._looked_at: dict[str, float] = {}  # when it last counted each contended-only queue

    def queued(self, queue: str) -> int:
        """Messages waiting in the broker queue (Redis LLEN or AMQP's count, through kombu)."""
        channel: Any = self.broker.default_channel
        # On Redis, count directly: queue_declare also checks that the queue exists first, and
        # the dispatcher asks 20 times a second (about a tenth of a core during a broadcast).
        self._sizer = getattr(channel, "_size", None)
        if self._sizer is not None:
            return int(self._sizer(queue))
        try:
            return int(channel.queue_declare(queue=queue, passive=True).message_count)
        except ChannelError:  # not declared yet: nothing is waiting in it
            self.broker = _broker()  # the error closed the channel
            return 0

    def heartbeat(self) -> None:
        """Tell `hold` which priorities a dispatcher serves; written at most once a second (TTL 10 s)."""
        now = time.monotonic()
        if now - self._beat_at >= 1.0:
            pipe = get_redis().pipeline(transaction=False)
            pipe.set(HEARTBEAT_KEY, "1", ex=HEARTBEAT_TTL)
            for priority in self.priorities:
                pipe.set(_heartbeat_key(priority), "1", ex=HEARTBEAT_TTL)
            pipe.execute()
            self._beat_at = now

    def turn(self, priority: str, tenants: list[str]) -> list[str]:
        """The tenants in this turn's order: each priority's turns start one tenant further on."""
        cursor = self.cursors.get(priority, 0)
        self.cursors[priority] = cursor + 1
        start = cursor % len(tenants)
        return tenants[start:] + tenants[:start]

    def room(self, priority: str, queue: str) -> int:
        """How many batches of this priority to release now.

        Bulk: up to BOUND waiting in its queue (only bulk work goes there). The others share their
        queue with other tasks (a normal broadcast's chunks go to `default`), so their room is
        BOUND less the dispatcher's own releases still in flight (RELEASED_KEY), and the queue's
        length only flags contention.
        """
        if priority in ALWAYS_HELD:
            return self.bound - self.queued(queue)
        now = time.monotonic()
        if now - self._looked_at.get(priority, 0.0) >= CONTENDED_LOOK_S:
            self.mark_contended(priority, self.queued(queue) >= self.bound)
            self._looked_at[priority] = now
        mine = self.released.get(priority, [])
        if mine:  # one round trip: drop lapsed leases, then see which of its own are left
            pipe = get_redis().pipeline(transaction=False)
            pipe.zremrangebyscore(RELEASED_KEY, "-inf", int(time.time() * 1000))
            pipe.zmscore(RELEASED_KEY, mine)
            scores = pipe.execute()[1]
            mine = [task_id for task_id, score in zip(mine, scores, strict=True) if score is not None]
            self.released[priority] = mine
        return self.bound - len(mine)

    def once(self) -> int:
        """Release up to the bound, one batch per tenant per turn; how many were released."""
        from . import urgency
        from .pipeline import QUEUE_FOR_PRIORITY, publish_send

        self.heartbeat()
        released = 0
        for priority in self.priorities:
            queue = QUEUE_FOR_PRIORITY[priority]
            members: set[bytes] = get_redis().smembers(_tenants_key(priority))  # type: ignore[assignment]
            if not members and priority in ALWAYS_HELD:
                continue  # nothing held; the others still look whether their queue is contended
            room = self.room(priority, queue)
            tenants = sorted(m.decode() for m in members)
            if room <= 0 or not tenants:
                continue
            turn = self.turn(priority, tenants)
            while room > 0 and turn:
                for schema in list(turn):
                    if room <= 0:
                        break
                    raw = self.pop(keys=[_list_key(priority, schema), _tenants_key(priority)], args=[schema])
                    if raw is None:
                        turn.remove(schema)
                        continue
                    try:
                        ids = json.loads(raw)
                    except ValueError:  # not a batch this code wrote: its deliveries stay queued rows
                        log.error("fair dispatcher: dropped an unreadable batch of %s", schema)
                        continue
                    try:
                        sent = publish_send(ids, queue, schema)
                    except Exception:  # not published: back to the head of its list, then retry
                        self.put_back(priority, schema, raw)
                        raise
                    if priority not in ALWAYS_HELD:
                        urgency.note(sent)  # bulk work steps aside for it, as pipeline.enqueue
                        lease = int(time.time() * 1000) + RELEASE_LEASE_MS
                        get_redis().zadd(RELEASED_KEY, {sent: lease})
                        self.released.setdefault(priority, []).append(sent)
                    released += 1
                    room -= 1
        return released

    def put_back(self, priority: str, schema: str, raw: bytes) -> None:
        """Return a popped batch to the head of its tenant's list (its publish failed)."""
        try:
            pipe = get_redis().pipeline()
            pipe.lpush(_list_key(priority, schema), raw)
            pipe.sadd(_tenants_key(priority), schema)
            pipe.execute()
        except redis.RedisError:  # its deliveries are still queued rows: the sweeper has them
            log.warning("fair dispatcher: could not put back a batch of %s", schema, exc_info=True)

    def mark_contended(self, priority: str, contended: bool) -> None:
        """Tell `hold` whether this priority's queue is full (then its work waits its turn here)."""
        if contended:
            get_redis().set(_contended_key(priority), "1", px=CONTENDED_TTL_MS)
            self._contended.add(priority)
        elif priority in self._contended:
            get_redis().delete(_contended_key(priority))
            self._contended.discard(priority)

    def run_forever(self, idle_sleep: float = 0.05) -> None:
        log.info("fair dispatcher running (bound %d per queue)", self.bound)
        while True:
            try:
                if not self.once():
                    time.sleep(idle_sleep)
            except Exception as exc:  # a broker or Redis outage: keep going once it is back
                log.warning("fair dispatcher: %s; retrying in 1 s", exc)
                self.broker = _broker()
                time.sleep(1)
