"""One Redis client per process for Herald's own keys (cache generation, later rate limits)."""

from functools import lru_cache

import redis
from django.conf import settings


@lru_cache(maxsize=1)
def get_redis() -> redis.Redis:
    # redis-py's pool notices a fork and reconnects, so prefork workers can share this.
    return redis.Redis.from_url(settings.REDIS_URL)
