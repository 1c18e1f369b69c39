"""Django's Redis cache backend, with one Redis client kept per connection pool.

Django's Redis cache client builds a new `redis.Redis` for every operation (`get_client()`), and
redis-py's constructor fills its ~170 response callbacks every time: a tenth of a millisecond of
CPU per cache read, paid on every POST /api/v1/notifications (the webhook endpoints of the
tenant are read from the cache after each commit). The client holds nothing but its pool, and a
`redis.Redis` over a pool is safe to share, so this backend keeps one per pool. Pools, servers,
serialization and every operation are Django's, unchanged.
"""

from typing import Any, cast

from django.core.cache.backends import redis as django_redis


class RedisCacheClient(django_redis.RedisCacheClient):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._clients: dict[int, Any] = {}  # by id() of the pool, which Django never replaces

    def get_client(self, key: Any = None, *, write: bool = False) -> Any:
        django_client = cast(Any, self)  # these two are not in django-stubs
        pool = django_client._get_connection_pool(write)
        client = self._clients.get(id(pool))
        if client is None:
            client = self._clients[id(pool)] = django_client._client(connection_pool=pool)
        return client


class RedisCache(django_redis.RedisCache):
    def __init__(self, server: str, params: dict[str, Any]) -> None:
        super().__init__(server, params)
        self._class = RedisCacheClient
