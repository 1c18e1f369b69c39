"""Pushing events to a tenant's channel-layer group (the console listens there)."""

import logging
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from tenants.schemas import current_schema

log = logging.getLogger(__name__)


def tenant_group(schema: str) -> str:
    return f"tenant.{schema}"


def publish(event_type: str, payload: dict[str, Any]) -> None:
    """Best effort: the database is the truth, and a page that missed this catches up from it."""
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(tenant_group(current_schema()), {"type": event_type, **payload})
    except Exception:  # a channel-layer outage must never fail the work that reports to it
        log.warning("could not publish %s to the channel layer", event_type, exc_info=True)
