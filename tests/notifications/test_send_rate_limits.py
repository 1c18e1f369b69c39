"""Per-tenant send rate limits: the excess waits for its turn, nothing is dropped, others don't wait."""

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.utils.dateparse import parse_datetime

from notifications import ratelimit
from tests.conftest import Personas, Process, wait_until
from tests.fakes.smtp_server import FakeSmtpServer

pytestmark = [pytest.mark.worker, pytest.mark.usefixtures("live_db")]


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


def batch(persona: Any, tag: str, n: int) -> list[str]:
    items = [
        {
            "recipient": {"external_id": f"{tag}-{i}", "email": f"{tag}-{i}@example.com"},
            "channels": ["email"],
            "subject": "S",
            "body": "B",
        }
        for i in range(n)
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
