"""`Idempotency-Key` on every POST of the API: a retried request is answered, not done again.

A client that sends `Idempotency-Key: <1..255 characters>` with a POST under /api/ gets, for 24 h
(settings.IDEMPOTENCY_TTL):
- the same key, the same request: the first answer again (status, body, Location), with
  `Idempotent-Replayed: true`, and nothing is done a second time;
- the same key, another request (another body, or another endpoint): 422 `idempotency_key_reused`;
- the same key while the first request is still running: 409 `idempotency_key_in_progress` with
  Retry-After, instead of doing the work twice.
Without the header nothing changes. Answers below 500 are kept, 4xx included (the same bad body
gets the same 400); a 5xx, a 429 and an unexpected exception release the key so the client can
retry with it. The request is compared by its method, path and body as parsed JSON (key order
and whitespace do not matter).

Scope: per tenant, as Stripe scopes keys per account: the Redis key is the tenant's schema plus a
hash of the Idempotency-Key, so any of a tenant's API keys (say, after a key rotation) replays
the same answer, and two tenants choosing the same key never meet.

Storage, in Redis: one hash per key holding the request's fingerprint, an owner token and, once
done, the answer. A Lua script claims the key (create unless it exists, else return what is
there) atomically, so of two concurrent duplicates exactly one runs. The claim lives
settings.IDEMPOTENCY_CLAIM_TTL seconds (a crashed process cannot block the key for a day);
storing the answer extends it to IDEMPOTENCY_TTL. Storing and releasing check the owner token,
so a request that outlived its claim cannot overwrite or delete a newer one.

Where it hooks in: tenant and API key are known only once DRF has authenticated the request,
inside the view, so a Django middleware would have to claim before it knows whose key it is.
DRF runs throttles last in `APIView.initial()`, after authentication, permissions and the rate
limit, and hands them the view; then `dispatch` looks up the method handler. `IdempotencyGate`,
listed last in REST_FRAMEWORK["DEFAULT_THROTTLE_CLASSES"], uses that moment to wrap the view
instance's `post` handler (a view instance serves one request). So every POST view under /api/
is covered, current and future, with no base class to remember and no view edited; a view that
sets its own `throttle_classes` must list the gate too. The wrapper turns the handler's exceptions
into responses with the view's own `handle_exception`, so a 400 is stored exactly as sent.

If Redis cannot be reached, a request with the header gets 503 (retry with the same key): doing
the work unguarded is exactly what the client asked us not to risk.
"""

import base64
import functools
import hashlib
import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from uuid import uuid4

from django.conf import settings
from django.http import HttpResponse
from django.http.response import HttpResponseBase
from redis.commands.core import Script
from redis.exceptions import RedisError
from rest_framework import exceptions, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import BaseThrottle
from rest_framework.utils.encoders import JSONEncoder

from tenants.api_auth import ApiClient
from tenants.redis_client import get_redis

if TYPE_CHECKING:  # rest_framework.views loads this module through its settings
    from rest_framework.views import APIView

log = logging.getLogger(__name__)

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
MAX_KEY_LENGTH = 255
API_PREFIX = "/api/"
KEY_PREFIX = "herald:idem:"
KEPT_HEADERS = ("Location",)

# Claim: KEYS[1] the key; ARGV fingerprint, owner token, claim TTL (ms).
# Returns nil when claimed for us, else {fingerprint, stored answer or nil}.
CLAIM_LUA = """
if redis.call("EXISTS", KEYS[1]) == 1 then
  return redis.call("HMGET", KEYS[1], "fingerprint", "response")
end
redis.call("HSET", KEYS[1], "fingerprint", ARGV[1], "token", ARGV[2])
redis.call("PEXPIRE", KEYS[1], ARGV[3])
return false
"""
# Store: ARGV owner token, answer, TTL (ms). Returns 1 if stored, 0 if the claim was no longer ours.
STORE_LUA = """
if redis.call("HGET", KEYS[1], "token") ~= ARGV[1] then return 0 end
redis.call("HSET", KEYS[1], "response", ARGV[2])
redis.call("PEXPIRE", KEYS[1], ARGV[3])
return 1
"""
# Release: ARGV owner token. Deletes the claim only if it is still ours.
RELEASE_LUA = """
if redis.call("HGET", KEYS[1], "token") == ARGV[1] then return redis.call("DEL", KEYS[1]) end
return 0
"""


class InvalidIdempotencyKey(exceptions.APIException):
    status_code = status.HTTP_400_BAD_REQUEST
    default_code = "invalid_idempotency_key"


class IdempotencyKeyReused(exceptions.APIException):
    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    default_code = "idempotency_key_reused"
    default_detail = (
        f"This {HEADER} was already used for a different request (another body or endpoint). "
        "Send a new key for a new request; retry with the same key only with the same request."
    )


class IdempotencyKeyInProgress(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "idempotency_key_in_progress"
    default_detail = (
        f"A request with this {HEADER} is still being processed; retry shortly with the same key "
        "to get its answer."
    )
    wait = 1  # sent as Retry-After


class IdempotencyUnavailable(exceptions.APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_code = "idempotency_unavailable"
    default_detail = (
        f"Requests with an {HEADER} cannot be checked right now; nothing was done. Retry with the same key."
    )
    wait = 5


@functools.cache
def _script(source: str) -> Script:
    return get_redis().register_script(source)


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


def storage_key(schema_name: str, idempotency_key: str) -> str:
    digest = hashlib.sha256(idempotency_key.encode()).hexdigest()
    return f"{KEY_PREFIX}{schema_name}:{digest}"


def valid_key(value: str) -> str:
    if not value:
        raise InvalidIdempotencyKey(
            f"The {HEADER} header is empty: send 1 to {MAX_KEY_LENGTH} characters (a UUID is a good key)."
        )
    if len(value) > MAX_KEY_LENGTH:
        raise InvalidIdempotencyKey(
            f"The {HEADER} header is {len(value)} characters long; at most {MAX_KEY_LENGTH} are allowed."
        )
    return value


def fingerprint(request: Request) -> str:
    """What makes two requests the same: method, path and the parsed body (key order ignored).

    Reading `request.data` parses the body once, here; the view reuses the parsed data, and a
    malformed body is the usual 400 before any key is claimed.
    """
    body = json.dumps(request.data, sort_keys=True, separators=(",", ":"), cls=JSONEncoder)
    raw = f"{request.method} {request._request.get_full_path()}\n{body}"
    return hashlib.sha256(raw.encode()).hexdigest()


def serialize(response: HttpResponseBase) -> str | None:
    """The answer to keep, as JSON; None if it cannot be kept (a streaming response)."""
    headers = {name: response[name] for name in KEPT_HEADERS if name in response}
    record: dict[str, Any] = {"status": response.status_code, "headers": headers}
    if isinstance(response, Response):
        record["data"] = response.data
    elif isinstance(response, HttpResponse):
        record["content"] = base64.b64encode(response.content).decode()
        record["content_type"] = response["Content-Type"]
    else:
        return None
    return json.dumps(record, cls=JSONEncoder)


def replay(stored: bytes) -> HttpResponseBase:
    record = json.loads(stored)
    headers = {**record["headers"], REPLAYED_HEADER: "true"}
    if "content" in record:
        response = HttpResponse(
            base64.b64decode(record["content"]),
            status=record["status"],
            content_type=record["content_type"],
        )
        for name, value in headers.items():
            response[name] = value
        return response
    # Rendered again by the view like any answer, so it gets the current RateLimit headers too.
    return Response(record["data"], status=record["status"], headers=headers)


def _release(key: str, token: str) -> None:
    try:
        _script(RELEASE_LUA)(keys=[key], args=[token])
    except RedisError:
        log.exception("Could not release idempotency key %s; it frees itself after its claim TTL", key)


def _store(key: str, token: str, response: HttpResponseBase) -> None:
    record = serialize(response)
    if record is None:
        _release(key, token)
        return
    try:
        stored = _script(STORE_LUA)(keys=[key], args=[token, record, _ms(settings.IDEMPOTENCY_TTL)])
    except RedisError:
        log.exception("Could not store the answer for idempotency key %s", key)
        return
    if not stored:
        log.warning("Idempotency key %s: the claim expired before the request finished", key)


Handler = Callable[..., HttpResponseBase]


def idempotent(handler: Handler, view: "APIView", client: ApiClient) -> Handler:
    """Wrap a POST handler: replay or refuse a repeated key, else run once and keep the answer."""

    @functools.wraps(handler)
    def run(request: Request, *args: Any, **kwargs: Any) -> HttpResponseBase:
        key = storage_key(client.tenant.schema_name, valid_key(request.headers[HEADER]))
        request_fingerprint = fingerprint(request)
        token = uuid4().hex
        try:
            existing = _script(CLAIM_LUA)(
                keys=[key], args=[request_fingerprint, token, _ms(settings.IDEMPOTENCY_CLAIM_TTL)]
            )
        except RedisError as exc:
            log.exception("Idempotency key not checked: Redis unavailable")
            raise IdempotencyUnavailable() from exc
        if existing is not None:
            stored_fingerprint, stored_response = existing
            if stored_fingerprint.decode() != request_fingerprint:
                raise IdempotencyKeyReused()
            if stored_response is None:
                raise IdempotencyKeyInProgress()
            return replay(stored_response)

        try:
            try:
                response = handler(request, *args, **kwargs)
            except Exception as exc:
                # The answer the client will see (a 400, a 404...), made as dispatch would make it.
                # An exception no handler answers is raised again from here: a 500.
                response = view.handle_exception(exc)
        except BaseException:
            _release(key, token)
            raise
        if response.status_code >= 500 or response.status_code == status.HTTP_429_TOO_MANY_REQUESTS:
            _release(key, token)  # worth retrying: let the same key run again
        else:
            _store(key, token, response)
        return response

    return run


class IdempotencyGate(BaseThrottle):
    """Not a limit: the hook that makes POST handlers idempotent (see the module docstring).

    List it last in REST_FRAMEWORK["DEFAULT_THROTTLE_CLASSES"]; it always allows.
    """

    def allow_request(self, request: Request, view: "APIView") -> bool:
        if request.method != "POST" or not request._request.path.startswith(API_PREFIX):
            return True
        if HEADER not in request.headers or not isinstance(request.user, ApiClient):
            return True
        handler = getattr(view, "post", None)
        if handler is not None:
            # An instance attribute shadows the method for this request only; dispatch looks the
            # handler up after the throttles ran.
            setattr(view, "post", idempotent(handler, view, request.user))  # noqa: B010
        return True
