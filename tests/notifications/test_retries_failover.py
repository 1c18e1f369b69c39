"""Retries, failover to the tenant's secondary provider, attempts, and the sweeper, with a real worker."""

import json
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from django_tenants.utils import schema_context

from notifications import health
from notifications.models import Delivery, DeliveryStatus, ProviderConfig
from notifications.tasks import sweep_stuck_deliveries
from tenants.crypto import encrypt_json
from tests.conftest import Personas, Process, wait_until
from tests.fakes.smtp_server import FakeSmtpServer

pytestmark = [pytest.mark.worker, pytest.mark.usefixtures("live_db")]


@pytest.fixture
def secondary_smtp() -> Iterator[FakeSmtpServer]:
    """A second SMTP server, configured as alpha's secondary email provider (with a password)."""
    server = FakeSmtpServer().start()
    with schema_context("alpha"):
        config = ProviderConfig.objects.create(
            channel="email",
            role="secondary",
            provider="smtp",
            settings={"host": "127.0.0.1", "port": server.port, "from_email": "alpha@alpha.test"},
            secrets_encrypted=encrypt_json({"password": ""}),
        )
    yield server
    with schema_context("alpha"):
        config.delete()
    server.stop()


def send(personas: Personas, address: str, **extra: Any) -> str:
    body = {
        "recipient": {"external_id": f"u-{uuid.uuid4()}", "email": address},
        "channels": ["email"],
        "subject": "Hello",
        "body": "Hi",
        "priority": "high",
        **extra,
    }
    response = personas.alpha.client().post(
        "/api/v1/notifications", json.dumps(body), content_type="application/json"
    )
    assert response.status_code == 202, response.content
    url: str = response.json()["url"]
    return url


def delivery_when(personas: Personas, url: str, status: str, timeout: float = 40) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        (delivery,) = personas.alpha.client().get(url).json()["deliveries"]
        return delivery if delivery["status"] == status else None

    result: dict[str, Any] = wait_until(reached, timeout=timeout, interval=0.2)
    return result


def test_after_two_transient_failures_the_secondary_provider_takes_over(
    worker: Process, smtp_server: FakeSmtpServer, secondary_smtp: FakeSmtpServer, personas: Personas
) -> None:
    address = f"flaky-{uuid.uuid4().hex[:8]}@example.com"
    smtp_server.fail(address, 451, times=10)  # the platform's server keeps deferring it
    url = send(personas, address)
    delivery = delivery_when(personas, url, "sent")
    attempts = delivery["attempt_log"]
    assert [(a["number"], a["provider"], a["outcome"]) for a in attempts] == [
        (1, "smtp", "transient_error"),
        (2, "smtp", "transient_error"),
        (3, "smtp", "sent"),
    ]
    assert "451" in attempts[0]["response"]
    assert all(a["duration_ms"] >= 0 for a in attempts)
    assert smtp_server.attempts_for(address) == 2
    (mail,) = secondary_smtp.messages_to(address)
    assert mail["From"] == "alpha@alpha.test"  # the tenant's own server and sender
    statuses = [e["status"] for e in delivery["events"]]
    assert statuses == ["queued", "sending", "queued", "sending", "queued", "sending", "sent"]
    assert "will retry in" in delivery["events"][2]["detail"]


def test_a_provider_with_a_high_error_rate_is_skipped_for_the_secondary(
    worker: Process, smtp_server: FakeSmtpServer, secondary_smtp: FakeSmtpServer, personas: Personas
) -> None:
    from tenants.redis_client import get_redis

    with schema_context("alpha"):
        for key in get_redis().scan_iter("herald:health:alpha:email:smtp:*"):  # earlier tests' sends
            get_redis().delete(key)
        health.record("email", "smtp", ok=2, failed=20)  # recent history of the primary: bad
    try:
        address = f"direct-{uuid.uuid4().hex[:8]}@example.com"
        delivery = delivery_when(personas, send(personas, address), "sent")
        assert len(delivery["attempt_log"]) == 1
        assert smtp_server.attempts_for(address) == 0
        assert len(secondary_smtp.messages_to(address)) == 1
    finally:
        with schema_context("alpha"):
            for key in get_redis().scan_iter("herald:health:alpha:email:smtp:*"):
                get_redis().delete(key)


def test_transient_failures_give_up_after_the_channels_max_attempts(
    worker: Process, smtp_server: FakeSmtpServer, personas: Personas, settings: Any
) -> None:
    address = f"never-{uuid.uuid4().hex[:8]}@example.com"
    smtp_server.fail(address, 421, times=100)
    delivery = delivery_when(personas, send(personas, address), "failed", timeout=90)
    assert delivery["attempts"] == 6
    assert delivery["error"].startswith("gave up after 6 attempts")
    assert len(delivery["attempt_log"]) == 6


def test_an_email_carries_list_unsubscribe_headers_unless_its_category_is_required(
    worker: Process, smtp_server: FakeSmtpServer, personas: Personas
) -> None:
    news, security = (f"{kind}-{uuid.uuid4().hex[:8]}@example.com" for kind in ("news", "sec"))
    personas.alpha.client().put(
        "/api/v1/categories/security", json.dumps({"required": True}), content_type="application/json"
    )
    delivery_when(personas, send(personas, news, category="newsletter"), "sent")
    delivery_when(personas, send(personas, security, category="security"), "sent")
    (mail,) = smtp_server.messages_to(news)
    assert str(mail["List-Unsubscribe"]).strip().startswith("<http://alpha.localhost:8000/u/unsubscribe/")
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    (secure,) = smtp_server.messages_to(security)
    assert secure["List-Unsubscribe"] is None


def test_the_sweeper_puts_orphaned_deliveries_back_to_work(
    worker: Process, smtp_server: FakeSmtpServer, personas: Personas
) -> None:
    """A delivery whose message was lost (broker down) or whose worker died is sent by the sweeper."""
    lost, dead = (f"{kind}-{uuid.uuid4().hex[:8]}@example.com" for kind in ("lost", "dead"))
    urls = {}
    for address in (lost, dead):
        urls[address] = send(personas, address)
        delivery_when(personas, urls[address], "sent")
    long_ago = timezone.now() - timedelta(minutes=10)
    with schema_context("alpha"):
        # Rewind them as if the message never arrived / the worker died mid-send.
        lost_id = Delivery.objects.get(address=lost).id
        dead_id = Delivery.objects.get(address=dead).id
        Delivery.objects.filter(id=lost_id).update(status=DeliveryStatus.QUEUED, updated_at=long_ago)
        Delivery.objects.filter(id=dead_id).update(status=DeliveryStatus.SENDING, updated_at=long_ago)
        result = sweep_stuck_deliveries()
    # Other tests may have left orphans of their own in alpha; ours are among what was swept.
    assert result["revived_from_sending"] >= 1
    assert result["enqueued"] >= 2
    for address in (lost, dead):

        def sent_twice(address: str = address) -> bool:
            return len(smtp_server.messages_to(address)) == 2

        wait_until(sent_twice, timeout=30)
    dead_events = [e["detail"] for e in delivery_when(personas, urls[dead], "sent")["events"]]
    assert "its worker stopped answering; sending again" in dead_events


def test_the_sweeper_leaves_a_retry_that_is_not_due_yet(personas: Personas) -> None:
    with schema_context("alpha"):
        url = send(personas, f"later-{uuid.uuid4().hex[:8]}@example.com")
        delivery = Delivery.objects.get(notification_id=url.rsplit("/", 1)[1])
        # Sent first, so no message of its own is still on its way to claim it again.
        wait_until(lambda: Delivery.objects.get(id=delivery.id).status == DeliveryStatus.SENT, timeout=30)
        due = timezone.now() + timedelta(minutes=5)
        long_ago = timezone.now() - timedelta(minutes=5)
        Delivery.objects.filter(id=delivery.id).update(
            status=DeliveryStatus.QUEUED, updated_at=long_ago, next_attempt_at=due
        )
        sweep_stuck_deliveries()
        # The sweeper marks what it enqueues (updated_at now, next_attempt_at cleared); ours is left
        # as it was. (Other tests may leave orphans of their own in alpha, so the sweep's count of
        # what it enqueued says nothing about this delivery.)
        delivery.refresh_from_db()
        assert delivery.status == DeliveryStatus.QUEUED
        assert delivery.next_attempt_at == due
        assert delivery.updated_at < timezone.now() - timedelta(minutes=4)
