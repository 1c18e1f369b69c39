"""Provider names -> classes, and which provider a tenant uses on each channel.

A provider is named here by a dotted path and imported on first use. A tenant's own
ProviderConfig (primary, and optionally secondary for failover) wins; otherwise the platform's
default for the channel (settings.PLATFORM_PROVIDERS) is used.

Every send batch asks which providers to use, so the answer is kept per process
(tenants.process_cache): a save or delete of a ProviderConfig drops it in this process at once
and in every other within TENANT_CACHE_CHECK_INTERVAL seconds; anything else (a raw UPDATE) is
seen within PROVIDER_CACHE_MAX_AGE seconds.
"""

from dataclasses import dataclass, field
from functools import cache
from typing import Any

from django.conf import settings
from django.core.signals import setting_changed
from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from django.utils.module_loading import import_string

from tenants.crypto import decrypt_json
from tenants.process_cache import ProcessCache
from tenants.schemas import current_schema

from ..models import ProviderConfig, ProviderRole
from .base import Provider

PROVIDERS: dict[str, str] = {
    "smtp": "notifications.providers.smtp.SmtpProvider",
    "django_email": "notifications.providers.smtp.DjangoBackendProvider",
    "twilio": "notifications.providers.twilio_sms.TwilioSmsProvider",
    "webpush": "notifications.providers.webpush.WebPushProvider",
    "inapp": "notifications.providers.inapp.InAppFeedProvider",
}


class UnknownProvider(LookupError):
    pass


@cache
def provider_class(name: str) -> type[Provider]:
    try:
        path = PROVIDERS[name]
    except KeyError:
        raise UnknownProvider(
            f"no provider named {name!r}; providers are {', '.join(sorted(PROVIDERS))}"
        ) from None
    cls: type[Provider] = import_string(path)
    return cls


def available_providers(channel: str) -> list[str]:
    """Names of the providers for `channel` whose module imports (i.e. that exist in this build)."""
    names = []
    for name in PROVIDERS:
        try:
            cls = provider_class(name)
        except ImportError:
            continue
        if cls.channel == channel:
            names.append(name)
    return names


@dataclass(frozen=True)
class ProviderChoice:
    """A provider and its credentials for one tenant and channel."""

    name: str
    settings: dict[str, Any] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict)
    source: str = "platform"  # or "tenant"

    @property
    def label(self) -> str:
        return f"{self.name} ({self.source})"

    def build(self) -> Provider:
        return provider_class(self.name)(self.settings, self.secrets)


def platform_choice(channel: str) -> ProviderChoice | None:
    entry = settings.PLATFORM_PROVIDERS.get(channel)
    if not entry:
        return None
    return ProviderChoice(
        name=entry["provider"],
        settings=dict(entry.get("settings", {})),
        secrets=dict(entry.get("secrets", {})),
        source="platform",
    )


PROVIDER_CACHE_MAX_AGE = 30.0  # seconds
Choices = tuple["ProviderChoice | None", "ProviderChoice | None"]  # (primary, secondary)
_choices: ProcessCache[tuple[str, str], Choices] = ProcessCache(
    "herald:providers:generation", max_age=PROVIDER_CACHE_MAX_AGE, max_entries=10_000
)


@receiver(post_save, sender=ProviderConfig)
@receiver(post_delete, sender=ProviderConfig)
def _forget_choices(sender: Any, **kwargs: Any) -> None:
    _choices.clear()  # this process, at once; every other one after commit
    transaction.on_commit(_choices.invalidate)


@receiver(setting_changed)
def _forget_choices_on_new_settings(setting: str, **kwargs: Any) -> None:
    if setting == "PLATFORM_PROVIDERS":
        _choices.clear()


def resolve(channel: str) -> Choices:
    """(primary, secondary) for the current tenant's `channel`; either may be None."""
    found = _choices.get_or_load((current_schema(), channel), lambda: _read_choices(channel))
    assert found is not None  # _read_choices always answers a pair
    return found


def _read_choices(channel: str) -> Choices:
    configs = {c.role: c for c in ProviderConfig.objects.filter(channel=channel, is_active=True)}
    primary_config = configs.get(ProviderRole.PRIMARY)
    secondary_config = configs.get(ProviderRole.SECONDARY)
    primary = _from_config(primary_config) if primary_config else platform_choice(channel)
    secondary = _from_config(secondary_config) if secondary_config else None
    return primary, secondary


def _from_config(config: ProviderConfig) -> ProviderChoice:
    return ProviderChoice(
        name=config.provider,
        settings=dict(config.settings),
        secrets=decrypt_json(config.secrets_encrypted),
        source="tenant",
    )
