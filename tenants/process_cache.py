"""Per-process caches of rows that are read on every API request and change rarely.

A cache is a dict in the process, dropped whenever a generation counter in Redis moves: whoever
changes the rows calls `invalidate()` (after commit), which clears the local dict at once and
bumps the counter, and every other process sees the new generation within
TENANT_CACHE_CHECK_INTERVAL seconds (it reads the counter at most that often). Entries also
expire after `max_age` seconds, so a change that bypassed the signals (a raw UPDATE) is seen
within that time anyway. If Redis cannot be read, nothing is cached: without the counter a
process cannot know what changed, and the database answers every time (fail closed).

The same design as the tenant cache of tasks (tenants.registry), for the API's own lookups.
"""

import logging
import threading
import time
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

import redis
from django.conf import settings
from django.db import connection

from .redis_client import get_redis

log = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class ProcessCache(Generic[K, V]):
    def __init__(self, generation_key: str, max_age: float, max_entries: int | None = None) -> None:
        self.generation_key = generation_key
        self.max_age = max_age
        # Beyond this many entries the cache starts again empty: a bound for caches whose keys
        # come from the outside (host names) and that keep a value for "not found" too.
        self.max_entries = max_entries
        self._lock = threading.Lock()
        self._entries: dict[K, tuple[float, V]] = {}
        self._generation: bytes | None = None
        self._usable = False
        self._checked_at = float("-inf")

    def get_or_load(self, key: K, load: Callable[[], V | None]) -> V | None:
        """The cached value of `key`, else `load()`, kept unless it is None, something changed
        meanwhile, or it was read inside a transaction.

        None is never kept, so a flood of unknown keys cannot fill the cache. A read inside a
        transaction may see that transaction's own uncommitted (and perhaps rolled back) changes,
        which other requests must not be served.
        """
        now = time.monotonic()
        self._refresh(now)
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and now - entry[0] < self.max_age:
                return entry[1]
            generation_before, usable = self._generation, self._usable
        value = load()
        if connection.in_atomic_block:
            return value
        with self._lock:
            # A change seen while we read may make what we read stale: use it once, don't keep it.
            if value is not None and usable and self._usable and self._generation == generation_before:
                if self.max_entries is not None and len(self._entries) >= self.max_entries:
                    self._entries.clear()
                self._entries[key] = (now, value)
        return value

    def clear(self) -> None:
        """Drop this process's entries (the change is not committed yet, or only local)."""
        with self._lock:
            self._entries.clear()

    def invalidate(self) -> None:
        """Drop this process's entries and tell every other process (call after commit)."""
        self.clear()
        try:
            get_redis().incr(self.generation_key)
        except redis.RedisError:
            log.exception("could not publish the invalidation of %s", self.generation_key)

    def _refresh(self, now: float) -> None:
        if now - self._checked_at < settings.TENANT_CACHE_CHECK_INTERVAL:
            return
        generation: Any
        try:
            generation = get_redis().get(self.generation_key)
            usable = True
        except redis.RedisError:
            log.warning("%s unreadable: not caching until Redis answers", self.generation_key)
            generation, usable = None, False
        with self._lock:
            if generation != self._generation or not usable:
                self._entries.clear()
            self._generation, self._usable, self._checked_at = generation, usable, now
