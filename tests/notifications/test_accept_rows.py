"""What accepting writes (pipeline.insert_rows, all rows in one round trip) is what was sent."""

import json
import uuid
from typing import Any

import pytest
from django_tenants.utils import schema_context

from notifications.models import Delivery, DeliveryEvent, Notification
from tests.conftest import Personas

pytestmark = pytest.mark.django_db

AWKWARD = "100% sure: %s %(x)s %% 'single' \"double\" \\back\\slash; -- ✓ Olá 世界 \U0001f600\n"


def test_awkward_text_and_data_are_stored_exactly(personas: Personas) -> None:
    body: dict[str, Any] = {
        "recipient": {"external_id": f"u-{uuid.uuid4()}", "email": "o.brien@example.com"},
        "channels": ["email", "in_app"],
        "subject": "Re: 50% off",
        "body": AWKWARD + "{{ name }}",
        "data": {"name": "O'Brien %s", "list": [1, None, {"k": AWKWARD}], "n": 1.5},
        "priority": "critical",
    }
    response = personas.alpha.client().post(
        "/api/v1/notifications", json.dumps(body), content_type="application/json"
    )
    assert response.status_code == 202, response.content
    with schema_context("alpha"):
        notification = Notification.objects.get(pk=response.json()["id"])
        assert notification.body == body["body"]
        assert notification.subject == "Re: 50% off"
        assert notification.data == body["data"]
        assert notification.channels == ["email", "in_app"]
        assert notification.priority == "critical"
        deliveries = {d.channel: d for d in Delivery.objects.filter(notification=notification)}
        assert set(deliveries) == {"email", "in_app"}
        email = deliveries["email"]
        assert email.address == "o.brien@example.com"
        assert email.content["text"] == AWKWARD + "O'Brien %s"
        assert email.content["subject"] == "Re: 50% off"
        assert deliveries["in_app"].address == str(notification.recipient_id)
        events = DeliveryEvent.objects.filter(delivery__notification=notification)
        assert sorted((e.delivery.channel, e.status) for e in events) == [
            ("email", "queued"),
            ("in_app", "queued"),
        ]
