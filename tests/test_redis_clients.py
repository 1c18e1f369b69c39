"""The broker's channels and Django's cache keep their Redis client instead of building one per
command (tenant_platform.broker, tenant_platform.cache), and still talk to Redis as before."""

from typing import Any

import redis
from django.conf import settings
from django.core.cache import cache, caches
from django_tenants.utils import schema_context

from tenant_platform import broker
from tenant_platform.celery import app
from tests.probe_tasks import record_schema


def test_a_redis_broker_channel_publishes_through_one_kept_client() -> None:
    assert settings.CELERY_BROKER_URL.startswith("redis://")
    with app.connection_for_write() as conn:
        channel: Any = conn.default_channel
        assert isinstance(channel, broker.Channel)
        with channel.conn_or_acquire() as first, channel.conn_or_acquire() as second:
            assert first is second
        queue = "herald-test-kept-client"
        client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
        client.delete(queue)
        with schema_context("alpha"):
            for _ in range(2):
                record_schema.apply_async(args=("kept",), queue=queue, connection=conn)  # type: ignore[call-arg]
        assert client.llen(queue) == 2
        client.delete(queue)


def test_the_cache_reads_and_writes_through_one_kept_client() -> None:
    backend: Any = cache
    assert backend._cache.get_client() is backend._cache.get_client()
    # Each request under the ASGI server gets a backend of its own (a fresh context): they share
    # the process's client, hence its pool and its connections.
    other: Any = caches.create_connection("default")
    assert other is not backend
    assert other._cache is backend._cache
    cache.set("herald-test-kept-client", {"a": 1}, 30)
    assert cache.get("herald-test-kept-client") == {"a": 1}
    cache.delete("herald-test-kept-client")
    assert cache.get("herald-test-kept-client") is None
