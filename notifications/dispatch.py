"""Fair dispatch: work of each priority is released to the broker round-robin across tenants.

Without it, a tenant that enqueues 1,000 batches puts another tenant's one batch of the same
priority behind all 1,000. With it, the database still holds every delivery, per-tenant lists in
Redis hold the batches waiting their turn, and the broker's queue holds only a few messages
(BOUND): the dispatcher refills it one batch per tenant per turn. Another tenant's batch then
waits for at most BOUND + (number of busy tenants) batches, whatever the size of the backlog
ahead of it.

Bulk batches are always held. Critical, high and normal ones only while their queue is contended
(the dispatcher saw BOUND messages waiting in it, or some tenant's batches of that priority are
held already and its turn has come), or (normal ones) while their own tenant waits for its turn
(below): an uncontended notification goes straight to the broker, without the dispatcher's step,
and a request brings at most BOUND batches straight to a quiet queue, the rest held. Whether a queue is
contended is looked up in Redis at most every SEEN_FOR seconds per process, for all three
priorities in one round trip. These queues take work that does not pass through the dispatcher
(a request's first batches, retries, the sweeper's re-enqueues; in `default` also normal
broadcasts' chunks and beat's fan-outs, and webhook sends if WEBHOOK_QUEUE names it), so for them
the dispatcher counts only its own releases still in flight (until their task ends, or the
task's time limit), not the queue's length: other traffic there can slow held work, never stop it.

`critical` and `high` are two queues read by one pool (deploy/Procfile: `-Q critical,high`,
one process), which on Redis takes from them in turn (kombu's round-robin over a worker's queues;
RabbitMQ promises no such order: docs/delivery-engine.md). Each still has its own contention flag
and its own BOUND of releases in flight: a message in one waits behind its own queue and about as
many of the other's, which is kept short the same way. A
room shared by the two and filled critical first would give critical precedence, but would stop
high altogether while any tenant floods critical; in turn, each keeps half of the pool.

The dispatcher (`manage.py dispatch`, one per deployment, beside beat) serves the priorities in
the order critical, high, normal, bulk on every loop, and keeps a heartbeat in Redis per priority
it serves. While there is none, `hold` declines and work is published directly (first in, first
out), so nothing waits on a dispatcher that is not running (nor on one that does not serve that
priority, such as an older release during a deploy); and the sweeper leaves a tenant's deliveries
of a priority alone only while a dispatcher serving it is alive and still holds batches of it for
that tenant.

A tenant over its send rate limit waits for its turn in its list, not in the broker: a send task
that meets the limit publishes its own batch again for the tenant's turn and notes that turn
(`next_turn_in`, per tenant and priority); until then the dispatcher releases none of that
tenant's batches of that priority and goes on round the others. When the turn comes, a released
batch that meets the limit again notes the next one. (Without the note, each released batch met
the limit, was published again for later and freed its place at once: the dispatcher turned a
limited tenant's whole held list into delayed messages within seconds.) The note is per priority,
not per channel, because the dispatcher does not know a batch's channels: a tenant's SMS batches
held behind its email ones wait for its email turn, as an email and SMS batch did already. That
is why critical and high work is never held for its turn (NO_NEXT_TURN): a tenant's one critical
email would wait for its own critical SMS flood's turn. Over the limit, it waits in the broker.
"""

import contextlib
import json
import logging
import time
import uuid
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

import redis
from django import db
from django.conf import settings
from kombu import Connection
from kombu.exceptions import ChannelError
from redis.commands.core import Script

from tenants import registry
from tenants.redis_client import get_redis

log = logging.getLogger(__name__)

FAIR_PRIORITIES = frozenset({"critical", "high", "normal", "bulk"})
ALWAYS_HELD = frozenset({"bulk"})  # the others are held only while their queue is contended
SERVING_ORDER = ("critical", "high", "normal", "bulk")  # the dispatcher's order on every loop
# Priorities whose rate-limited tenant does not wait for its next turn in the dispatcher's list: the
# turn is per priority, not per channel, so a tenant's one critical email (a sign-in code) would
# wait behind its own critical SMS for the SMS limit. Their over-limit batches wait in the broker.
NO_NEXT_TURN = frozenset({"critical", "high"})
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
# A release that ends pushes here; the dispatcher, idle, waits on it for at most its idle sleep, so
# held critical (and high, normal) work goes out as fast as the worker frees places, not BOUND per
# 50 ms (measured: 52 batches of one a second against the test worker, with places free).
WAKE_KEY = "herald:fair:wake"
# The longest one note of a tenant's next turn holds its batches back: after it they are released
# again (and the first to meet the limit notes the next turn, if the tenant is still over it).
# Bounds what a stale note costs, such as one left by a limit an operator has since reset.
NEXT_TURN_MAX_MS = 300_000
# After the database fails a tenant look-up, how long every tenant counts as active (its work is
# released; the worker's gate decides) before the dispatcher asks it again: not a reconnection per
# tenant per loop, 20 loops a second, nor a warning each, while it is down.
DB_BACKOFF_S = 5.0

# Pop the first batch of a tenant's list; forget the tenant when its list is empty.
_POP_LUA = """
local batch = redis.call("LPOP", KEYS[1])
if redis.call("LLEN", KEYS[1]) == 0 then redis.call("SREM", KEYS[2], ARGV[1]) end
return batch
"""

# Forget a tenant's held batches of a priority (no active tenant has that schema); how many there were.
_DROP_LUA = """
local dropped = redis.call("LLEN", KEYS[1])
redis.call("DEL", KEYS[1])
redis.call("SREM", KEYS[2], ARGV[1])
return dropped
"""

# Delete each of KEYS (a dispatcher's heartbeats) that still holds ARGV[1], its own token: one
# started since (a rolling deploy) has written its own, which must stay.
_RETIRE_LUA = """
for _, key in ipairs(KEYS) do
  if redis.call("GET", key) == ARGV[1] then redis.call("DEL", key) end
end
"""

# A release has ended: free its place, and wake the dispatcher if it was one (KEYS: RELEASED_KEY,
# WAKE_KEY). One wake-up is enough however many ended: the dispatcher counts its room afresh.
_ENDED_LUA = """
if redis.call("ZREM", KEYS[1], ARGV[1]) == 1 then
  redis.call("LPUSH", KEYS[2], "1")
  redis.call("LTRIM", KEYS[2], 0, 0)
end
"""

# Sets `now`: milliseconds on Redis's clock (so every host agrees), for the scripts below.
_NOW_LUA = """
local clock = redis.call("TIME")
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
"""

# A tenant's next turn, in milliseconds on Redis's clock (so every host agrees); the latest note
# wins. Turns already past are dropped, and the whole set goes when the last note has run out.
# ARGV: schema, wait (ms), NEXT_TURN_MAX_MS.
_NEXT_TURN_LUA = (
    _NOW_LUA
    + """
local longest = tonumber(ARGV[3])
local at = now + math.min(tonumber(ARGV[2]), longest)
local noted = redis.call("ZSCORE", KEYS[1], ARGV[1])
if not noted or tonumber(noted) < at then redis.call("ZADD", KEYS[1], string.format("%.0f", at), ARGV[1]) end
redis.call("ZREMRANGEBYSCORE", KEYS[1], "-inf", string.format("%.0f", now))
redis.call("PEXPIRE", KEYS[1], longest)
"""
)

# Per priority, two keys (its tenants with batches held, its next turns): {the tenants with
# batches held, those of them whose next turn is later}. All priorities in one round trip.
_TENANTS_LUA = (
    _NOW_LUA
    + """
local found = {}
for i = 1, #KEYS, 2 do
  local tenants = redis.call("SMEMBERS", KEYS[i])
  local later = {}
  if #tenants > 0 then
    later = redis.call("ZRANGEBYSCORE", KEYS[i + 1], string.format("(%.0f", now), "+inf")
  end
  found[#found + 1] = {tenants, later}
end
return found
"""
)


def _list_key(priority: str, schema: str) -> str:
    return f"herald:fair:{priority}:{schema}"


def _tenants_key(priority: str) -> str:
    return f"herald:fair:{priority}:tenants"


def _contended_key(priority: str) -> str:
    return f"herald:fair:{priority}:contended"


def _heartbeat_key(priority: str) -> str:
    return f"{HEARTBEAT_KEY}:{priority}"


def _next_turn_key(priority: str) -> str:
    return f"herald:fair:{priority}:next-turn"  # no schema has a hyphen: no tenant's list is named so


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
            alive, crowded, waiting = _looked_up(priority)
            if not alive:
                return batches
            if priority in NO_NEXT_TURN:
                waiting = frozenset()  # its tenant's next turn holds nothing of this priority
            # A quiet queue takes up to BOUND of them now; the rest wait their turn with the others.
            # A tenant over its rate limit waits for its turn: sent now, they would only be delayed.
            direct = [] if crowded or schema in waiting else batches[:BOUND]
            batches = batches[len(direct) :]
            if not batches:
                return direct
            # This process holds some now: they crowd the others unless their tenant waits its turn.
            _seen[priority] = (time.monotonic(), True, crowded or schema not in waiting, waiting)
        pipe = client.pipeline()
        pipe.rpush(_list_key(priority, schema), *[json.dumps(b) for b in batches])
        pipe.sadd(_tenants_key(priority), schema)
        pipe.execute()
    except redis.RedisError:
        log.warning("fair dispatch unavailable; publishing %d batches directly", len(batches))
        return direct + batches
    return direct


# Per process, per priority held only when contended: (when looked, a dispatcher serving it is
# alive, its queue is contended or some tenant's batches are held and its turn has come, the
# tenants whose next turn is later). Looked up at most every SEEN_FOR seconds, every such priority
# at once: the look was a Redis round trip for every API request, and a process taking critical
# and normal requests would otherwise make one per priority.
_seen: dict[str, tuple[float, bool, bool, frozenset[str]]] = {}
SEEN_FOR = 0.1

# Per priority, four keys: heartbeat, contended flag, tenants with batches held, next turns. Returns
# per priority {alive, crowded, the tenants whose next turn is later}. Held batches of tenants
# waiting for their turn crowd nobody: the dispatcher would not release them now anyway.
_LOOK_LUA = (
    _NOW_LUA
    + """
local found = {}
for i = 1, #KEYS, 4 do
  local waiting = redis.call("ZRANGEBYSCORE", KEYS[i + 3], string.format("(%.0f", now), "+inf")
  local crowded = redis.call("EXISTS", KEYS[i + 1])
  if crowded == 0 and redis.call("SCARD", KEYS[i + 2]) > #waiting then
    crowded = 1  -- some tenant holding batches is not among those waiting
  elseif crowded == 0 then
    local later = {}
    for _, schema in ipairs(waiting) do later[schema] = true end
    for _, schema in ipairs(redis.call("SMEMBERS", KEYS[i + 2])) do
      if not later[schema] then crowded = 1 break end
    end
  end
  found[#found + 1] = {redis.call("EXISTS", KEYS[i]), crowded, waiting}
end
return found
"""
)


@lru_cache(maxsize=1)
def _look() -> Script:
    return get_redis().register_script(_LOOK_LUA)


def _looked_up(priority: str) -> tuple[bool, bool, frozenset[str]]:
    """(alive, crowded, tenants waiting for their turn) for `priority`, as Redis said at most
    SEEN_FOR seconds ago."""
    now = time.monotonic()
    seen = _seen.get(priority)
    if seen is not None and now - seen[0] < SEEN_FOR:
        return seen[1], seen[2], seen[3]
    # Every priority held only when contended, in one round trip: the next request may be another's.
    priorities = sorted((FAIR_PRIORITIES - ALWAYS_HELD) | {priority})
    keys = [
        key
        for each in priorities
        for key in (_heartbeat_key(each), _contended_key(each), _tenants_key(each), _next_turn_key(each))
    ]
    for each, (alive, crowded, later) in zip(priorities, _look()(keys=keys), strict=True):
        look = (now, bool(alive), bool(crowded), frozenset(schema.decode() for schema in later))
        current = _seen.get(each)
        if current is None or current[0] <= now:  # not over what another thread noted since it looked
            _seen[each] = look
        if each == priority:
            seen = look
    assert seen is not None
    return seen[1], seen[2], seen[3]


def next_turn_in(schema: str, priority: str, seconds: float) -> None:
    """This tenant can send no more of this priority's work for `seconds` (its send rate limit's
    turn): the dispatcher releases none of its held batches before then, nor longer than
    NEXT_TURN_MAX_MS, and `hold` holds its batches meanwhile. The latest turn noted wins.

    Best effort: without the note, its batches are released as before and wait for their turn in
    the broker instead. Critical and high work is never noted (NO_NEXT_TURN): it always waits so.
    """
    if priority not in FAIR_PRIORITIES or priority in NO_NEXT_TURN:
        return
    try:
        _next_turn()(keys=[_next_turn_key(priority)], args=[schema, int(seconds * 1000), NEXT_TURN_MAX_MS])
    except redis.RedisError:
        log.warning("could not note the next turn of %s (%s)", schema, priority, exc_info=True)


@lru_cache(maxsize=1)
def _next_turn() -> Script:
    return get_redis().register_script(_NEXT_TURN_LUA)


def release_ended(task_id: str) -> None:
    """A send task has ended (or handed its turn to a later message): its release, if it was
    one, no longer takes a place in the dispatcher's bound."""
    try:
        _ended()(keys=[RELEASED_KEY, WAKE_KEY], args=[task_id])
    except redis.RedisError:  # the lease ends it, later
        log.debug("could not clear a release", exc_info=True)


@lru_cache(maxsize=1)
def _ended() -> Script:
    return get_redis().register_script(_ENDED_LUA)


def holding(schema: str, priority: str) -> bool:
    """Whether a live dispatcher still holds batches of this tenant (the sweeper waits then)."""
    try:
        return dispatcher_alive(priority) and bool(get_redis().exists(_list_key(priority, schema)))
    except redis.RedisError:
        return False


def _broker() -> Connection:
    """A broker connection with Celery's transport (for redis://, the one that keeps its Redis
    client: tenant_platform.broker), not kombu's default for the URL, and Celery's transport
    options: without their socket timeouts a count on a broker that stopped answering waited as
    long as it was silent (for ever on a connection a failover left half-open), and the
    dispatcher released nothing meanwhile."""
    return Connection(
        settings.CELERY_BROKER_URL,
        transport=settings.CELERY_BROKER_TRANSPORT,
        transport_options=settings.CELERY_BROKER_TRANSPORT_OPTIONS,
    )


def _serving_rank(priority: str) -> tuple[int, str]:
    """Where a priority comes in the dispatcher's loop: SERVING_ORDER, then any other by name."""
    known = priority in SERVING_ORDER
    return (SERVING_ORDER.index(priority) if known else len(SERVING_ORDER), priority)


class Dispatcher:
    def __init__(self, priorities: Iterable[str] = FAIR_PRIORITIES, bound: int = BOUND) -> None:
        # Critical first: within a loop its releases are published before the others'.
        self.priorities = sorted(priorities, key=_serving_rank)
        self.bound = bound
        self.cursors: dict[str, int] = {}  # per priority: where its next round-robin turn starts
        self.released: dict[str, list[str]] = {}  # per priority not ALWAYS_HELD: releases noted
        self.pop = get_redis().register_script(_POP_LUA)
        self.drop = get_redis().register_script(_DROP_LUA)
        self.held_tenants = get_redis().register_script(_TENANTS_LUA)
        self.unbeat = get_redis().register_script(_RETIRE_LUA)
        # Its heartbeats' value (readers only ask whether they exist): its retire deletes only these.
        self.token = uuid.uuid4().hex
        self.broker = _broker()
        self._sizer: Any = None  # kombu's Redis count (LLEN of each priority list), if the broker has it
        self._beat_at = 0.0
        self._contended: set[str] = set()  # priorities this dispatcher flagged contended
        self._looked_at: dict[str, float] = {}  # when it last counted each contended-only queue
        self._stopping = False
        self._db_down_until = 0.0  # monotonic: until then, `active` asks the database nothing

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
            pipe.set(HEARTBEAT_KEY, self.token, ex=HEARTBEAT_TTL)
            for priority in self.priorities:
                pipe.set(_heartbeat_key(priority), self.token, ex=HEARTBEAT_TTL)
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

        Bulk: up to BOUND waiting in its queue (only bulk work goes there). The others' queues also
        take work that does not pass through the dispatcher (a request's first batches to a quiet
        queue, retries, the sweeper's; a normal broadcast's chunks go to `default`), so their room
        is BOUND less the dispatcher's own releases still in flight (RELEASED_KEY), and the queue's
        length only flags contention. Critical and high, read by one pool, have a room each (the
        module's docstring says why).
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
        from .pipeline import QUEUE_FOR_PRIORITY, publish_send, publish_urgent

        self.heartbeat()
        released = 0
        # Who holds batches, every priority in one round trip (a script per priority would double
        # the idle loop's Redis calls now that critical and high are served too).
        keys = [
            key for priority in self.priorities for key in (_tenants_key(priority), _next_turn_key(priority))
        ]
        found = self.held_tenants(keys=keys)
        for priority, (held, later) in zip(self.priorities, found, strict=True):
            queue = QUEUE_FOR_PRIORITY[priority]
            # Tenants over their send rate limit sit their turns out (until their next turn): their
            # batches would only be published again for later, and the others' go meanwhile.
            tenants = sorted({m.decode() for m in held} - {m.decode() for m in later})
            tenants = [schema for schema in tenants if self.active(priority, schema)]
            if not tenants and priority in ALWAYS_HELD:
                continue  # nothing to release; the others still look whether their queue is contended
            room = self.room(priority, queue)
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
                    task_id = str(uuid.uuid4())
                    counted = priority not in ALWAYS_HELD
                    try:
                        if counted:
                            # Its place is taken before it is published, as its urgent-work note
                            # (publish_urgent): taken after, a task that ran and ended first (this
                            # process descheduled in between) would leave it taken for the lease.
                            lease = int(time.time() * 1000) + RELEASE_LEASE_MS
                            get_redis().zadd(RELEASED_KEY, {task_id: lease})
                            publish_urgent(ids, queue, schema, task_id)
                        else:
                            publish_send(ids, queue, schema, task_id)
                    except Exception:  # not published: back to the head of its list, then retry
                        self.put_back(priority, schema, raw)
                        if counted:
                            release_ended(task_id)
                        raise
                    if counted:
                        self.released.setdefault(priority, []).append(task_id)
                    released += 1
                    room -= 1
        return released

    def active(self, priority: str, schema: str) -> bool:
        """Whether `schema` is an active tenant's (the tenant cache the workers use, then the
        database, past the cache); if not, its held batches of `priority` are dropped, and said so
        in the log.

        Released, each would be rejected by the worker's tenancy gate, and a tenant deactivated or
        deleted with batches held would keep the queue contended: every tenant's new work of that
        priority held behind batches that never run. Its deliveries stay queued rows in its schema:
        the sweeper sends them if the tenant is active again. The cache alone may still say "no such
        tenant" for up to TENANT_CACHE_CHECK_INTERVAL after a tenant is (re)activated, so a drop
        is decided on a read of the database (drops are rare: one query each).
        """
        if time.monotonic() < self._db_down_until:  # the database failed a moment ago
            return True
        try:
            if registry.get_active_tenant(schema) is not None:
                return True
            if registry.read_active_tenant(schema) is not None:  # the cache was stale
                return True
        except db.Error:  # also InterfaceError (a closed connection), which is no DatabaseError
            # Cannot tell now: release them (the worker's gate decides), and every other tenant's
            # too until the back-off ends, rather than reconnect for each tenant on every loop.
            log.warning(
                "fair dispatcher: could not look up tenant %.70r; releasing all held work for %g s",
                schema,
                DB_BACKOFF_S,
                exc_info=True,
            )
            self._db_down_until = time.monotonic() + DB_BACKOFF_S
            with contextlib.suppress(db.Error):
                db.connection.close()  # a new one at the next look, should this one be broken
            return True
        dropped = self.drop(keys=[_list_key(priority, schema), _tenants_key(priority)], args=[schema])
        log.warning(
            "fair dispatcher: dropped %s held %s batches of %.70r, no active tenant (deliveries stay queued)",
            dropped,
            priority,
            schema,
        )
        return False

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

    def idle(self, seconds: float) -> None:
        """Wait until a release ends (a place is free) or `seconds` have passed."""
        get_redis().blpop([WAKE_KEY], timeout=seconds)

    def stop(self) -> None:
        """Stop after the current loop (a signal handler's call: no release is cut in half)."""
        self._stopping = True

    def retire(self) -> None:
        """Take down its heartbeats and the contention flags it set: `hold` publishes directly at
        once, rather than holding work for up to HEARTBEAT_TTL that no dispatcher would release.

        Only heartbeats that still hold its own token: in a rolling deploy the dispatcher that
        replaces it may be running already, and its heartbeats must stay.
        """
        try:
            self.unbeat(keys=[HEARTBEAT_KEY, *map(_heartbeat_key, self.priorities)], args=[self.token])
            if self._contended:
                get_redis().delete(*map(_contended_key, self._contended))
        except redis.RedisError:  # they lapse by themselves
            log.warning("fair dispatcher: could not take down its heartbeats", exc_info=True)

    def run_forever(self, idle_sleep: float = 0.05) -> None:
        log.info("fair dispatcher running (bound %d per queue)", self.bound)
        try:
            while not self._stopping:
                try:
                    if not self.once():
                        self.idle(idle_sleep)
                except Exception as exc:  # a broker or Redis outage: keep going once it is back
                    log.warning("fair dispatcher: %s; retrying in 1 s", exc)
                    self.broker = _broker()
                    time.sleep(1)
        finally:  # stopped, or interrupted (KeyboardInterrupt)
            self.retire()
            log.info("fair dispatcher stopped")
