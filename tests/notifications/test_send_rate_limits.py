"""Per-tenant send rate limits: the excess waits for its turn, nothing is dropped, others don't wait."""

import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from django.conf import settings
from django.utils.dateparse import parse_datetime

from notifications import dispatch, ratelimit
from notifications.fanout import SEND_BATCH
from tenants.schemas import use_public
from tests.conftest import Personas, Process, wait_until
from tests.fakes.smtp_server import FakeSmtpServer
from tests.notifications.test_fairness import broadcast

pytestmark = [pytest.mark.worker, pytest.mark.usefixtures("live_db")]

LimitEmails = Callable[[float, int], None]


@pytest.fixture
def alpha_limited_to_5_emails_a_second(personas: Personas) -> Iterator[None]:
    tenant = personas.alpha.tenant
    ratelimit.reset("send:alpha:email")
    tenant.rate_limits = {"email": {"rate": 5, "burst": 5}}
    tenant.save()
    yield
    tenant.rate_limits = {}
    tenant.save()
    ratelimit.reset("send:alpha:email")


def batch(persona: Any, tag: str, n: int, first: int = 0) -> list[str]:
    items = [
        {
            "recipient": {"external_id": f"{tag}-{i}", "email": f"{tag}-{i}@example.com"},
            "channels": ["email"],
            "subject": "S",
            "body": "B",
        }
        for i in range(first, first + n)
    ]
    response = persona.client().post(
        "/api/v1/notifications/batch", json.dumps({"notifications": items}), content_type="application/json"
    )
    assert response.status_code == 202, response.content
    return [r["url"] for r in response.json()["results"]]


def sent_times(persona: Any, urls: list[str], timeout: float = 60) -> list[float]:
    def all_sent() -> list[float] | None:
        times = []
        for url in urls:
            (delivery,) = persona.client().get(url).json()["deliveries"]
            if delivery["status"] != "sent":
                return None
            times.append(parse_datetime(delivery["sent_at"]).timestamp())  # type: ignore[union-attr]
        return times

    result: list[float] = wait_until(all_sent, timeout=timeout, interval=0.5)
    return result


def sent_to(smtp_server: FakeSmtpServer, tag: str) -> int:
    return sum(1 for m in list(smtp_server.handler.messages) if m.rcpt_tos[0].startswith(f"{tag}-"))


def test_a_rate_limited_tenants_excess_is_delayed_not_dropped_and_others_go_on(
    worker: Process, smtp_server: FakeSmtpServer, personas: Personas, alpha_limited_to_5_emails_a_second: None
) -> None:
    tag = uuid.uuid4().hex[:6]
    started = time.time()
    alpha_urls = batch(personas.alpha, f"a{tag}", 20)  # 20 at 5/s with a burst of 5: due after ~3 s
    beta_urls = batch(personas.beta, f"b{tag}", 20)
    beta_done = max(sent_times(personas.beta, beta_urls))
    alpha_done = max(sent_times(personas.alpha, alpha_urls))
    assert alpha_done - started >= 2.5, "alpha's excess went out before its turn"
    assert beta_done - started < alpha_done - started, "beta waited behind alpha's limit"
    assert len([m for m in smtp_server.handler.messages if m.rcpt_tos[0].startswith(f"a{tag}-")]) == 20


@pytest.fixture
def limit_alpha_emails(personas: Personas) -> Iterator[Callable[[float, int], None]]:
    """Sets alpha's email limit (rate per second, burst) for one test."""
    tenant = personas.alpha.tenant

    def limit(rate: float, burst: int) -> None:
        ratelimit.reset("send:alpha:email")
        tenant.rate_limits = {"email": {"rate": rate, "burst": burst}}
        tenant.save()

    yield limit
    use_public()  # the test's last request may have left the connection in another tenant's schema
    tenant.rate_limits = {}
    tenant.save()
    ratelimit.reset("send:alpha:email")


class Releases:
    """Watches a tenant's held list: how many of its batches have been released beyond what its
    rate limit has let it send since `started` (the most seen)."""

    def __init__(
        self, priority: str, batches: int, size: int, rate: float, burst: int, started: float
    ) -> None:
        self.key = f"herald:fair:{priority}:alpha"
        self.batches, self.size, self.rate, self.burst, self.started = batches, size, rate, burst, started
        self.worst = 0.0
        self.redis = redis.Redis.from_url(settings.REDIS_URL)

    def held(self) -> int:
        """Batches still held; notes how far ahead of the limit the others were released."""
        held = int(self.redis.llen(self.key))
        sendable = (self.burst + self.rate * (time.time() - self.started)) / self.size
        self.worst = max(self.worst, (self.batches - held) - sendable)
        return held


def addresses(smtp_server: FakeSmtpServer, tag: str) -> list[str]:
    return [m.rcpt_tos[0] for m in list(smtp_server.handler.messages) if m.rcpt_tos[0].startswith(f"{tag}-")]


REQUEST_BATCH = 100  # pipeline.enqueue_all's batch size for requests


def betas_go_out_while_alphas_wait(
    releases: "Releases", smtp_server: FakeSmtpServer, tag: str, betas: int, alphas: int
) -> None:
    """Beta's `betas` mails go out while alpha still has held batches; then all `alphas` of alpha's."""

    def beta_sent() -> bool:
        releases.held()  # alpha's list is watched meanwhile
        return sent_to(smtp_server, f"b{tag}") == betas

    wait_until(beta_sent, timeout=30)
    assert releases.held() > 0, "alpha's held batches were all released before beta's went out"
    wait_until(lambda: releases.held() == 0 and sent_to(smtp_server, f"a{tag}") == alphas, timeout=90)


def test_a_rate_limited_tenants_held_notifications_are_released_at_its_rate_and_all_go_out(
    worker: Process, smtp_server: FakeSmtpServer, personas: Personas, limit_alpha_emails: LimitEmails
) -> None:
    """The dispatcher releases a tenant's held batches no faster than its limit lets it send them.

    Each released batch that met the limit used to be published again for later, freeing its place
    at once, so the dispatcher turned the tenant's whole held list into messages delayed in the
    broker and the worker within seconds (measured here: 13 to 14 batches ahead of the limit). Another
    tenant's notifications go out meanwhile, and all of the first's go, once.
    """
    rate, burst, backlog = 100, 100, 2400  # 24 batches, a batch a second
    limit_alpha_emails(rate, burst)
    tag = uuid.uuid4().hex[:6]
    started = time.time()
    for start in range(0, backlog, 800):
        batch(personas.alpha, f"a{tag}", 800, first=start)
    releases = Releases("normal", backlog // REQUEST_BATCH, REQUEST_BATCH, rate, burst, started)
    assert releases.held() > 0, "alpha's backlog is not held"
    batch(personas.beta, f"b{tag}", 200)
    betas_go_out_while_alphas_wait(releases, smtp_server, tag, 200, backlog)
    # Ahead of the limit at most: a request's first BOUND batches, sent straight to a quiet queue,
    # and BOUND released before the first of those met the limit, give or take one for timing.
    assert releases.worst <= 2 * dispatch.BOUND + 1, (
        f"{releases.worst:.1f} batches released ahead of alpha's limit"
    )
    alpha = addresses(smtp_server, f"a{tag}")
    assert len(alpha) == len(set(alpha)) == backlog  # each once


def test_a_rate_limited_tenants_held_broadcast_is_released_at_its_rate_while_anothers_goes_out(
    worker: Process, smtp_server: FakeSmtpServer, personas: Personas, limit_alpha_emails: LimitEmails
) -> None:
    """As above for bulk work, which is always held: the dispatcher skips alpha while its next
    turn is later, and releases beta's held broadcast meanwhile (alpha's held list used to be
    emptied into delayed messages before beta's broadcast had gone out)."""
    rate, burst, recipients = 200, SEND_BATCH, 12 * SEND_BATCH  # a batch every 1.25 s
    limit_alpha_emails(rate, burst)
    tag = uuid.uuid4().hex[:6]
    started = time.time()
    url = broadcast(personas.alpha, f"a{tag}", recipients)
    wait_until(lambda: personas.alpha.client().get(url).json()["status"] == "fanned_out", timeout=60)
    releases = Releases("bulk", recipients // SEND_BATCH, SEND_BATCH, rate, burst, started)
    assert releases.held() > 0, "alpha's broadcast is not held"
    broadcast(personas.beta, f"b{tag}", 50)
    betas_go_out_while_alphas_wait(releases, smtp_server, tag, 50, recipients)
    # Ahead of the limit at most: the BOUND released at its turn (the first of them goes, the
    # others meet the limit and are published again for later), and as many as the worker has
    # processes (2), released while it has taken batches from the queue but not yet seen the limit.
    assert releases.worst <= dispatch.BOUND + 2, (
        f"{releases.worst:.1f} batches released ahead of alpha's limit"
    )
    alpha = addresses(smtp_server, f"a{tag}")
    assert len(alpha) == len(set(alpha)) == recipients  # each once
