"""Active tenants by schema name, cached per process.

Tasks look their tenant up on every run, so a query per task would be paid on the hottest path.
Each process keeps the tenants it has seen; a save or delete of any tenant bumps a generation
counter in Redis, and a process that sees a new generation (checked at most every
TENANT_CACHE_CHECK_INTERVAL seconds) drops its cache. A tenant deactivated in the console stops
running tasks within that interval.
"""

import logging
import threading
import time
from typing import Any

import redis
from django.conf import settings

from .models import Tenant
from .redis_client import get_redis
from .schemas import current_tenant, use_public, use_tenant

log = logging.getLogger(__name__)

GENERATION_KEY = "herald:tenants:generation"

_lock = threading.Lock()
_tenants: dict[str, Tenant | None] = {}
_generation: bytes | None = None
_checked_at = 0.0


def get_active_tenant(schema_name: str) -> Tenant | None:
    """The active tenant owning `schema_name`, or None if there is none (or it is inactive)."""
    _refresh_if_changed()
    with _lock:
        if schema_name in _tenants:
            return _tenants[schema_name]
        generation_before = _generation
    tenant = _load(schema_name)
    with _lock:
        # Another thread may have seen a newer generation while we read: then what we read may
        # be stale, so use it once without caching it.
        if _generation == generation_before:
            _tenants[schema_name] = tenant
    return tenant


def read_active_tenant(schema_name: str) -> Tenant | None:
    """The active tenant owning `schema_name`, read from the database now, past the cache: for a
    rare decision that a cached "no such tenant", stale for up to TENANT_CACHE_CHECK_INTERVAL after
    the tenant is (re)activated, must not make alone (the fair dispatcher dropping held work)."""
    return _load(schema_name)


def invalidate() -> None:
    """Tell every process that tenants changed."""
    with _lock:
        _tenants.clear()
    try:
        get_redis().incr(GENERATION_KEY)
    except redis.RedisError:
        # Without Redis other processes keep their cache until Redis is back; say so loudly.
        log.exception("could not publish tenant cache invalidation")


def _refresh_if_changed() -> None:
    global _generation, _checked_at
    now = time.monotonic()
    if now - _checked_at < settings.TENANT_CACHE_CHECK_INTERVAL:
        return
    generation: Any
    try:
        generation = get_redis().get(GENERATION_KEY)
    except redis.RedisError:
        # Fail closed: with no way to know whether a tenant was deactivated, forget them all.
        log.warning("tenant cache: Redis unreachable, dropping cached tenants")
        generation = None
        with _lock:
            _tenants.clear()
    with _lock:
        if generation != _generation:
            _tenants.clear()
            _generation = generation
        _checked_at = now


def _load(schema_name: str) -> Tenant | None:
    # Tenants live in public; make sure we read them there whatever schema is current.
    previous = current_tenant()
    use_public()
    try:
        tenant: Tenant | None = Tenant.objects.filter(schema_name=schema_name, is_active=True).first()
        return tenant
    finally:
        if previous is not None and previous.schema_name != "public":
            use_tenant(previous)
