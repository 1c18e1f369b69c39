"""Rate limits: the GCRA limiter against the real Redis, and the API's per-key request limit."""

import itertools
import json
import threading
import time
import uuid
from typing import Any

import pytest
from django.test import Client
from django_tenants.utils import schema_context
from redis.exceptions import ConnectionError as RedisConnectionError

from notifications import ratelimit
from notifications.models import Notification
from tenants.models import ApiKey
from tenants.redis_client import get_redis
from tests.conftest import Persona, Personas


def new_limit() -> str:
    return f"test:{uuid.uuid4()}"


# --- the limiter (notifications.ratelimit) ----------------------------------------------------


def test_a_burst_passes_then_the_next_request_waits_one_interval() -> None:
    key = new_limit()
    decisions = [ratelimit.acquire(key, rate_per_second=10, burst=5) for _ in range(5)]
    assert all(d.allowed for d in decisions)
    assert [d.remaining for d in decisions] == [4, 3, 2, 1, 0]

    refused = ratelimit.acquire(key, rate_per_second=10, burst=5)
    assert not refused.allowed
    assert refused.remaining == 0
    assert 0.05 < refused.retry_after <= 0.1  # one cell comes back every 1/rate = 0.1 s
    assert 0.4 < refused.reset_after <= 0.5  # all five are back after 0.5 s

    time.sleep(refused.retry_after)
    assert ratelimit.acquire(key, rate_per_second=10, burst=5).allowed


def test_a_refused_request_takes_nothing() -> None:
    key = new_limit()
    assert ratelimit.acquire(key, 1, burst=1).allowed
    for _ in range(10):
        assert not ratelimit.acquire(key, 1, burst=1).allowed
    # Ten refusals did not push the next cell further away than one interval.
    assert ratelimit.acquire(key, 1, burst=1).retry_after <= 1.0


def test_a_cost_takes_that_many_cells() -> None:
    key = new_limit()
    assert ratelimit.acquire(key, 1, burst=10, cost=7).remaining == 3
    refused = ratelimit.acquire(key, 1, burst=10, cost=5)
    assert not refused.allowed
    assert refused.remaining == 3  # what could still go now
    assert 1.5 < refused.retry_after <= 2.0  # two more cells needed, at 1 per second
    with pytest.raises(ValueError, match="never fit"):
        ratelimit.acquire(key, 1, burst=10, cost=11)


def test_reservations_spread_work_over_time_at_the_rate() -> None:
    key = new_limit()
    delays = [ratelimit.reserve(key, rate=50, burst=1) for _ in range(100)]
    assert delays[0] == 0.0
    assert delays == sorted(delays)
    # 100 cells at 50/s: the last is due ~2 s after the first (less the time the loop took).
    assert 1.7 < delays[-1] <= 1.98
    gaps = [b - a for a, b in itertools.pairwise(delays)]
    assert max(gaps) <= 0.02 + 1e-6
    # Nothing was refused: the reservations queue, and a request now waits behind all of them.
    assert 1.7 < ratelimit.acquire(key, 50, burst=1).retry_after <= 2.0


def test_a_reservation_within_the_burst_goes_at_once() -> None:
    key = new_limit()
    assert [ratelimit.reserve(key, rate=1, burst=3) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert 0.9 < ratelimit.reserve(key, rate=1, burst=3) <= 1.0


def test_concurrent_requests_never_exceed_the_budget() -> None:
    key = new_limit()
    allowed: list[bool] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def hammer() -> None:
        start.wait()
        mine = [ratelimit.acquire(key, rate_per_second=0.001, burst=100).allowed for _ in range(40)]
        with lock:
            allowed.extend(mine)

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(allowed) == 320
    assert sum(allowed) == 100  # exactly the burst, though 8 threads raced for it


def test_different_keys_are_independent() -> None:
    first, second = new_limit(), new_limit()
    assert ratelimit.acquire(first, 1, burst=1).allowed
    assert not ratelimit.acquire(first, 1, burst=1).allowed
    assert ratelimit.acquire(second, 1, burst=1).allowed
    assert ratelimit.reserve(second, 1, burst=1) > 0.9
    assert ratelimit.reserve(new_limit(), 1, burst=1) == 0.0


def test_a_limit_left_alone_expires_from_redis() -> None:
    key = new_limit()
    ratelimit.acquire(key, rate_per_second=20, burst=2)
    ttl_ms = get_redis().pttl(ratelimit.KEY_PREFIX + key)
    assert 0 < ttl_ms <= 50  # the TAT is 1/20 s ahead; the key goes when it has passed


# --- the API's limit per key (notifications.api.throttling) -----------------------------------

MESSAGE = {"channels": ["email"], "subject": "Hi", "body": "Hello"}


def fresh_client(persona: Persona, name: str = "rate-limit test") -> Client:
    """A client with a new API key of its own, so no other test's requests count against it."""
    _, raw = ApiKey.issue(persona.tenant, name=name)
    return Client(HTTP_HOST=persona.domain, HTTP_AUTHORIZATION=f"Bearer {raw}")


def post(client: Client, external_id: str = "u-rl") -> Any:
    body = {**MESSAGE, "recipient": {"external_id": external_id, "email": "ana@example.com"}}
    return client.post("/api/v1/notifications", data=json.dumps(body), content_type="application/json")


@pytest.fixture
def small_limit(settings: Any) -> None:
    settings.API_RATE_LIMIT = {"rate": 1, "burst": 3}


@pytest.mark.django_db
@pytest.mark.usefixtures("small_limit")
def test_the_request_past_the_limit_gets_429_with_retry_after(personas: Personas) -> None:
    client = fresh_client(personas.alpha)
    external_id = f"u-{uuid.uuid4()}"
    for _ in range(3):
        assert post(client, external_id).status_code == 202

    response = post(client, external_id)
    assert response.status_code == 429
    assert response["Retry-After"] == "1"
    error = response.json()["error"]
    assert error["code"] == "rate_limited"
    assert "try again in 1 s" in error["message"]
    assert response["RateLimit-Limit"] == "3"
    assert response["RateLimit-Remaining"] == "0"
    assert response["RateLimit-Reset"] in {"2", "3"}
    assert response["RateLimit-Policy"] == "3;w=3"
    with schema_context("alpha"):  # the refused request did nothing
        assert Notification.objects.filter(recipient__external_id=external_id).count() == 3


@pytest.mark.django_db
@pytest.mark.usefixtures("small_limit")
def test_successful_answers_carry_the_ratelimit_headers(personas: Personas) -> None:
    client = fresh_client(personas.alpha)
    accepted = post(client)
    assert accepted.status_code == 202
    assert accepted["RateLimit-Limit"] == "3"
    assert accepted["RateLimit-Remaining"] == "2"
    assert accepted["RateLimit-Reset"] == "1"
    assert accepted["RateLimit-Policy"] == "3;w=3"
    listed = client.get("/api/v1/notifications")
    assert listed.status_code == 200
    assert listed["RateLimit-Remaining"] == "1"
    invalid = client.post("/api/v1/notifications", data="{}", content_type="application/json")
    assert invalid.status_code == 400
    assert invalid["RateLimit-Remaining"] == "0"


@pytest.mark.django_db
def test_keys_are_limited_independently_within_and_across_tenants(personas: Personas, settings: Any) -> None:
    settings.API_RATE_LIMIT = {"rate": 0.1, "burst": 1}
    first, second, other_tenants = (
        fresh_client(personas.alpha),
        fresh_client(personas.alpha),
        fresh_client(personas.beta),
    )
    assert post(first).status_code == 202
    assert post(first).status_code == 429
    assert post(second).status_code == 202  # the same tenant's other key has its own limit
    assert post(other_tenants).status_code == 202
    assert post(second).status_code == 429
    assert post(other_tenants).status_code == 429


@pytest.mark.django_db
def test_after_waiting_retry_after_the_request_passes(personas: Personas, settings: Any) -> None:
    settings.API_RATE_LIMIT = {"rate": 2, "burst": 1}
    client = fresh_client(personas.alpha)
    assert post(client).status_code == 202
    refused = post(client)
    assert refused.status_code == 429
    time.sleep(int(refused["Retry-After"]))
    assert post(client).status_code == 202


@pytest.mark.django_db
@pytest.mark.usefixtures("small_limit")
def test_requests_without_a_key_are_401_not_counted(personas: Personas) -> None:
    anonymous = Client(HTTP_HOST=personas.alpha.domain)
    for _ in range(5):
        response = post(anonymous)
        assert response.status_code == 401
        assert "RateLimit-Limit" not in response


@pytest.mark.django_db
def test_without_redis_the_api_still_answers_unlimited(
    personas: Personas, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unreachable() -> Any:
        raise RedisConnectionError("Redis is down")

    monkeypatch.setattr(ratelimit, "_script", unreachable)
    response = post(fresh_client(personas.alpha))
    assert response.status_code == 202
    assert "RateLimit-Limit" not in response
