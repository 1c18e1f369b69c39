"""Live updates over WebSockets: the tenant-from-Host middleware, the feed consumer, and publishing.

Publishing goes through the channel layer (settings.CHANNEL_LAYERS, Redis). One group per tenant
schema and recipient; whoever changes a recipient's feed calls `publish_to_feeds` after the
change is committed. The database stays the source of truth: a message lost here (Redis down, a
client offline) is caught up by the client on reconnect (`/ws/feed/?after=<item id>`).
"""

import asyncio
import hashlib
import logging
import re
import uuid
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

log = logging.getLogger(__name__)

# Channel-layer group names: [a-zA-Z0-9._-], fewer than 100 characters.
_GROUP_NAME_LIMIT = 99


def feed_group(schema: str, recipient_id: uuid.UUID | str) -> str:
    """The group of one recipient's open feeds: `feed.<schema>.<recipient id hex>`.

    A schema name may be 63 characters, too long to fit beside the id; such a schema is named
    by a digest instead, which keeps the name unique per tenant.
    """
    recipient_hex = uuid.UUID(str(recipient_id)).hex
    name = f"feed.{schema}.{recipient_hex}"
    if len(name) > _GROUP_NAME_LIMIT:
        digest = hashlib.sha256(schema.encode()).hexdigest()[:24]
        name = f"feed.{digest}.{recipient_hex}"
    return name


def publish_to_feeds(messages: Iterable[tuple[str, dict[str, Any]]]) -> int:
    """Send each (group, message) through the channel layer; return how many were sent.

    Never raises: a channel-layer failure is logged, and the clients catch up from the database.
    Call it after the transaction that wrote the change has committed (`transaction.on_commit`).
    """
    batch = list(messages)
    if not batch:
        return 0
    layer = get_channel_layer()
    if layer is None:
        return 0

    async def send_all() -> int:
        sent = 0
        for group, message in batch:
            await layer.group_send(group, message)
            sent += 1
        return sent

    try:
        if _loop_running():
            # Called from a thread that runs an event loop, where async_to_sync may not be used:
            # publish from a helper thread instead.
            with ThreadPoolExecutor(max_workers=1) as helper:
                sent: int = helper.submit(async_to_sync(send_all)).result()
        else:
            sent = async_to_sync(send_all)()
    except Exception as exc:  # the feed row is committed; live delivery is best effort
        log.warning("feed: could not publish %d live updates: %s", len(batch), exc.__class__.__name__)
        return 0
    return sent


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


# --- keeping tokens out of the server's logs ----------------------------------------------------

_TOKEN_IN_QUERY = re.compile(r"(?<=[?&]token=)[^&\s\"']+")


class RedactTokens(logging.Filter):
    """Blanks `token=...` in logged URLs: a browser's WebSocket cannot send headers, so the
    recipient token travels in the query string, which servers log with every request."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = _TOKEN_IN_QUERY.sub("[redacted]", record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(
                _TOKEN_IN_QUERY.sub("[redacted]", arg) if isinstance(arg, str) else arg for arg in record.args
            )
        return True


SERVER_LOGGERS = ("uvicorn.access", "uvicorn.error", "daphne.server", "gunicorn.access")


def redact_tokens_in_server_logs() -> None:
    """Install RedactTokens on the ASGI/WSGI servers' loggers (idempotent)."""
    for name in SERVER_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactTokens) for f in logger.filters):
            logger.addFilter(RedactTokens())
