"""kombu's Redis transport, with one Redis client kept per channel instead of one per message.

kombu's Redis channel builds a new `redis.Redis` for every message it publishes (`_put` asks
`conn_or_acquire()`, which calls `_create_client()` each time), and redis-py's constructor fills
its ~170 response callbacks every time: about a tenth of a millisecond of CPU per publish, a
tenth of what an API request spends handing its deliveries to the broker. That client holds
nothing but the channel's connection pool, and a `redis.Redis` over a pool is safe to share (each
command takes a connection from the pool), so this channel keeps the client it built and builds
another only when kombu replaces the pool (it drops its pools when a connection fails) or closes
the channel. Connections, retries, routing and the messages themselves are kombu's, unchanged.

Chosen by CELERY_BROKER_TRANSPORT for `redis://` broker URLs (tenant_platform.settings.base).
"""

from typing import Any, cast

from kombu.transport import redis as kombu_redis


class Channel(kombu_redis.Channel):
    _sync_client: Any = None

    def _create_client(self, asynchronous: bool = False) -> Any:
        if asynchronous:  # the consumer's BRPOP client: kombu keeps that one itself
            return self._new_client(asynchronous=True)
        pool = self.pool
        client = self._sync_client
        if client is None or client.connection_pool is not pool:
            client = self._sync_client = self._new_client(asynchronous=False)
        return client

    def _new_client(self, asynchronous: bool) -> Any:
        return cast(Any, super())._create_client(asynchronous=asynchronous)  # not in kombu's stubs

    def close(self) -> None:
        self._sync_client = None
        super().close()


class Transport(kombu_redis.Transport):
    Channel = Channel
