"""SMS through Twilio's Messages API (the `twilio` SDK), on the tenant's account or the platform's.

Each message names a status callback on the tenant's own domain, so Twilio's delivery reports
come back to the delivery they belong to (notifications.hooks.twilio). A batch shares one Client
(one HTTP session). Twilio 4xx is permanent (21211 bad number, 20003 bad credentials), 429 and
5xx are transient, and so is a network failure.

The SDK has no base-URL setting: in dev and tests settings.TWILIO_API_BASE_URL points our HTTP
client at a local server that speaks the same API (tests/fakes/twilio_server.py).
"""

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import requests
from django.conf import settings
from twilio.base.exceptions import (
    TwilioException,
    TwilioRestException,
    TwilioServiceException,
)
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from ..links import tenant_url
from .base import OutgoingMessage, ProviderError, SmsProvider, parse_retry_after

TIMEOUT = 15.0  # seconds per API call

# The SDK logs every request's URL (with the account SID) at INFO; keep that out of our logs.
_sdk_http_log = logging.getLogger("notifications.providers.twilio_sms.http")
_sdk_http_log.setLevel(logging.WARNING)


class HeraldTwilioHttpClient(TwilioHttpClient):  # type: ignore[misc]
    """The SDK's HTTP client, keeping the last answer's headers (Retry-After is not on the SDK's
    exception) and, in dev and tests only, sending to `base_url` instead of https://*.twilio.com."""

    def __init__(self, base_url: str = "", timeout: float = TIMEOUT) -> None:
        super().__init__(timeout=timeout, logger=_sdk_http_log)
        self.base_url = base_url.rstrip("/")
        self.last_headers: dict[str, str] = {}

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        if self.base_url:
            url = rewrite_twilio_url(url, self.base_url)
        self.last_headers = {}
        response = super().request(method, url, *args, **kwargs)
        self.last_headers = {str(k).lower(): str(v) for k, v in (response.headers or {}).items()}
        return response

    def close(self) -> None:
        if self.session is not None:
            self.session.close()


def rewrite_twilio_url(url: str, base_url: str) -> str:
    """https://api.twilio.com/2010-04-01/... -> <base_url>/2010-04-01/... (any *.twilio.com host)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme != "https" or not (host == "twilio.com" or host.endswith(".twilio.com")):
        return url
    rest = parts.path + (f"?{parts.query}" if parts.query else "")
    return base_url + rest


class TwilioSmsProvider(SmsProvider):
    name = "twilio"
    secret_fields = ("account_sid", "auth_token")
    setting_fields = ("from_number", "messaging_service_sid")

    client: Any = None
    http_client: HeraldTwilioHttpClient | None = None

    @contextmanager
    def session(self) -> Iterator[None]:
        account_sid = str(self.secrets.get("account_sid") or "")
        auth_token = str(self.secrets.get("auth_token") or "")
        if not account_sid or not auth_token:
            raise ProviderError("Twilio account_sid and auth_token are not configured", permanent=True)
        if not (self.settings.get("from_number") or self.settings.get("messaging_service_sid")):
            raise ProviderError(
                "Twilio needs a from_number or a messaging_service_sid in its settings", permanent=True
            )
        http_client = HeraldTwilioHttpClient(base_url=settings.TWILIO_API_BASE_URL)
        self.http_client = http_client
        self.client = Client(account_sid, auth_token, http_client=http_client)
        try:
            yield
        finally:
            http_client.close()
            self.client = None
            self.http_client = None

    def check(self, message: OutgoingMessage) -> None:
        if not message.to:
            raise ProviderError("the recipient has no phone number", permanent=True)
        if not message.text.strip():
            raise ProviderError("an SMS needs a body; this message's text is empty", permanent=True)
        super().check(message)

    def build(self, message: OutgoingMessage) -> dict[str, str]:
        payload = {
            "to": message.to,
            "body": message.text,
            "status_callback": status_callback_url(message.delivery_id),
        }
        if self.settings.get("messaging_service_sid"):
            payload["messaging_service_sid"] = str(self.settings["messaging_service_sid"])
        if self.settings.get("from_number"):
            payload["from_"] = str(self.settings["from_number"])
        return payload

    def post(self, payload: dict[str, str]) -> Any:
        assert self.client is not None, "post() runs inside session()"
        try:
            return self.client.messages.create(**payload)
        except (TwilioRestException, TwilioServiceException) as exc:
            headers = self.http_client.last_headers if self.http_client else {}
            raise classify(exc, headers.get("retry-after")) from None
        except requests.Timeout:
            raise ProviderError("Twilio did not answer in time", permanent=False) from None
        except requests.RequestException as exc:
            raise ProviderError(f"Twilio unreachable: {exc.__class__.__name__}", permanent=False) from None
        except (TwilioException, json.JSONDecodeError) as exc:
            # An answer the SDK could not read: Twilio may or may not have taken the message.
            raise ProviderError(
                f"Twilio answered unreadably: {exc.__class__.__name__}", permanent=False
            ) from None

    def parse(self, answer: Any) -> tuple[str, str]:
        sid = str(answer.sid or "")
        return sid, f"Twilio {answer.status or 'accepted'} {sid}"


def status_callback_url(delivery_id: str) -> str:
    """Where Twilio reports this delivery's fate: our hook on the tenant's own domain."""
    return tenant_url(f"/hooks/twilio/status/{delivery_id}")


def classify(exc: Any, retry_after_header: str | None = None) -> ProviderError:
    """Twilio 429 and 5xx are transient; every other 4xx is permanent (it would fail again)."""
    status = int(getattr(exc, "status", 0) or 0)
    code = getattr(exc, "code", None)
    text = _error_text(exc)
    reason = f"Twilio {status}" + (f" (error {code})" if code else "") + f": {text}"
    if status == 429 or status >= 500 or status == 0:
        return ProviderError(reason, permanent=False, retry_after=parse_retry_after(retry_after_header))
    return ProviderError(reason, permanent=True)


def _error_text(exc: Any) -> str:
    if isinstance(exc, TwilioServiceException):
        return str(exc.detail or exc.title or "error")
    msg = str(getattr(exc, "msg", "") or "")
    # The SDK prefixes the API's message with its own ("Unable to create record: ...").
    prefix, sep, rest = msg.partition(": ")
    if sep and prefix.startswith("Unable to"):
        msg = rest
    return msg or "error"
