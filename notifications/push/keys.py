"""A tenant's VAPID key pair, made once and kept in its push ProviderConfig.

The private key signs every push request (RFC 8292) and is stored encrypted with the other
provider secrets (tenants.crypto); the public key is what a browser passes to
`pushManager.subscribe()` as `applicationServerKey`, so it sits in the clear settings.

Call `ensure_vapid_keys()` inside the tenant's schema (provisioning does, and so do the push
endpoint and the provider, for tenants made before push existed).
"""

import base64
from dataclasses import dataclass
from email.utils import parseaddr

from cryptography.hazmat.primitives import serialization
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from py_vapid import Vapid02

from tenants.crypto import decrypt_json, encrypt_json

from ..models import Channel, ProviderConfig, ProviderRole

PROVIDER_NAME = "webpush"


@dataclass(frozen=True)
class VapidKeys:
    public_key: str  # base64url (no padding) of the uncompressed P-256 point: applicationServerKey
    private_key: str  # base64url (no padding) of the 32-byte private scalar
    subject: str  # "mailto:..." or "https://...": who push services contact about our traffic


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def default_subject() -> str:
    """The platform's contact address: push services write here if our traffic misbehaves."""
    configured = str(getattr(settings, "WEBPUSH_VAPID_SUBJECT", "") or "")
    if configured:
        return configured
    address = parseaddr(settings.DEFAULT_FROM_EMAIL)[1] or f"notifications@{settings.BASE_DOMAIN}"
    return f"mailto:{address}"


def generate_keys(subject: str | None = None) -> VapidKeys:
    vapid = Vapid02()
    vapid.generate_keys()
    public = vapid.public_key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    private = vapid.private_key.private_numbers().private_value.to_bytes(32, "big")
    return VapidKeys(
        public_key=b64url(public), private_key=b64url(private), subject=subject or default_subject()
    )


def _webpush_config() -> ProviderConfig | None:
    """The tenant's active webpush config, its primary one first."""
    configs = ProviderConfig.objects.filter(channel=Channel.PUSH, provider=PROVIDER_NAME, is_active=True)
    return configs.order_by("role").first()  # "primary" < "secondary"


def keys_of(config: ProviderConfig) -> VapidKeys | None:
    public = str(config.settings.get("vapid_public_key") or "")
    private = str(decrypt_json(config.secrets_encrypted).get("vapid_private_key") or "")
    if not public or not private:
        return None
    return VapidKeys(public, private, str(config.settings.get("subject") or default_subject()))


def ensure_vapid_keys(subject: str | None = None) -> tuple[str, ProviderConfig]:
    """(public key, config) of the current tenant's VAPID keys, made and stored if it has none.

    Safe to call on every request: it reads one row once the keys exist. Two first calls at
    the same time store one key pair (the partial unique index on active primaries decides).
    """
    config = _webpush_config()
    if config is not None and (keys := keys_of(config)) is not None:
        return keys.public_key, config
    try:
        with transaction.atomic():
            return _store_new_keys(subject)
    except IntegrityError:  # another call stored them first: use theirs
        config = _webpush_config()
        if config is None or (keys := keys_of(config)) is None:
            raise
        return keys.public_key, config


def _store_new_keys(subject: str | None) -> tuple[str, ProviderConfig]:
    keys = generate_keys(subject)
    config = (
        ProviderConfig.objects.select_for_update()
        .filter(channel=Channel.PUSH, provider=PROVIDER_NAME, is_active=True)
        .order_by("role")
        .first()
    )
    if config is not None and (existing := keys_of(config)) is not None:
        return existing.public_key, config  # made while we waited for the lock
    if config is None:
        config = ProviderConfig(channel=Channel.PUSH, role=ProviderRole.PRIMARY, provider=PROVIDER_NAME)
    # A config the tenant made without keys (e.g. only a subject) keeps its other settings.
    secrets = decrypt_json(config.secrets_encrypted) if config.secrets_encrypted else {}
    config.settings = {
        **config.settings,
        "vapid_public_key": keys.public_key,
        "subject": config.settings.get("subject") or keys.subject,
    }
    config.secrets_encrypted = encrypt_json({**secrets, "vapid_private_key": keys.private_key})
    config.updated_at = timezone.now()
    config.save()
    return keys.public_key, config


def current_keys() -> VapidKeys:
    """The current tenant's keys, made on first use."""
    _, config = ensure_vapid_keys()
    keys = keys_of(config)
    assert keys is not None  # ensure_vapid_keys returns a config with both keys
    return keys
