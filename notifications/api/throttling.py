"""The API's request limit per API key: 429 with Retry-After, and RateLimit headers on every answer.

Each API key has its own GCRA limit (`notifications.ratelimit`): `rate` requests per second
sustained, `burst` at once (settings.API_RATE_LIMIT; `limit_for` is where a per-tenant or per-plan
override plugs in). Two keys of one tenant are limited apart, so a batch job's key cannot starve
the tenant's interactive one. Unauthenticated requests are not counted here: they get 401 first.

Headers follow draft-ietf-httpapi-ratelimit-headers-06 (the four separate fields, which clients
and gateways already read; later drafts fold them into `RateLimit`/`RateLimit-Policy` items):

    RateLimit-Limit: 200          the burst: requests allowed at once
    RateLimit-Remaining: 57       requests that could still go at once after this one
    RateLimit-Reset: 2            seconds until the full burst is available again
    RateLimit-Policy: 200;w=2     the burst, refilled over w seconds (rate = 200 / 2 per second)

A refused request also gets `Retry-After` (whole seconds, rounded up) and the JSON error
{"error": {"code": "rate_limited", "message": "... try again in N s."}}.

How the headers reach successful answers without a middleware or a view base class: DRF's
`APIView.dispatch` sets `view.headers` before authentication, permissions and throttles run, and
`finalize_response` copies it onto whatever response leaves the view, the handler's own or the
one an exception (our 429, a 400) became. A throttle is handed the view, so it puts its headers
there: every DRF view that throttles gets them, current or future, and nothing else changes. (An
unexpected exception skips finalize_response; that 500 carries no RateLimit headers.)

If Redis cannot be reached the request is let through without headers and a warning is logged:
the limit protects the service and must not become the reason it is down.
"""

import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.conf import settings
from redis.exceptions import RedisError
from rest_framework import exceptions
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from tenants.api_auth import ApiClient

from .. import ratelimit

if TYPE_CHECKING:  # rest_framework.views loads this module through its settings
    from rest_framework.views import APIView

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Limit:
    rate: float  # requests per second, sustained
    burst: int  # requests at once

    @property
    def window(self) -> int:
        """Seconds to refill the whole burst (the `w` of RateLimit-Policy)."""
        return max(1, math.ceil(self.burst / self.rate))


def limit_for(client: ApiClient) -> Limit:
    """The request limit of one API key.

    Every key gets settings.API_RATE_LIMIT today; a per-tenant override (or one from the
    tenant's plan) belongs here, looked up from `client.tenant`.
    """
    conf = settings.API_RATE_LIMIT
    return Limit(rate=float(conf["rate"]), burst=int(conf["burst"]))


def limiter_key(client: ApiClient) -> str:
    return f"api:key:{client.key.pk}"


def rate_limit_headers(limit: Limit, decision: ratelimit.Decision) -> dict[str, str]:
    return {
        "RateLimit-Limit": str(limit.burst),
        "RateLimit-Remaining": str(decision.remaining),
        "RateLimit-Reset": str(ratelimit.seconds(decision.reset_after)),
        "RateLimit-Policy": f"{limit.burst};w={limit.window}",
    }


class RateLimited(exceptions.Throttled):
    """429 in the API's own words (DRF's Throttled says "Request was throttled")."""

    default_code = "rate_limited"

    def __init__(self, wait: int, limit: Limit) -> None:
        message = (
            f"Too many requests with this API key: the limit is {limit.rate:g} per second "
            f"with bursts of {limit.burst}; try again in {wait} s."
        )
        # Skip Throttled.__init__, which appends its own sentence; DRF's handler still sends
        # `wait` as Retry-After.
        exceptions.APIException.__init__(self, message, self.default_code)
        self.wait = wait


class ApiKeyRateThrottle(BaseThrottle):
    """REST_FRAMEWORK["DEFAULT_THROTTLE_CLASSES"]: one GCRA limit per API key."""

    def allow_request(self, request: Request, view: "APIView") -> bool:
        client = request.user
        if not isinstance(client, ApiClient):
            return True  # end users (recipient tokens), webhooks, anonymous: not this limit
        limit = limit_for(client)
        try:
            decision = ratelimit.acquire(limiter_key(client), limit.rate, limit.burst)
        except RedisError:
            log.warning("API rate limit not checked for key %s: Redis unavailable", client.key.pk)
            return True
        view.headers.update(rate_limit_headers(limit, decision))
        if not decision.allowed:
            # Raised rather than returning False so the 429 says what the limit is.
            raise RateLimited(max(1, ratelimit.seconds(decision.retry_after)), limit)
        return True
