"""Encryption of stored credentials (tenants' provider secrets), with key rotation.

FIELD_ENCRYPTION_KEYS is a comma-separated list of Fernet keys: the first encrypts, every one
decrypts, so a new key can be put first and old values re-encrypted at leisure. Unset, one key
is derived from SECRET_KEY (fine for development; set real keys in production).
"""

import base64
import hashlib
import hmac
import json
from functools import lru_cache
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings


class DecryptionError(Exception):
    """A stored secret cannot be decrypted with any configured key."""


@lru_cache(maxsize=1)
def _fernet() -> MultiFernet:
    keys = [k.strip() for k in getattr(settings, "FIELD_ENCRYPTION_KEYS", "").split(",") if k.strip()]
    if not keys:
        derived = hmac.new(settings.SECRET_KEY.encode(), b"herald.field-encryption", hashlib.sha256).digest()
        keys = [base64.urlsafe_b64encode(derived).decode()]
    return MultiFernet([Fernet(k) for k in keys])


def encrypt_json(value: dict[str, Any]) -> str:
    if not value:
        return ""
    return _fernet().encrypt(json.dumps(value, sort_keys=True).encode()).decode()


def decrypt_json(token: str) -> dict[str, Any]:
    if not token:
        return {}
    try:
        data: dict[str, Any] = json.loads(_fernet().decrypt(token.encode()))
    except InvalidToken:
        raise DecryptionError("stored secret cannot be decrypted with the configured keys") from None
    return data


def mask(value: str) -> str:
    """What a secret looks like wherever it is shown: its last four characters at most."""
    if len(value) <= 8:
        return "••••"
    return "••••" + value[-4:]
