"""Rate limits in Redis with GCRA, the generic cell rate algorithm (as in ATM networks, redis-cell).

A limit is a sustained `rate` (cells per second) plus a `burst` (cells that may go at once). GCRA
keeps one number per key: the TAT, the theoretical arrival time at which the key's bucket would
be full again if nothing else came. With the emission interval T = 1/rate and the tolerance
tau = burst * T, a request of `cost` cells at time `now`:

    tat     = max(stored TAT, now)
    new_tat = tat + cost * T
    allowed if new_tat - tau <= now        (else it conforms at new_tat - tau: retry_after)

It is the token bucket (capacity `burst`, refilled at `rate`) without a refill loop: one GET,
one SET, no counters per window, and exact at every instant (no window edges to burst across).
`acquire` takes the cells only when they are there now; `reserve` always takes them and answers
when they are due, so a sender waits for its turn (delays its work) instead of dropping or
spinning: a queue of reservations is the TAT running ahead of now.

Both run in ONE Lua script, atomically in Redis, on Redis's own clock (TIME), so any number of
web and worker processes on any number of hosts share a limit without races or clock skew.
Times inside the script are integer microseconds (exact in a double until the year 2255).
A key expires when its TAT has passed: an idle limit costs no memory.
"""

import math
from dataclasses import dataclass
from functools import lru_cache

from redis.commands.core import Script

from tenants.redis_client import get_redis

KEY_PREFIX = "herald:rl:"

# ARGV: emission interval (microseconds per cell), burst (cells), cost (cells), mode.
# Returns {allowed (0|1), retry_after_us, remaining (cells), reset_after_us}.
GCRA_LUA = """
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local reserve = ARGV[4] == "reserve"

local clock = redis.call("TIME")
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local tat = tonumber(redis.call("GET", KEYS[1]) or now)
if tat < now then tat = now end

local tolerance = interval * burst
local new_tat = tat + interval * cost
local allow_at = new_tat - tolerance

if allow_at > now and not reserve then
  -- Refused: nothing is taken. `remaining` is what could go now (less than this cost).
  local remaining = math.max(0, math.floor((now - (tat - tolerance)) / interval))
  return {0, math.ceil(allow_at - now), remaining, math.ceil(tat - now)}
end

local ttl_ms = math.max(1, math.ceil((new_tat - now) / 1000))
redis.call("SET", KEYS[1], string.format("%.0f", new_tat), "PX", ttl_ms)
local remaining = math.max(0, math.floor((now - allow_at) / interval))
return {1, math.max(0, math.ceil(allow_at - now)), remaining, math.ceil(new_tat - now)}
"""


@dataclass(frozen=True)
class Decision:
    """The answer for one request against a limit. Times are seconds from now."""

    allowed: bool
    retry_after: float  # when the refused cost would be allowed (0 when allowed)
    remaining: int  # cells that could still go at once after this request
    reset_after: float  # when the bucket is full again (the limit fully restored)


@lru_cache(maxsize=1)
def _script() -> Script:
    # Registered once per process; redis-py sends EVALSHA and reloads the script on NOSCRIPT.
    return get_redis().register_script(GCRA_LUA)


def _run(key: str, rate: float, burst: int, cost: int, mode: str) -> list[int]:
    if not rate > 0:
        raise ValueError(f"rate must be positive, not {rate!r}")
    if burst < 1:
        raise ValueError(f"burst must be at least 1, not {burst!r}")
    if cost < 0:
        raise ValueError(f"cost must not be negative, not {cost!r}")
    interval_us = 1_000_000 / rate
    result = _script()(keys=[KEY_PREFIX + key], args=[repr(interval_us), burst, cost, mode])
    return [int(value) for value in result]


def acquire(key: str, rate_per_second: float, burst: int, cost: int = 1) -> Decision:
    """Take `cost` cells from the limit named `key` if they are there now; otherwise take nothing."""
    if cost > burst:
        raise ValueError(f"a cost of {cost} can never fit in a burst of {burst}")
    allowed, retry_us, remaining, reset_us = _run(key, rate_per_second, burst, cost, "acquire")
    return Decision(
        allowed=bool(allowed),
        retry_after=retry_us / 1_000_000,
        remaining=remaining,
        reset_after=reset_us / 1_000_000,
    )


def reserve(key: str, rate: float, burst: int, cost: int = 1) -> float:
    """Always take `cost` cells; return the seconds until they are due (0.0: go now).

    The caller delays its work by that much (a Celery countdown, say): it is never refused,
    so nothing is dropped, and later callers queue behind it in order.
    """
    _allowed, delay_us, _remaining, _reset_us = _run(key, rate, burst, cost, "reserve")
    return delay_us / 1_000_000


def reset(key: str) -> None:
    """Forget the limit's state (tests, and an operator lifting a throttle by hand)."""
    get_redis().delete(KEY_PREFIX + key)


def seconds(value: float) -> int:
    """Whole seconds for a header (Retry-After, RateLimit-Reset): rounded up, never early."""
    return max(0, math.ceil(value))
