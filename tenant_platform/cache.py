"""Django's Redis cache backend, with its Redis connections and clients kept for the process.

Django keeps a cache backend per thread or per asyncio context (an asgiref Local), and under the
ASGI server every request runs in a fresh copy of the event loop's context (a2wsgi), so each
request that touched the cache got a new backend, a new connection pool and a new TCP connection
to Redis (with redis-py's handshake and a DNS lookup). And Django's client builds a new
`redis.Redis` for every operation, whose constructor fills ~170 response callbacks. Both were
paid on every POST /api/v1/notifications (the tenant's webhook endpoints are read from the cache
after each commit).

Here the backends of one configuration share one client object for the process, whose pools
and `redis.Redis` clients are kept: redis-py's pools and clients are safe to share between
threads, and a pool notices a fork and reconnects. Servers, serialization, keys and every
operation are Django's, unchanged.
"""

import threading
from typing import Any, cast

from django.core.cache.backends import redis as django_redis
from django.utils.functional import cached_property


class RedisCacheClient(django_redis.RedisCacheClient):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._clients: dict[int, Any] = {}  # by id() of the pool, which is never replaced

    def get_client(self, key: Any = None, *, write: bool = False) -> Any:
        django_client = cast(Any, self)  # these two are not in django-stubs
        pool = django_client._get_connection_pool(write)
        client = self._clients.get(id(pool))
        if client is None:
            client = self._clients[id(pool)] = django_client._client(connection_pool=pool)
        return client


_shared: dict[str, RedisCacheClient] = {}
_shared_lock = threading.Lock()


def shared_client(servers: list[str], options: dict[str, Any]) -> RedisCacheClient:
    """The process's one client for this configuration (LOCATION and OPTIONS)."""
    key = repr((servers, sorted(options.items())))
    with _shared_lock:
        client = _shared.get(key)
        if client is None:
            client = _shared[key] = RedisCacheClient(servers, **options)
        return client


class RedisCache(django_redis.RedisCache):
    @cached_property
    def _cache(self) -> RedisCacheClient:
        backend = cast(Any, self)  # not in django-stubs
        return shared_client(backend._servers, backend._options)
