"""Herald's channel layer (tenant_platform.channel_layer): its group send, against real Redis,
delivers what channels_redis's own would, in fewer round trips."""

import asyncio
import time
import uuid
from typing import Any

import redis
from channels_redis.core import RedisChannelLayer
from django.conf import settings

from tenant_platform.channel_layer import ChannelLayer


def _layer(cls: type[RedisChannelLayer] = ChannelLayer, **options: Any) -> Any:
    config: Any = settings.CHANNEL_LAYERS["default"]["CONFIG"]
    return cls(hosts=config["hosts"], prefix=f"herald-test-{uuid.uuid4().hex[:8]}", **options)


def _raw() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL)


def _keys(layer: Any) -> set[Any]:
    return set(_raw().keys(f"{layer.prefix}*"))


async def _receive_all(layer: Any, channel: str, timeout: float = 0.5) -> list[dict[str, Any]]:
    got = []
    while True:
        try:
            got.append(await asyncio.wait_for(layer.receive(channel), timeout))
        except TimeoutError:
            return got


def test_settings_use_it() -> None:
    assert settings.CHANNEL_LAYERS["default"]["BACKEND"] == "tenant_platform.channel_layer.ChannelLayer"


def test_every_member_of_the_group_gets_the_message_as_channels_redis_delivers_it() -> None:
    async def run(cls: type[RedisChannelLayer]) -> list[list[dict[str, Any]]]:
        layer = _layer(cls)
        channels = [await layer.new_channel() for _ in range(3)]
        for channel in channels:
            await layer.group_add("tenant.alpha", channel)
        await layer.group_add("tenant.beta", await layer.new_channel())
        await layer.group_send("tenant.alpha", {"type": "delivery.events", "events": [{"id": 7}]})
        await layer.group_send("tenant.alpha", {"type": "delivery.events", "events": [{"id": 8}]})
        got = [await _receive_all(layer, channel) for channel in channels]
        await layer.flush()
        return got

    ours, theirs = asyncio.run(run(ChannelLayer)), asyncio.run(run(RedisChannelLayer))
    expected = [
        {"type": "delivery.events", "events": [{"id": 7}]},
        {"type": "delivery.events", "events": [{"id": 8}]},
    ]
    assert ours == [expected] * 3
    assert ours == theirs


def test_a_group_nobody_listens_to_gets_no_message_keys() -> None:
    async def run() -> set[Any]:
        layer = _layer()
        await layer.group_send("tenant.alpha", {"type": "delivery.events", "events": []})
        return _keys(layer)

    assert asyncio.run(run()) == set()


def test_a_channel_at_capacity_drops_the_message_and_others_still_get_it() -> None:
    async def run() -> tuple[int, int]:
        layer = _layer(capacity=2)
        other = ChannelLayer(hosts=layer.hosts, prefix=layer.prefix, capacity=2)  # another process
        full, free = await layer.new_channel(), await other.new_channel()
        await layer.group_add("g", full)
        await layer.send(full, {"type": "x", "n": 1})
        await layer.send(full, {"type": "x", "n": 2})  # at capacity now
        await layer.group_add("g", free)
        await layer.group_send("g", {"type": "x", "n": 3})
        counts = len(await _receive_all(layer, full)), len(await _receive_all(other, free))
        await layer.flush()
        return counts

    assert asyncio.run(run()) == (2, 1)


def test_members_past_the_group_expiry_are_dropped_not_sent_to() -> None:
    async def run() -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[Any]]:
        layer = _layer(group_expiry=60)
        stale, fresh = await layer.new_channel(), await layer.new_channel()
        await layer.group_add("g", fresh)
        _raw().zadd(layer._group_key("g"), {stale: time.time() - 120})  # joined two minutes ago
        await layer.group_send("g", {"type": "x"})
        got = await _receive_all(layer, stale), await _receive_all(layer, fresh)
        members = _raw().zrange(layer._group_key("g"), 0, -1)
        await layer.flush()
        return got[0], got[1], members

    stale_got, fresh_got, members = asyncio.run(run())
    assert stale_got == []
    assert fresh_got == [{"type": "x"}]
    assert len(members) == 1
