"""Helpers of the console tests: signed-in clients per role, and rows written straight to a
tenant's schema (a notification with deliveries in chosen states, events at chosen times)."""

import uuid
from collections.abc import Sequence
from datetime import datetime

from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone
from django_tenants.utils import schema_context

from notifications.console.roles import set_role
from notifications.models import Delivery, DeliveryEvent, Notification, Recipient


def signed_in(domain: str, email: str, password: str = "pw") -> Client:
    client = Client(HTTP_HOST=domain)
    response = client.post("/console/login/", {"username": email, "password": password})
    assert response.status_code == 302, response.content
    return client


def user_with_role(schema: str, domain: str, role: str) -> Client:
    """A new user of the tenant with exactly `role`, signed in."""
    email = f"{role}-{uuid.uuid4().hex[:8]}@{schema}.test"
    with schema_context(schema):
        user = get_user_model().objects.create_user(username=email, email=email, password="pw")
        set_role(user, role)
    return signed_in(domain, email)


def make_notification(
    schema: str,
    deliveries: Sequence[tuple[str, str]],
    *,
    subject: str = "Hello",
    body: str = "Hi there",
    external_id: str | None = None,
    email: str = "",
    phone: str = "",
    created_at: datetime | None = None,
    template_key: str = "",
    attempts: int = 0,
    last_error: str = "",
) -> Notification:
    """A notification with a delivery per (channel, status), each with its events."""
    with schema_context(schema):
        recipient, _ = Recipient.objects.get_or_create(
            external_id=external_id or f"u-{uuid.uuid4().hex[:10]}",
            defaults={"email": email, "phone": phone},
        )
        notification = Notification.objects.create(
            recipient=recipient,
            channels=[c for c, _ in deliveries],
            subject=subject,
            body=body,
            template_key=template_key,
            created_at=created_at or timezone.now(),
        )
        for channel, status in deliveries:
            address = {"email": email, "sms": phone}.get(channel, str(recipient.id))
            delivery = Delivery.objects.create(
                notification=notification,
                channel=channel,
                address=address,
                status=status,
                attempts=attempts,
                last_error=last_error if status in ("failed", "bounced") else "",
            )
            DeliveryEvent.objects.create(delivery=delivery, status="queued")
            if status != "queued":
                DeliveryEvent.objects.create(delivery=delivery, status=status, detail=last_error)
        return notification
