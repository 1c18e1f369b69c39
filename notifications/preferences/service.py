"""Who wants what: categories (made on first use) and per recipient, category and channel choices."""

from collections.abc import Iterable

from django.db import IntegrityError, transaction
from django.utils import timezone

from ..models import Category, Channel, Preference, Recipient

DEFAULT_CATEGORY = "general"


def category(key: str) -> Category:
    """The category named `key`, created on first use (safe under concurrent first uses)."""
    found = Category.objects.filter(key=key).first()
    if found is not None:
        return found
    try:
        with transaction.atomic():
            return Category.objects.create(key=key, name=key.replace("-", " ").replace("_", " ").capitalize())
    except IntegrityError:
        return Category.objects.get(key=key)


def set_preferences(recipient: Recipient, category: Category, choices: dict[str, bool]) -> None:
    """Record the recipient's choice per channel for a category (upserts, one row per channel)."""
    now = timezone.now()
    Preference.objects.bulk_create(
        [
            Preference(
                recipient=recipient, category=category, channel=channel, enabled=enabled, updated_at=now
            )
            for channel, enabled in choices.items()
        ],
        update_conflicts=True,
        unique_fields=["recipient", "category", "channel"],
        update_fields=["enabled", "updated_at"],
    )


def unsubscribe(
    recipient: Recipient, category: Category, channels: Iterable[str] = tuple(Channel.values)
) -> None:
    set_preferences(recipient, category, {channel: False for channel in channels})


def preference_table(recipient: Recipient) -> list[tuple[Category, dict[str, bool]]]:
    """Every category with the recipient's choice per channel (True unless turned off)."""
    off = {
        (p.category_id, p.channel)
        for p in Preference.objects.filter(recipient=recipient, enabled=False).only("category_id", "channel")
    }
    return [
        (c, {channel: (c.pk, channel) not in off for channel in Channel.values})
        for c in Category.objects.order_by("required", "key")
    ]
