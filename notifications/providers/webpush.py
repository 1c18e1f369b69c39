"""Web push through pywebpush to every browser subscription of the recipient, signed with VAPID.

One delivery fans out to all of the recipient's PushSubscriptions. It is sent when at least one
push service accepted it; a subscription the push service calls gone (404/410) is deleted on the
spot. Nothing accepted: any transient answer (429, 5xx, network) makes the whole delivery
transient -- a retry then only reaches the subscriptions that are left, and none of them got it
-- otherwise it is permanent (all gone, 413, or another 4xx).
"""

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import ClassVar
from urllib.parse import urlsplit

import requests
from django.conf import settings
from django.utils import timezone
from py_vapid import Vapid02
from pywebpush import WebPushException, webpush

from ..models import PushSubscription
from ..push.keys import VapidKeys, current_keys, default_subject
from .base import OutgoingMessage, ProviderError, PushProvider, parse_retry_after

# Priority -> (Urgency header, TTL seconds). Urgency (RFC 8030 5.3) lets a device on battery hold
# back low-urgency pushes; TTL is how long the push service keeps a message for an offline
# device. A critical alert (a sign-in code, an outage) is worthless hours later, so it goes at
# once and expires in an hour; high still matters today (12 h); normal keeps a day; bulk
# (digests, news) may wait for power and wifi and stays three days rather than be lost.
DELIVERY_RULES: dict[str, tuple[str, int]] = {
    "critical": ("high", 3600),
    "high": ("high", 12 * 3600),
    "normal": ("normal", 24 * 3600),
    "bulk": ("low", 72 * 3600),
}

# aes128gcm in one record (RFC 8291 4): 86 bytes of header (salt, record size, key id = our
# 65-byte ephemeral key), a 16-byte tag and a 1-byte padding delimiter around the plaintext.
ENCRYPTION_OVERHEAD = 86 + 16 + 1


@dataclass(frozen=True)
class PushRequest:
    message: OutgoingMessage
    payload: bytes
    urgency: str
    ttl: int
    subscriptions: list[PushSubscription]


@dataclass
class PushResult:
    """What each push service answered for one message."""

    total: int
    accepted: list[str] = field(default_factory=list)  # Location headers ("" when none)
    answers: list[str] = field(default_factory=list)  # one line per subscription, for the attempt log
    gone: int = 0
    transient: list[ProviderError] = field(default_factory=list)
    permanent: list[ProviderError] = field(default_factory=list)

    def summary(self) -> str:
        head = f"accepted by {len(self.accepted)} of {self.total} subscriptions"
        if self.gone:
            head += f"; {self.gone} gone and removed"
        return f"{head}: " + "; ".join(self.answers)


class WebPushProvider(PushProvider):
    name = "webpush"
    setting_fields = ("vapid_public_key", "subject")
    secret_fields = ("vapid_private_key",)
    # What fits in one 4096-byte encrypted message (what push services must accept, RFC 8030 7.2).
    max_plaintext_bytes: ClassVar[int] = PushProvider.max_payload_bytes - ENCRYPTION_OVERHEAD

    vapid: Vapid02 | None = None
    subject: str = ""
    http: requests.Session | None = None

    # --- the steps ---------------------------------------------------------------------------

    @contextmanager
    def session(self) -> Iterator[None]:
        keys = self._keys()
        self.vapid = Vapid02.from_string(keys.private_key)
        self.subject = keys.subject
        self.http = requests.Session()
        try:
            yield
        finally:
            self.http.close()
            self.http = None

    def check(self, message: OutgoingMessage) -> None:
        size = len(self.payload(message))
        if size > self.max_plaintext_bytes:
            raise ProviderError(
                f"push payload is {size} bytes; at most {self.max_plaintext_bytes} fit in a "
                f"{self.max_payload_bytes}-byte encrypted push message: shorten the title, body or data",
                permanent=True,
            )

    def build(self, message: OutgoingMessage) -> PushRequest:
        try:
            recipient_id = uuid.UUID(message.to)
        except ValueError:
            raise ProviderError(f"{message.to!r} is not a recipient id", permanent=True) from None
        subscriptions = list(
            PushSubscription.objects.filter(recipient_id=recipient_id).order_by("created_at")
        )
        if not subscriptions:
            raise ProviderError("recipient has no push subscription", permanent=True)
        urgency, ttl = DELIVERY_RULES.get(message.priority, DELIVERY_RULES["normal"])
        return PushRequest(message, self.payload(message), urgency, ttl, subscriptions)

    def post(self, payload: PushRequest) -> PushResult:
        result = PushResult(total=len(payload.subscriptions))
        for subscription in payload.subscriptions:
            self._send_to(subscription, payload, result)
        if result.accepted:
            return result
        if result.transient:
            hints = [e.retry_after for e in result.transient if e.retry_after is not None]
            raise ProviderError(
                result.transient[0].reason,
                permanent=False,
                retry_after=max(hints) if hints else None,
                response=result.summary(),
            )
        if result.permanent:
            raise ProviderError(result.permanent[0].reason, permanent=True, response=result.summary())
        raise ProviderError("no live push subscription", permanent=True, response=result.summary())

    def parse(self, answer: PushResult) -> tuple[str, str]:
        message_id = next((location for location in answer.accepted if location), "")
        return message_id[:255], answer.summary()

    # --- helpers -----------------------------------------------------------------------------

    def payload(self, message: OutgoingMessage) -> bytes:
        """What the service worker gets: {"title", "body", "url", "data", "delivery_id"}."""
        data = {k: v for k, v in message.data.items() if k != "url"}
        body = {
            "title": message.subject,
            "body": message.text,
            "url": str(message.data.get("url") or ""),
            "data": data,
            "delivery_id": message.delivery_id,
        }
        return json.dumps(body, ensure_ascii=False, separators=(",", ":"), default=str).encode()

    def _keys(self) -> VapidKeys:
        private = self.secrets.get("vapid_private_key", "")
        public = str(self.settings.get("vapid_public_key", ""))
        if private and public:
            return VapidKeys(public, private, str(self.settings.get("subject") or default_subject()))
        return current_keys()  # the platform default: the tenant's own keys, made on first use

    def _send_to(self, subscription: PushSubscription, request: PushRequest, result: PushResult) -> None:
        host = urlsplit(subscription.endpoint).netloc  # the endpoint itself is a capability: not logged
        try:
            response = webpush(
                {
                    "endpoint": subscription.endpoint,
                    "keys": {"p256dh": subscription.p256dh, "auth": subscription.auth},
                },
                data=request.payload.decode(),
                vapid_private_key=self.vapid,
                vapid_claims={"sub": self.subject},  # a fresh dict: pywebpush writes aud and exp into it
                ttl=request.ttl,
                headers={"Urgency": request.urgency},
                timeout=float(getattr(settings, "WEBPUSH_TIMEOUT", 10.0)),
                requests_session=self.http,
            )
        except WebPushException as exc:
            self._refused(subscription, host, exc, result)
            return
        except requests.RequestException as exc:
            error = ProviderError(
                f"push service {host} unreachable: {exc.__class__.__name__}", permanent=False
            )
            result.transient.append(error)
            result.answers.append(f"{host}: {exc.__class__.__name__}")
            return
        except ValueError as exc:  # keys that cannot be used for encryption (stored before validation)
            result.permanent.append(ProviderError(f"unusable subscription keys: {exc}", permanent=True))
            result.answers.append(f"{host}: unusable keys")
            return
        assert isinstance(response, requests.Response)  # not a curl string: curl=False
        result.accepted.append(response.headers.get("Location", ""))
        result.answers.append(f"{host}: {response.status_code}")
        PushSubscription.objects.filter(id=subscription.id).update(last_used_at=timezone.now())

    def _refused(
        self, subscription: PushSubscription, host: str, exc: WebPushException, result: PushResult
    ) -> None:
        status = exc.status_code
        if status is None:  # pywebpush refused before sending (e.g. a malformed key)
            result.permanent.append(ProviderError(f"push not sent: {exc.message}", permanent=True))
            result.answers.append(f"{host}: not sent")
            return
        response = exc.response
        reason = getattr(response, "reason", "") or ""
        answer = f"{host}: {status} {reason}".strip()
        result.answers.append(answer)
        if status in (404, 410):
            # The browser unsubscribed or the subscription expired: it will never work again.
            PushSubscription.objects.filter(id=subscription.id).delete()
            result.gone += 1
        elif status == 413:
            result.permanent.append(
                ProviderError(f"push service refused the payload as too large ({answer})", permanent=True)
            )
        elif status == 429:
            result.transient.append(
                ProviderError(
                    f"push service rate-limited us ({answer})",
                    permanent=False,
                    retry_after=parse_retry_after(exc.retry_after),
                )
            )
        elif status >= 500:
            result.transient.append(ProviderError(f"push service error ({answer})", permanent=False))
        else:  # 400 malformed, 401/403 VAPID refused (e.g. subscribed with another key)
            result.permanent.append(
                ProviderError(f"push service refused the message ({answer})", permanent=True)
            )
