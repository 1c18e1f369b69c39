"""Recent error rate of each provider, per tenant and channel, kept in Redis by the minute.

The send task reads it to decide whether the next tries should go straight to the tenant's
secondary provider, before a delivery has failed on the primary itself.
"""

import logging
import time

import redis
from django.conf import settings

from tenants.redis_client import get_redis
from tenants.schemas import current_schema

log = logging.getLogger(__name__)

BUCKET_SECONDS = 60


def _keys(channel: str, provider: str, now: float) -> list[str]:
    window = int(settings.PROVIDER_HEALTH["window_seconds"])
    newest = int(now) // BUCKET_SECONDS
    return [
        f"herald:health:{current_schema()}:{channel}:{provider}:{bucket}"
        for bucket in range(newest - window // BUCKET_SECONDS + 1, newest + 1)
    ]


def record(channel: str, provider: str, ok: int, failed: int) -> None:
    if not ok and not failed:
        return
    key = _keys(channel, provider, time.time())[-1]
    try:
        pipe = get_redis().pipeline()
        if ok:
            pipe.hincrby(key, "ok", ok)
        if failed:
            pipe.hincrby(key, "failed", failed)
        pipe.expire(key, int(settings.PROVIDER_HEALTH["window_seconds"]) + BUCKET_SECONDS)
        pipe.execute()
    except redis.RedisError:
        log.warning("provider health: could not record outcomes for %s/%s", channel, provider)


def error_rate(channel: str, provider: str) -> tuple[float, int]:
    """(failed / attempts, attempts) over the window; (0.0, 0) when unknown."""
    try:
        pipe = get_redis().pipeline()
        for key in _keys(channel, provider, time.time()):
            pipe.hmget(key, "ok", "failed")
        rows = pipe.execute()
    except redis.RedisError:
        return 0.0, 0
    ok = sum(int(r[0] or 0) for r in rows)
    failed = sum(int(r[1] or 0) for r in rows)
    total = ok + failed
    return (failed / total if total else 0.0), total


def is_unhealthy(channel: str, provider: str) -> bool:
    rate, total = error_rate(channel, provider)
    limits = settings.PROVIDER_HEALTH
    return total >= int(limits["min_attempts"]) and rate > float(limits["max_error_rate"])
