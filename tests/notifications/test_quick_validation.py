"""The plain-Python field checks (notifications/api/quick.py) agree with NotificationCreate.

Whatever body the quick checks take, the serializer takes too and makes the same values of it;
whatever they are unsure of, they hand to the serializer. Bodies that clients really send take
the quick path. And what a POST answers is the same either way.
"""

import copy
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django_tenants.utils import schema_context
from rest_framework import serializers

from notifications.api.quick import notification_fields
from notifications.api.serializers import Lookups, NotificationCreate
from notifications.models import Notification, Recipient
from tests.conftest import Personas

pytestmark = pytest.mark.django_db

WELL_FORMED: list[dict[str, Any]] = [
    {
        "recipient": {"external_id": "u-42", "email": "ana@example.com"},
        "channels": ["email"],
        "subject": "Welcome",
        "body": "Hello {{ name }} ",
        "data": {"name": "Ana", "nested": {"a": [1, 2, None]}},
        "priority": "high",
    },
    {
        "recipient": {"external_id": "u-1", "email": "a.b+c@example.co.uk", "locale": "pt-BR"},
        "channels": ["email", "in_app"],
        "subject": "",
        "body": "  leading and trailing spaces stay in a body  ",
        "html": "<p>Hi</p>",
        "url": "https://example.com/x?y=1",
        "category": "orders",
        "locale": "pt",
    },
    {"recipient": {"external_id": "ü-名前"}, "channels": ["in_app", "push"], "body": "Olá, 世界"},
    {"recipient": {"external_id": "u-2", "phone": "+1 415 555 0100"}, "channels": ["in_app"], "body": "x"},
    {
        "recipient": {"external_id": "u-3", "email": "x@example.com", "phone": "+351912345678"},
        "channels": ["email"],
        "template": "order-shipped",
        "priority": "bulk",
        "unknown": "ignored",
    },
]

BAD_VALUES: list[Any] = [
    None, 0, 1.5, True, [], {}, "", " ", " padded ", "tab\t", "x\x00y", "\ud800", "a" * 300,
    "not an email", "+1 555", "4155550100", "pigeon", "Not A Slug!", "urgent", "e", "en_", ["email"],
    {"a": 1},
]  # fmt: skip

FIELDS = [
    "recipient",
    "channels",
    "template",
    "subject",
    "body",
    "html",
    "url",
    "data",
    "priority",
    "category",
    "locale",
]
RECIPIENT_FIELDS = ["external_id", "email", "phone", "locale"]


def variants() -> Iterator[Any]:
    """Each well-formed body, and each with one field (or recipient field, or channel) changed
    to each odd value, or removed."""
    for body in WELL_FORMED:
        yield body
        for field in FIELDS:
            for value in [*BAD_VALUES, ...]:
                changed = copy.deepcopy(body)
                if value is ...:
                    changed.pop(field, None)
                else:
                    changed[field] = value
                yield changed
        for field in RECIPIENT_FIELDS:
            for value in [*BAD_VALUES, ...]:
                changed = copy.deepcopy(body)
                if value is ...:
                    changed["recipient"].pop(field, None)
                else:
                    changed["recipient"][field] = value
                yield changed
        for value in [*BAD_VALUES, "email", "sms", "in_app", "push", " email"]:
            changed = copy.deepcopy(body)
            changed["channels"] = [*changed["channels"], value]
            yield changed
    yield {"recipient": {"external_id": "u"}, "channels": ["email", "sms", "push", "in_app", "email"]}
    yield ["not", "an", "object"]


def serializer_fields(body: Any) -> dict[str, Any] | None:
    """What NotificationCreate's fields make of `body`, or None if it refuses it."""
    try:
        attrs: dict[str, Any] = NotificationCreate(context={"lookups": Lookups()}).to_internal_value(body)
    except serializers.ValidationError:
        return None
    return attrs


def test_whatever_the_quick_checks_take_the_serializer_takes_the_same_way() -> None:
    checked = taken = 0
    with schema_context("alpha"):
        for body in variants():
            quick = notification_fields(copy.deepcopy(body), Lookups())
            checked += 1
            if quick is None:
                continue
            taken += 1
            assert serializer_fields(body) == quick, body
    assert checked > 1000
    assert taken > 100  # and the path is not a no-op


@pytest.mark.parametrize("body", WELL_FORMED)
def test_well_formed_bodies_take_the_quick_path(body: dict[str, Any]) -> None:
    with schema_context("alpha"):
        assert notification_fields(body, Lookups()) is not None


def test_a_channel_without_a_provider_is_left_to_the_serializer() -> None:
    body = {**WELL_FORMED[0], "channels": ["sms"]}  # no SMS provider in the tests
    with schema_context("alpha"):
        assert notification_fields(body, Lookups()) is None


def test_without_a_locale_the_notification_takes_the_recipients_stored_one(personas: Personas) -> None:
    external_id = f"u-{uuid.uuid4()}"
    client = personas.alpha.client()

    def post(recipient: dict[str, str], **extra: Any) -> Any:
        body = {"recipient": recipient, "channels": ["email"], "subject": "Hi", "body": "Hello", **extra}
        response = client.post("/api/v1/notifications", json.dumps(body), content_type="application/json")
        assert response.status_code == 202, response.content
        return response.json()["id"]

    first = post({"external_id": external_id, "email": "ana@example.com", "locale": "pt-BR"})
    stored = post({"external_id": external_id, "email": "ana@example.com"})
    named = post({"external_id": external_id, "email": "ana@example.com"}, locale="de")
    changed = post({"external_id": external_id, "email": "ana@example.com", "locale": "fr"})
    with schema_context("alpha"):
        locales = dict(
            Notification.objects.filter(recipient__external_id=external_id).values_list("id", "locale")
        )
        assert Recipient.objects.get(external_id=external_id).locale == "fr"
    assert [locales[uuid.UUID(n)] for n in (first, stored, named, changed)] == ["pt-BR", "pt-BR", "de", "fr"]
