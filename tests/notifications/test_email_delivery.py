"""One notification, end to end: API -> database -> broker -> real worker -> real SMTP server."""

import json
import uuid
from typing import Any

import pytest

from tests.conftest import Personas, Process, wait_until
from tests.fakes.smtp_server import FakeSmtpServer

pytestmark = [pytest.mark.worker, pytest.mark.usefixtures("live_db")]


def send(personas: Personas, address: str, **changes: Any) -> str:
    body = {
        "recipient": {"external_id": f"u-{uuid.uuid4()}", "email": address},
        "channels": ["email"],
        "subject": "Welcome",
        "body": "Hello {{ name }}",
        "data": {"name": "Ana"},
        "priority": "high",
        **changes,
    }
    response = personas.alpha.client().post(
        "/api/v1/notifications", json.dumps(body), content_type="application/json"
    )
    assert response.status_code == 202, response.content
    url: str = response.json()["url"]
    return url


def wait_for_status(personas: Personas, url: str, status: str, timeout: float = 30) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        shown: dict[str, Any] = personas.alpha.client().get(url).json()
        return shown if shown["status"] == status else None

    result: dict[str, Any] = wait_until(reached, timeout=timeout, interval=0.2)
    return result


def test_an_email_reaches_the_smtp_server_and_shows_sent(
    worker: Process, smtp_server: FakeSmtpServer, personas: Personas
) -> None:
    address = f"ana-{uuid.uuid4().hex[:8]}@example.com"
    url = send(personas, address)
    shown = wait_for_status(personas, url, "sent")
    (delivery,) = shown["deliveries"]
    assert [e["status"] for e in delivery["events"]] == ["queued", "sending", "sent"]
    assert delivery["attempts"] == 1
    assert delivery["provider"] == "smtp"

    (mail,) = smtp_server.messages_to(address)
    assert mail["Subject"] == "Welcome"
    assert mail.get_content().strip() == "Hello Ana"
    assert mail["To"] == address
    # The Message-ID is derived from the delivery, so a repeated send is recognisable.
    assert mail["Message-ID"] == delivery["provider_message_id"]
    assert delivery["id"] in mail["Message-ID"]


def test_a_transient_smtp_refusal_is_retried_then_sent(
    worker: Process, smtp_server: FakeSmtpServer, personas: Personas
) -> None:
    address = f"busy-{uuid.uuid4().hex[:8]}@example.com"
    smtp_server.fail(address, 451, times=1)
    url = send(personas, address)
    shown = wait_for_status(personas, url, "sent", timeout=40)
    (delivery,) = shown["deliveries"]
    statuses = [e["status"] for e in delivery["events"]]
    assert statuses == ["queued", "sending", "queued", "sending", "sent"]
    assert "451" in delivery["events"][2]["detail"]
    assert delivery["attempts"] == 2
    assert smtp_server.attempts_for(address) == 2
    assert len(smtp_server.messages_to(address)) == 1


def test_a_permanent_smtp_refusal_fails_at_once_with_the_reason(
    worker: Process, smtp_server: FakeSmtpServer, personas: Personas
) -> None:
    address = f"gone-{uuid.uuid4().hex[:8]}@example.com"
    smtp_server.fail(address, 550, times=5)
    url = send(personas, address)
    shown = wait_for_status(personas, url, "failed")
    (delivery,) = shown["deliveries"]
    assert [e["status"] for e in delivery["events"]] == ["queued", "sending", "failed"]
    assert "550" in delivery["error"]
    assert "No such user" in delivery["error"]
    assert smtp_server.attempts_for(address) == 1
