"""Push without a subscription: the delivery is recorded as suppressed, never silently dropped."""

import json
import uuid

import pytest
from django_tenants.utils import schema_context

from notifications.models import Delivery
from tests.conftest import Personas

pytestmark = pytest.mark.django_db


def test_push_without_a_subscription_is_suppressed_not_dropped(personas: Personas) -> None:
    body = {
        "recipient": {"external_id": f"u-{uuid.uuid4()}"},
        "channels": ["push", "in_app"],
        "subject": "Hi",
        "body": "there",
    }
    response = personas.alpha.client().post(
        "/api/v1/notifications", json.dumps(body), content_type="application/json"
    )
    assert response.status_code == 202, response.content
    shown = personas.alpha.client().get(response.json()["url"]).json()
    deliveries = {d["channel"]: d for d in shown["deliveries"]}
    assert deliveries["push"]["status"] == "suppressed"
    assert deliveries["push"]["error"] == "recipient has no push subscription"
    assert deliveries["in_app"]["status"] == "queued"
    with schema_context("alpha"):
        assert Delivery.objects.filter(notification_id=response.json()["id"]).count() == 2
