"""Live updates over WebSockets: the tenant-from-Host middleware, the consumers, and publishing.

Publishing goes through the channel layer (settings.CHANNEL_LAYERS, Redis) with
`publish_to_groups`, after the change is committed: to a recipient's feed group (schema and
recipient) and to the tenant's console group (notifications.live). The database stays the source
of truth: a message lost here (Redis down, a client offline) is caught up by the client on
reconnect (`/ws/feed/?after=<item id>`, `/ws/console/?after=<event id>`).
"""

import asyncio
import hashlib
import logging
import os
import re
import threading
import uuid
from collections.abc import Iterable
from typing import Any

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


def publish_to_groups(messages: Iterable[tuple[str, dict[str, Any]]]) -> int:
    """Hand each (group, message) to this process's publisher; return how many were handed over.

    Never raises and never waits for Redis: the messages are sent, in the order they were handed
    over, by one task on a background event loop (see `_Publisher`). A channel-layer failure is
    logged there, and the clients catch up from the database. Call it after the transaction that
    wrote the change has committed (`transaction.on_commit`).
    """
    batch = list(messages)
    if not batch:
        return 0
    try:
        _Publisher.for_this_process().submit(batch)
    except Exception as exc:  # the rows are committed; live delivery is best effort
        log.warning("could not publish %d live updates: %s", len(batch), exc.__class__.__name__)
        return 0
    return len(batch)


class _Publisher:
    """One event loop per process, in a daemon thread, with one task sending what is submitted.

    The channel layer keeps its Redis connections per event loop: a fresh loop per publish
    (what async_to_sync does in a plain thread) paid for a new connection every time, several
    milliseconds a request, and the caller waited on Redis. Here the caller only queues; one
    task sends, in order. A forked child (a Celery pool process) gets its own publisher. What is
    still queued when the process exits is lost, like any message a client was offline for.
    """

    _current: "_Publisher | None" = None
    _lock = threading.Lock()

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        self.queue: asyncio.Queue[list[tuple[str, dict[str, Any]]]] | None = None
        ready = threading.Event()
        threading.Thread(target=self._run, args=(ready,), name="herald-live-publisher", daemon=True).start()
        ready.wait(timeout=5)

    @classmethod
    def for_this_process(cls) -> "_Publisher":
        with cls._lock:
            if cls._current is None or cls._current.pid != os.getpid():
                cls._current = cls()
            return cls._current

    def submit(self, batch: list[tuple[str, dict[str, Any]]]) -> None:
        queue = self.queue
        if queue is None:
            raise RuntimeError("the live publisher did not start")
        self.loop.call_soon_threadsafe(queue.put_nowait, batch)

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        self.queue = asyncio.Queue()
        self.loop.create_task(self._send_forever(self.queue))
        ready.set()
        self.loop.run_forever()

    async def _send_forever(self, queue: "asyncio.Queue[list[tuple[str, dict[str, Any]]]]") -> None:
        while True:
            batch = await queue.get()
            layer = get_channel_layer()
            if layer is None:
                continue
            try:
                for group, message in batch:
                    await layer.group_send(group, message)
            except Exception as exc:
                log.warning("could not publish %d live updates: %s", len(batch), exc.__class__.__name__)


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
