"""In-app: the message becomes an item of the recipient's feed, pushed live to their open feeds.

Idempotent per delivery (the item's OneToOne on it): a repeated send finds the item it made
before and answers with the same id. New items are published to the recipient's channel-layer
group once the transaction that wrote them commits; if the channel layer is down the delivery
still succeeds, because the item is in the database and the client catches up on reconnect.
"""

import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.db import DatabaseError, IntegrityError, transaction

from tenants.schemas import current_schema

from .. import feed
from ..feed.serializers import item_json
from ..models import Delivery, InAppMessage, Recipient
from ..realtime import feed_group, publish_to_groups
from .base import InAppProvider, OutgoingMessage, ProviderError

_TITLE_MAX = 255  # InAppMessage.title
_URL_MAX = 2048  # InAppMessage.url
_absolute_url = URLValidator(schemes=["http", "https"])

log = logging.getLogger(__name__)


class InAppFeedProvider(InAppProvider):
    name = "inapp"
    max_text = 10_000

    _new_items: list[InAppMessage]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._new_items = []

    def check(self, message: OutgoingMessage) -> None:
        super().check(message)
        try:
            uuid.UUID(message.to)
        except ValueError:
            raise ProviderError(
                f"in-app address must be a recipient id, not {message.to!r}", permanent=True
            ) from None
        url = str(message.data.get("url") or "")
        if url and not link_is_safe(url):
            raise ProviderError(
                f"data.url {url[:200]!r} must be an http(s) URL or a path starting with '/'", permanent=True
            )

    def build(self, message: OutgoingMessage) -> dict[str, Any]:
        return {
            "delivery_id": message.delivery_id,
            "recipient_id": str(uuid.UUID(message.to)),
            "title": message.subject[:_TITLE_MAX],
            "body": message.text,
            "url": str(message.data.get("url") or ""),
            "data": dict(message.data),
        }

    def post(self, payload: dict[str, Any]) -> str:
        existing = InAppMessage.objects.filter(delivery_id=payload["delivery_id"]).first()
        if existing is not None:  # a repeated send: the item is already in the feed
            return str(existing.id)
        # Foreign keys are checked at commit: look first, so a bad id fails this message only.
        if not Recipient.objects.filter(id=payload["recipient_id"]).exists():
            raise ProviderError(f"no recipient with id {payload['recipient_id']}", permanent=True)
        if not Delivery.objects.filter(id=payload["delivery_id"]).exists():
            raise ProviderError(f"no delivery with id {payload['delivery_id']}", permanent=True)
        try:
            with transaction.atomic():
                item = InAppMessage.objects.create(**payload)
        except IntegrityError:  # a concurrent send of the same delivery won
            raced = InAppMessage.objects.filter(delivery_id=payload["delivery_id"]).first()
            if raced is None:
                raise ProviderError("could not add the item to the feed", permanent=False) from None
            return str(raced.id)
        self._new_items.append(item)
        return str(item.id)

    def parse(self, answer: Any) -> tuple[str, str]:
        return str(answer), f"in feed as {answer}"

    @contextmanager
    def session(self) -> Iterator[None]:
        self._new_items = []
        try:
            yield
        finally:
            if self._new_items:
                announce_new_items(self._new_items)
            self._new_items = []


def link_is_safe(url: str) -> bool:
    """An http(s) URL, or a path on the page's own site ("/orders/42"); never javascript: etc."""
    if len(url) > _URL_MAX:
        return False
    if url.startswith("/") and not url.startswith("//") and "\\" not in url:
        return True
    try:
        _absolute_url(url)
    except ValidationError:
        return False
    return True


def announce_new_items(items: list[InAppMessage]) -> None:
    """Publish the items to their recipients' open feeds once they are committed."""
    schema = current_schema()
    payloads = [(str(item.recipient_id), item_json(item)) for item in items]

    def publish() -> None:
        try:
            unread = feed.unread_counts(recipient_id for recipient_id, _ in payloads)
        except DatabaseError:
            log.warning("feed: could not count unread items; %d new items not published", len(payloads))
            return
        publish_to_groups(
            (
                feed_group(schema, recipient_id),
                {"type": "feed.item", "item": item, "unread": unread[recipient_id]},
            )
            for recipient_id, item in payloads
        )

    transaction.on_commit(publish)
