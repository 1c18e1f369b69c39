"""Retrying failed deliveries from the console, through a real worker and SMTP server."""

import json
import uuid

import pytest
from django_tenants.utils import schema_context

from notifications import pipeline
from notifications.models import Delivery, DeliveryStatus
from tests.conftest import Personas, Process, wait_until
from tests.fakes.smtp_server import FakeSmtpServer
from tests.notifications.console_support import make_notification, signed_in, user_with_role

pytestmark = [pytest.mark.worker, pytest.mark.usefixtures("live_db")]


def send(personas: Personas, address: str) -> str:
    body = {
        "recipient": {"external_id": f"u-{uuid.uuid4()}", "email": address},
        "channels": ["email"],
        "subject": "Your receipt",
        "body": "Thanks",
        "priority": "high",
    }
    response = personas.alpha.client().post(
        "/api/v1/notifications", json.dumps(body), content_type="application/json"
    )
    assert response.status_code == 202, response.content
    notification_id: str = response.json()["id"]
    return notification_id


def delivery_of(notification_id: str) -> Delivery:
    with schema_context("alpha"):
        return Delivery.objects.get(notification_id=notification_id)


def reaches(notification_id: str, status: str, timeout: float = 40) -> Delivery:
    def reached() -> Delivery | None:
        d = delivery_of(notification_id)
        return d if d.status == status else None

    result: Delivery = wait_until(reached, timeout=timeout, interval=0.2)
    return result


def events(delivery: Delivery) -> list[tuple[str, str]]:
    with schema_context("alpha"):
        return list(delivery.events.order_by("id").values_list("status", "detail"))


def test_a_failed_delivery_retried_from_the_console_is_sent(
    worker: Process, smtp_server: FakeSmtpServer, personas: Personas
) -> None:
    address = f"retry-{uuid.uuid4().hex[:8]}@example.com"
    smtp_server.fail(address, 550, times=1)  # a permanent refusal, once
    notification_id = send(personas, address)
    failed = reaches(notification_id, DeliveryStatus.FAILED)
    console = signed_in(personas.alpha.domain, "owner@alpha.test")
    page = console.get(f"/console/notifications/{notification_id}/").content.decode()
    assert f'data-retry="{failed.id}"' in page

    response = console.post(f"/console/notifications/{notification_id}/retry/", {"delivery": str(failed.id)})
    assert response.status_code == 302
    sent = reaches(notification_id, DeliveryStatus.SENT)
    assert len(smtp_server.messages_to(address)) == 1
    assert sent.attempts == 2  # the history is kept
    with schema_context("alpha"):
        outcomes = list(sent.attempt_log.order_by("id").values_list("outcome", flat=True))
    assert outcomes == ["permanent_error", "sent"]
    statuses = events(sent)
    assert ("queued", "retried from the console by owner@alpha.test") in statuses
    assert [s for s, _ in statuses] == ["queued", "sending", "failed", "queued", "sending", "sent"]
    shown = console.get(f"/console/notifications/{notification_id}/").content.decode()
    assert "retried from the console by owner@alpha.test" in shown


def test_retry_all_moves_only_the_notifications_failed_deliveries(
    worker: Process, smtp_server: FakeSmtpServer, personas: Personas
) -> None:
    address = f"all-{uuid.uuid4().hex[:8]}@example.com"
    smtp_server.fail(address, 550, times=1)
    notification_id = send(personas, address)
    reaches(notification_id, DeliveryStatus.FAILED)
    console = signed_in(personas.alpha.domain, "owner@alpha.test")
    console.post(f"/console/notifications/{notification_id}/retry/", {"all": "1"})
    reaches(notification_id, DeliveryStatus.SENT)
    again = console.post(f"/console/notifications/{notification_id}/retry/", {"all": "1"}, follow=True)
    assert "Nothing to retry" in again.content.decode()


def test_a_viewer_cannot_retry(worker: Process, smtp_server: FakeSmtpServer, personas: Personas) -> None:
    address = f"viewer-{uuid.uuid4().hex[:8]}@example.com"
    smtp_server.fail(address, 550, times=1)
    notification_id = send(personas, address)
    failed = reaches(notification_id, DeliveryStatus.FAILED)
    viewer = user_with_role("alpha", personas.alpha.domain, "viewer")
    page = viewer.get(f"/console/notifications/{notification_id}/").content.decode()
    assert "data-retry=" not in page
    response = viewer.post(f"/console/notifications/{notification_id}/retry/", {"all": "1"})
    assert response.status_code == 403
    assert delivery_of(notification_id).status == DeliveryStatus.FAILED
    assert failed.status == DeliveryStatus.FAILED


def test_another_tenant_cannot_retry_our_deliveries(
    worker: Process, smtp_server: FakeSmtpServer, personas: Personas
) -> None:
    address = f"cross-{uuid.uuid4().hex[:8]}@example.com"
    smtp_server.fail(address, 550, times=1)
    notification_id = send(personas, address)
    failed = reaches(notification_id, DeliveryStatus.FAILED)
    beta = signed_in(personas.beta.domain, "owner@beta.test")
    response = beta.post(f"/console/notifications/{notification_id}/retry/", {"delivery": str(failed.id)})
    assert response.status_code == 404
    assert delivery_of(notification_id).status == DeliveryStatus.FAILED


def test_retry_leaves_deliveries_that_never_reached_a_provider_and_other_states(personas: Personas) -> None:
    """A delivery that failed when accepted (no address, no provider call) would fail the same way:
    it is not retried; nor is one in any other state. transition() still refuses failed -> queued."""
    n = make_notification("alpha", [("sms", "failed"), ("email", "sent")], attempts=0)
    with schema_context("alpha"):
        sent, never_sent = n.deliveries.order_by("channel")  # email, sms
        Delivery.objects.filter(id=sent.id).update(attempts=1)
        assert pipeline.retry([never_sent.id, sent.id], by="someone") == []
        assert pipeline.transition(never_sent.id, DeliveryStatus.QUEUED, "late report") is False
        assert set(Delivery.objects.filter(notification=n).values_list("status", flat=True)) == {
            "failed",
            "sent",
        }
