"""Whether the current tenant can send on a channel: asked by every POST, cached per process.

The answer depends on the tenant's ProviderConfig rows and the platform's providers
(settings.PLATFORM_PROVIDERS), which change rarely; reading ProviderConfig on every request cost
a query each. Answers are kept per tenant schema and channel (tenants.process_cache): a save or
delete of any ProviderConfig drops them in this process at once and, after commit, in every
other within TENANT_CACHE_CHECK_INTERVAL seconds; a changed PLATFORM_PROVIDERS setting drops
them too. Connected in NotificationsConfig.ready(), so every process that can change a provider
(web, workers, management commands) tells the others.
"""

from typing import Any

from django.core.signals import setting_changed
from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from tenants.process_cache import ProcessCache
from tenants.schemas import current_schema

from ..models import ProviderConfig
from ..providers.registry import UnknownProvider, provider_class, resolve_uncached

GENERATION_KEY = "herald:providers:generation"
MAX_AGE = 60.0  # seconds

# (schema, channel) -> why the channel is unavailable, or "" when it is available.
_answers: ProcessCache[tuple[str, str], str] = ProcessCache(GENERATION_KEY, max_age=MAX_AGE)


def channel_unavailable(channel: str) -> str | None:
    """Why this tenant can't send on `channel` now, or None if it can."""
    problem = _answers.get_or_load((current_schema(), channel), lambda: _problem(channel) or "")
    return problem or None


def _problem(channel: str) -> str | None:
    # Not registry.resolve: that cache checks the same generation on its own clock, and an
    # answer it had not yet dropped would be kept here under the new generation for MAX_AGE.
    primary, _ = resolve_uncached(channel)
    if primary is None:
        return f"no {channel} provider is configured for this tenant"
    try:
        provider_class(primary.name)
    except (ImportError, UnknownProvider):
        return f"channel {channel!r} is not available yet"
    return None


@receiver(post_save, sender=ProviderConfig)
@receiver(post_delete, sender=ProviderConfig)
def _provider_changed(sender: type[ProviderConfig], **kwargs: Any) -> None:
    _answers.clear()  # this process at once, even inside the transaction that changes it
    transaction.on_commit(_answers.invalidate)


@receiver(setting_changed)
def _setting_changed(setting: str, **kwargs: Any) -> None:
    if setting == "PLATFORM_PROVIDERS":
        _answers.clear()
