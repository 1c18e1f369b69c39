"""Twilio's status callback: POST /hooks/twilio/status/<delivery id> on the tenant's domain.

Twilio signs each callback with the auth token of the account that sent the message
(X-Twilio-Signature: HMAC-SHA1 over the full URL it requested and the sorted form fields). We
accept it when it verifies against the token of an account this tenant sends with, over the URL
as Twilio saw it; otherwise 403 and nothing is read.

Final reports move the delivery (delivered; undelivered -> bounced; failed -> failed, with
Twilio's error code). Intermediate ones (queued, sent, ...) say nothing the timeline lacks
and are acknowledged only. A repeated report changes nothing: pipeline.transition only moves a
delivery from a state the report can follow, so the second `delivered` finds it delivered.
"""

import logging
import uuid
from typing import Any

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django_tenants.utils import get_public_schema_name
from twilio.request_validator import RequestValidator

from tenants.crypto import DecryptionError
from tenants.schemas import current_schema

from .. import pipeline
from ..links import tenant_url
from ..models import Channel, Delivery, DeliveryStatus
from ..providers import registry

log = logging.getLogger(__name__)

# Twilio's MessageStatus -> ours. Anything else (accepted, scheduled, queued, sending, sent, read,
# receiving, received, canceled) is acknowledged and ignored.
FINAL_STATUSES: dict[str, str] = {
    "delivered": DeliveryStatus.DELIVERED,
    "undelivered": DeliveryStatus.BOUNCED,
    "failed": DeliveryStatus.FAILED,
}

# The codes a delivery report carries most often (https://www.twilio.com/docs/api/errors).
ERROR_TEXTS: dict[str, str] = {
    "30001": "Queue overflow",
    "30002": "Account suspended",
    "30003": "Unreachable destination handset",
    "30004": "Message blocked",
    "30005": "Unknown destination handset",
    "30006": "Landline or unreachable carrier",
    "30007": "Message filtered by the carrier",
    "30008": "Unknown error",
    "30032": "Toll-free number has not been verified",
    "30034": "Message from an unregistered number",
}


def _error(code: str, message: str, status: int) -> JsonResponse:
    return JsonResponse({"error": {"code": code, "message": message}}, status=status)


@csrf_exempt
def status_callback(request: HttpRequest, delivery_id: str) -> JsonResponse:
    if request.method != "POST":
        response = _error("method_not_allowed", "Twilio posts its status callbacks.", 405)
        response["Allow"] = "POST"
        return response
    if current_schema() == get_public_schema_name():
        return _error("not_found", "No tenant on this host.", 404)

    signature = request.headers.get("X-Twilio-Signature", "")
    if not signature or not signature_is_valid(request, signature):
        log.warning("twilio callback refused: bad or missing signature for %s", request.path)
        return _error("forbidden", "X-Twilio-Signature is missing or does not match.", 403)

    delivery = _find_delivery(delivery_id)
    if delivery is None:
        return _error("not_found", f"No SMS delivery {delivery_id[:64]!r} here.", 404)

    message_sid = request.POST.get("MessageSid") or request.POST.get("SmsSid") or ""
    reported = (request.POST.get("MessageStatus") or request.POST.get("SmsStatus") or "").lower()
    if not message_sid or not reported:
        return _error("bad_request", "MessageSid and MessageStatus are required.", 400)

    def answer(result: str, **more: Any) -> JsonResponse:
        return JsonResponse({"delivery": str(delivery.id), "result": result, **more})

    early = not delivery.provider_message_id and delivery.status == DeliveryStatus.SENDING
    if delivery.provider_message_id != message_sid and not early:
        # Not the message we recorded for this delivery: a stray. Acknowledge so Twilio does
        # not retry; change nothing.
        log.info("twilio callback for %s ignored: sid does not match the delivery's", delivery.id)
        return answer("ignored", reason="MessageSid is not this delivery's message")
    status = FINAL_STATUSES.get(reported)
    if status is None:
        return answer("ignored", reason=f"{reported!r} is not a final status")

    detail = describe(reported, message_sid, request.POST.get("ErrorCode", ""))
    # A report that beats our own bookkeeping (the worker has not recorded the sid yet) is
    # still this delivery's: the signed callback URL names it. Record the sid with it.
    fields = {"provider_message_id": message_sid, "provider": "twilio"} if early else {}
    moved = pipeline.transition(delivery.id, status, detail, **fields)
    return answer("updated" if moved else "unchanged", status=status)


def _find_delivery(delivery_id: str) -> Delivery | None:
    try:
        key = uuid.UUID(delivery_id)
    except ValueError:
        return None
    return (
        Delivery.objects.filter(id=key, channel=Channel.SMS)
        .only("id", "provider_message_id", "status")
        .first()
    )


def describe(reported: str, message_sid: str, error_code: str) -> str:
    text = f"Twilio: {reported}"
    if error_code:
        code = error_code.strip()[:16]
        text += f", error {code}"
        if code in ERROR_TEXTS:
            text += f" ({ERROR_TEXTS[code]})"
    return f"{text} [{message_sid[:64]}]"


def signature_is_valid(request: HttpRequest, signature: str) -> bool:
    tokens = auth_tokens()
    if not tokens:
        return False
    urls = candidate_urls(request)
    return any(
        RequestValidator(token).validate(url, request.POST, signature) for token in tokens for url in urls
    )


def candidate_urls(request: HttpRequest) -> list[str]:
    """The URL Twilio requested, as it may have been seen: the one we gave it (the tenant's
    public URL), the one this request names, and that one with the public scheme (behind a
    TLS-terminating proxy the request arrives as http). The validator tries each with and
    without the port."""
    as_requested = request.build_absolute_uri()
    urls = [tenant_url(request.get_full_path()), as_requested]
    scheme = settings.PUBLIC_SCHEME
    if not as_requested.startswith(f"{scheme}://"):
        urls.append(f"{scheme}://{as_requested.split('://', 1)[1]}")
    return list(dict.fromkeys(urls))


def auth_tokens() -> list[str]:
    """The auth tokens of the Twilio accounts this tenant sends SMS with.

    Its primary and secondary accounts, and the platform's (messages sent before the tenant
    configured its own account report back signed with the platform's token).
    """
    try:
        primary, secondary = registry.resolve(Channel.SMS)
    except DecryptionError:
        log.error("twilio callback: this tenant's SMS credentials cannot be decrypted")
        primary, secondary = None, None
    tokens: list[str] = []
    for choice in (primary, secondary, registry.platform_choice(Channel.SMS)):
        if choice is None or choice.name != "twilio":
            continue
        token = str(choice.secrets.get("auth_token") or "")
        if token and token not in tokens:
            tokens.append(token)
    return tokens
