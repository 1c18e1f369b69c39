"""channels_redis's layer, with a group send that takes fewer round trips to Redis.

Every accepted notification and every send batch publishes its delivery events to the tenant's
console group (notifications.live), most of the time with no console open. channels_redis's
`group_send` makes four round trips for that: it drops the group's expired members, reads the
members, then for each Redis connection drops the expired messages of the members' channels and
runs its Lua script that adds the message. Each costs a quarter of a millisecond of CPU on the
async client, so a send with nobody listening cost half a millisecond, about a twentieth of an
API request. Here the group's members are dropped-and-read in one pipelined round trip (and
nothing more happens when there are none); the expired messages are dropped and the message added
in one more per connection. Same keys, same serialized message (the layer's own `serialize`),
same capacity rule, same expiry: consumers read it exactly as before. Everything else is the
library's.
"""

import logging
import time
from typing import Any

from channels_redis.core import RedisChannelLayer

log = logging.getLogger("channels_redis.core")  # where channels_redis reports the same

# KEYS: the channels' message keys. ARGV: a serialized message per key, then a capacity per key,
# then now and the expiry. A channel at capacity drops the message (counted), as channels_redis does.
_ADD = """
local n = #KEYS
local over = 0
for i = 1, n do
    if redis.call('ZCOUNT', KEYS[i], '-inf', '+inf') < tonumber(ARGV[n + i]) then
        redis.call('ZADD', KEYS[i], ARGV[2 * n + 1], ARGV[i])
        redis.call('EXPIRE', KEYS[i], ARGV[2 * n + 2])
    else
        over = over + 1
    end
end
return over
"""


class ChannelLayer(RedisChannelLayer):  # type: ignore[misc]  # channels_redis has no type hints
    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        assert self.require_valid_group_name(group), "Group name not valid"
        key = self._group_key(group)
        connection = self.connection(self.consistent_hash(group))
        pipe = connection.pipeline(transaction=False)
        pipe.zremrangebyscore(key, min=0, max=int(time.time()) - self.group_expiry)
        pipe.zrange(key, 0, -1)
        _, members = await pipe.execute()
        if not members:
            return
        channel_names = [member.decode("utf8") for member in members]
        by_connection, messages, capacities = self._map_channel_keys_to_connection(channel_names, message)
        for index, channel_keys in by_connection.items():
            now = time.time()
            pipe = self.connection(index).pipeline(transaction=False)
            for channel_key in channel_keys:
                pipe.zremrangebyscore(channel_key, min=0, max=int(now) - int(self.expiry))
            args = (
                [messages[k] for k in channel_keys]
                + [capacities[k] for k in channel_keys]
                + [now, self.expiry]
            )
            pipe.eval(_ADD, len(channel_keys), *channel_keys, *args)
            over = (await pipe.execute())[-1]
            if over:
                log.info("%s of %s channels over capacity in group %s", over, len(channel_names), group)
