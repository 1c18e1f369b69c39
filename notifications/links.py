"""Signed links and tokens for end users, who have no account: unsubscribe, preferences, feed.

Every token names the tenant's schema and the recipient; it is checked against the schema of the
domain it is used on, so a token of one tenant is worthless on another's domain.
"""

import base64
import hashlib
import hmac
import json
import re
import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core import signing

from tenants.models import Domain
from tenants.schemas import current_schema

FEED_TOKEN_MAX_AGE = 7 * 24 * 3600  # seconds; the tenant's backend mints a new one as needed
_FEED_SALT = "herald.recipient-token"
_UNSUBSCRIBE_SALT = "herald.unsubscribe"


class BadToken(Exception):
    """The token is forged, expired, or for another tenant."""


@dataclass(frozen=True)
class RecipientClaim:
    recipient_id: str
    category: str = ""


def recipient_token(recipient_id: str) -> str:
    """A token for the end user's own feed, preferences and push subscriptions (expires)."""
    return signing.TimestampSigner(salt=_FEED_SALT).sign_object({"t": current_schema(), "r": recipient_id})


def read_recipient_token(token: str) -> RecipientClaim:
    try:
        data = signing.TimestampSigner(salt=_FEED_SALT).unsign_object(token, max_age=FEED_TOKEN_MAX_AGE)
    except signing.BadSignature:
        raise BadToken("invalid or expired recipient token") from None
    return _claim(data)


def unsubscribe_token(recipient_id: str, category: str) -> str:
    """For links in messages: no expiry (mail is read late), one recipient and category."""
    return signing.Signer(salt=_UNSUBSCRIBE_SALT).sign_object(
        {"t": current_schema(), "r": recipient_id, "c": category}
    )


def read_unsubscribe_token(token: str) -> RecipientClaim:
    try:
        data = signing.Signer(salt=_UNSUBSCRIBE_SALT).unsign_object(token)
    except signing.BadSignature:
        raise BadToken("invalid unsubscribe link") from None
    return _claim(data)


class RecipientLinks:
    """The signed links of many recipients of one tenant, as `recipient_token`,
    `unsubscribe_token` and `tenant_url` make them, for a fraction of their cost.

    Django's signer derives its HMAC key (a SHA-256 of salt and secret) on every call, and each
    call looks up the schema and the tenant's host again; a broadcast chunk signs two tokens per
    recipient, so here the schema, the URL prefix and the keyed HMACs are made once. The tokens
    are the same strings Django's signer makes (tests compare them), so the readers above and
    tokens already in people's mailboxes keep working.
    """

    def __init__(self) -> None:
        self.schema = current_schema()
        self.prefix = tenant_url("")
        self._feed = _keyed_hmac(_FEED_SALT)
        self._unsubscribe = _keyed_hmac(_UNSUBSCRIBE_SALT)

    def recipient_token(self, recipient_id: str) -> str:
        value = f"{_b64_json({'t': self.schema, 'r': recipient_id})}:{signing.b62_encode(int(time.time()))}"
        return f"{value}:{_sign(self._feed, value)}"

    def unsubscribe_token(self, recipient_id: str, category: str) -> str:
        value = _b64_json({"t": self.schema, "r": recipient_id, "c": category})
        return f"{value}:{_sign(self._unsubscribe, value)}"

    def url(self, path: str) -> str:
        return self.prefix + path

    def message_links(self, recipient_id: str, category: str, required: bool) -> dict[str, str]:
        """As pipeline.recipient_links: none to unsubscribe from a required category."""
        prefs = self.url(f"/u/preferences/?token={self.recipient_token(recipient_id)}")
        if required:
            return {"unsubscribe_url": prefs, "preferences_url": prefs}
        unsubscribe = self.url(f"/u/unsubscribe/{self.unsubscribe_token(recipient_id, category)}/")
        return {"unsubscribe_url": unsubscribe, "preferences_url": prefs}


def _keyed_hmac(salt: str) -> "hmac.HMAC":
    # As django.utils.crypto.salted_hmac(salt + "signer", value, SECRET_KEY), keyed once.
    key = hashlib.sha256(f"{salt}signer{settings.SECRET_KEY}".encode()).digest()
    return hmac.new(key, digestmod=hashlib.sha256)


def _sign(keyed: "hmac.HMAC", value: str) -> str:
    mac = keyed.copy()
    mac.update(value.encode())
    return base64.urlsafe_b64encode(mac.digest()).strip(b"=").decode()


_PLAIN = re.compile(r"[A-Za-z0-9_.:-]*")  # nothing json.dumps would escape


def _b64_json(obj: dict[str, str]) -> str:
    # What json.dumps(obj, separators=(",", ":")) writes, without it for the usual values
    # (schema names, UUIDs, category slugs): it was a tenth of a broadcast chunk's CPU.
    if all(_PLAIN.fullmatch(v) for v in obj.values()):
        text = "{" + ",".join(f'"{k}":"{v}"' for k, v in obj.items()) + "}"
    else:
        text = json.dumps(obj, separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode("latin-1")).strip(b"=").decode()


def _claim(data: Any) -> RecipientClaim:
    if not isinstance(data, dict) or data.get("t") != current_schema():
        raise BadToken("token belongs to another tenant")
    return RecipientClaim(recipient_id=str(data.get("r", "")), category=str(data.get("c", "")))


_HOST_TTL = 60.0
_hosts: dict[str, tuple[float, str]] = {}


def tenant_host() -> str:
    """The current tenant's primary domain (cached per process for a minute)."""
    schema = current_schema()
    cached = _hosts.get(schema)
    now = time.monotonic()
    if cached and now - cached[0] < _HOST_TTL:
        return cached[1]
    domain = None
    if schema != "public":
        domain = (
            Domain.objects.filter(tenant__schema_name=schema, is_primary=True)
            .values_list("domain", flat=True)
            .first()
        )
    host = domain or settings.BASE_DOMAIN
    _hosts[schema] = (now, str(host))
    return str(host)


def tenant_url(path: str) -> str:
    """An absolute URL on the current tenant's primary domain."""
    host = tenant_host()
    default_port = {"http": 80, "https": 443}.get(settings.PUBLIC_SCHEME)
    port = f":{settings.PUBLIC_PORT}" if settings.PUBLIC_PORT and default_port != settings.PUBLIC_PORT else ""
    return f"{settings.PUBLIC_SCHEME}://{host}{port}{path}"
