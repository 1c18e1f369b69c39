"""Templates (per channel and locale, sandboxed, preview) and preferences (opt-out, required, unsubscribe)."""

import json
import uuid
from typing import Any

import pytest
from django.test import Client
from django_tenants.utils import schema_context

from notifications.links import recipient_token, unsubscribe_token
from notifications.models import Category, Preference, Recipient
from tests.conftest import Personas

pytestmark = pytest.mark.django_db

ORDER_SHIPPED = {
    "key": "order-shipped",
    "name": "Order shipped",
    "category": "orders",
    "variants": [
        {
            "channel": "email",
            "subject": "Order {{ order }} shipped",
            "text": "Hi {{ name }}, it's on its way.",
            "html": "<p>Hi {{ name }}, it's on its way.</p>",
        },
        {
            "channel": "email",
            "locale": "pt",
            "subject": "Pedido {{ order }} enviado",
            "text": "Olá {{ name }}!",
        },
        {
            "channel": "in_app",
            "subject": "Shipped",
            "text": "Order {{ order }} is on its way",
            "url": "/orders/{{ order }}",
        },
    ],
}


def api(personas: Personas, method: str, path: str, body: Any = None) -> Any:
    client = personas.alpha.client()
    return getattr(client, method)(
        path, data=json.dumps(body) if body is not None else None, content_type="application/json"
    )


def notify(personas: Personas, **fields: Any) -> Any:
    body = {
        "recipient": {"external_id": f"u-{uuid.uuid4()}", "email": "ana@example.com"},
        "channels": ["email"],
        **fields,
    }
    return api(personas, "post", "/api/v1/notifications", body)


def content_of(personas: Personas, notification_id: str) -> dict[str, Any]:
    shown = api(personas, "get", f"/api/v1/notifications/{notification_id}").json()
    return {d["channel"]: d for d in shown["deliveries"]}


# --- templates ------------------------------------------------------------------------------------


def test_a_template_is_stored_and_used_by_key(personas: Personas) -> None:
    assert api(personas, "post", "/api/v1/templates", ORDER_SHIPPED).status_code == 201
    response = notify(personas, template="order-shipped", data={"order": "A-17", "name": "Ana"})
    assert response.status_code == 202, response.content
    email = content_of(personas, response.json()["id"])["email"]
    assert email["content"]["subject"] == "Order A-17 shipped"
    assert email["content"]["html"] == "<p>Hi Ana, it's on its way.</p>"
    shown = api(personas, "get", f"/api/v1/notifications/{response.json()['id']}").json()
    assert shown["category"] == "orders"  # the template's category
    assert shown["template"] == "order-shipped"


def test_a_locale_falls_back_from_region_to_language_to_default(personas: Personas) -> None:
    api(personas, "post", "/api/v1/templates", ORDER_SHIPPED)
    pt = notify(personas, template="order-shipped", locale="pt-BR", data={"order": "7", "name": "Ana"}).json()
    de = notify(personas, template="order-shipped", locale="de", data={"order": "7", "name": "Ana"}).json()
    assert content_of(personas, pt["id"])["email"]["content"]["subject"] == "Pedido 7 enviado"
    assert content_of(personas, de["id"])["email"]["content"]["subject"] == "Order 7 shipped"


def test_the_recipients_stored_locale_picks_the_variant(personas: Personas) -> None:
    api(personas, "post", "/api/v1/templates", ORDER_SHIPPED)
    external_id = f"u-{uuid.uuid4()}"
    recipient = {"external_id": external_id, "email": "ana@example.com", "locale": "pt"}
    api(
        personas,
        "post",
        "/api/v1/notifications",
        {"recipient": recipient, "channels": ["email"], "body": "x", "subject": "x"},
    )
    later = api(
        personas,
        "post",
        "/api/v1/notifications",
        {
            "recipient": {"external_id": external_id},
            "channels": ["email"],
            "template": "order-shipped",
            "data": {"order": "9", "name": "Ana"},
        },
    ).json()
    assert content_of(personas, later["id"])["email"]["content"]["subject"] == "Pedido 9 enviado"


def test_a_variable_missing_from_data_is_a_400_naming_the_template(personas: Personas) -> None:
    api(personas, "post", "/api/v1/templates", ORDER_SHIPPED)
    response = notify(personas, template="order-shipped", data={"order": "1"})
    assert response.status_code == 400
    message = response.json()["error"]["fields"]["template"][0]
    assert "'name' is undefined" in message
    assert "order-shipped" in message


def test_a_channel_without_a_variant_is_a_400(personas: Personas) -> None:
    api(personas, "post", "/api/v1/templates", ORDER_SHIPPED)
    response = api(
        personas,
        "post",
        "/api/v1/notifications",
        {
            "recipient": {"external_id": "u-1", "phone": "+14155550100"},
            "channels": ["push"],
            "template": "order-shipped",
            "data": {"order": "1", "name": "A"},
        },
    )
    assert response.status_code == 400


def test_an_unknown_template_is_a_400(personas: Personas) -> None:
    response = notify(personas, template="nope")
    assert response.json()["error"]["fields"]["template"] == ["no template with key 'nope'"]


def test_a_template_with_bad_syntax_is_refused_naming_the_variant_field(personas: Personas) -> None:
    bad = {
        **ORDER_SHIPPED,
        "key": "broken",
        "variants": [{"channel": "email", "subject": "{{ oops", "text": "x"}],
    }
    response = api(personas, "post", "/api/v1/templates", bad)
    assert response.status_code == 400
    assert "variants[0].subject" in response.json()["error"]["fields"]


@pytest.mark.parametrize(
    "escape", ["{{ ''.__class__.__mro__ }}", "{{ order.__class__ }}", "{{ 9**9999999 }}"]
)
def test_a_template_escape_renders_nothing_dangerous(personas: Personas, escape: str) -> None:
    evil = {
        "key": f"evil-{uuid.uuid4().hex[:6]}",
        "variants": [{"channel": "email", "subject": "x", "text": escape}],
    }
    assert api(personas, "post", "/api/v1/templates", evil).status_code == 201
    response = notify(personas, template=evil["key"], data={"order": "1"})
    assert response.status_code == 400
    assert (
        "not allowed" in response.json()["error"]["fields"]["template"][0]
        or "unsafe" in response.content.decode()
    )


def test_preview_renders_each_channel_with_sample_data(personas: Personas) -> None:
    api(personas, "post", "/api/v1/templates", ORDER_SHIPPED)
    response = api(
        personas, "post", "/api/v1/templates/order-shipped/preview", {"data": {"order": "5", "name": "Bo"}}
    )
    assert response.status_code == 200
    channels = response.json()["channels"]
    assert channels["email"]["subject"] == "Order 5 shipped"
    assert channels["in_app"] == {"title": "Shipped", "body": "Order 5 is on its way", "url": "/orders/5"}
    missing = api(personas, "post", "/api/v1/templates/order-shipped/preview", {"data": {}})
    assert missing.status_code == 400
    assert "undefined" in json.dumps(missing.json())


def test_templates_are_per_tenant(personas: Personas) -> None:
    api(personas, "post", "/api/v1/templates", ORDER_SHIPPED)
    assert personas.beta.client().get("/api/v1/templates/order-shipped").status_code == 404


# --- preferences ----------------------------------------------------------------------------------


def test_an_opted_out_channel_is_recorded_as_suppressed_with_the_reason(personas: Personas) -> None:
    external_id = f"u-{uuid.uuid4()}"
    first = notify(
        personas,
        recipient={"external_id": external_id, "email": "a@example.com"},
        subject="News",
        body="x",
        category="newsletter",
    )
    assert first.status_code == 202
    put = api(
        personas,
        "put",
        f"/api/v1/recipients/{external_id}/preferences",
        {"preferences": [{"category": "newsletter", "channel": "email", "enabled": False}]},
    )
    assert put.status_code == 200
    second = notify(
        personas,
        recipient={"external_id": external_id, "email": "a@example.com"},
        subject="News",
        body="x",
        category="newsletter",
    ).json()
    email = content_of(personas, second["id"])["email"]
    assert email["status"] == "suppressed"
    assert email["error"] == "recipient opted out of 'newsletter' on email"
    assert [e["status"] for e in email["events"]] == ["suppressed"]


def test_a_required_category_bypasses_preferences(personas: Personas) -> None:
    external_id = f"u-{uuid.uuid4()}"
    api(personas, "put", "/api/v1/categories/security", {"required": True})
    api(
        personas,
        "put",
        f"/api/v1/recipients/{external_id}/preferences",
        {"preferences": [{"category": "security", "channel": "email", "enabled": False}]},
    )
    sent = notify(
        personas,
        recipient={"external_id": external_id, "email": "a@example.com"},
        subject="New sign-in",
        body="x",
        category="security",
    ).json()
    email = content_of(personas, sent["id"])["email"]
    assert email["status"] == "queued"
    assert "list_unsubscribe" not in email["content"]  # no unsubscribe from security mail


def test_an_email_carries_a_one_click_unsubscribe_link_that_works(personas: Personas) -> None:
    external_id = f"u-{uuid.uuid4()}"
    sent = notify(
        personas,
        recipient={"external_id": external_id, "email": "a@example.com"},
        subject="News",
        body="Bye: {{ unsubscribe_url }}",
        category="digest",
    ).json()
    email = content_of(personas, sent["id"])["email"]
    link = email["content"]["list_unsubscribe"]
    assert link.startswith("http://alpha.localhost:8000/u/unsubscribe/")
    assert link in email["content"]["text"]
    path = link.removeprefix("http://alpha.localhost:8000")
    browser = Client(HTTP_HOST="alpha.localhost")
    assert "Unsubscribe from" in browser.get(path).content.decode()  # a GET changes nothing
    with schema_context("alpha"):
        assert not Preference.objects.filter(recipient__external_id=external_id).exists()
    # RFC 8058: the mail client POSTs List-Unsubscribe=One-Click, no CSRF token, no cookies.
    response = browser.post(
        path, "List-Unsubscribe=One-Click", content_type="application/x-www-form-urlencoded"
    )
    assert response.status_code == 200
    assert "unsubscribed" in response.content.decode()
    with schema_context("alpha"):
        prefs = Preference.objects.filter(recipient__external_id=external_id, category__key="digest")
        assert {p.channel for p in prefs if not p.enabled} == {"email", "sms", "push", "in_app"}


def test_an_unsubscribe_link_of_one_tenant_does_nothing_on_another(personas: Personas) -> None:
    with schema_context("alpha"):
        recipient = Recipient.objects.create(external_id=f"u-{uuid.uuid4()}")
        Category.objects.get_or_create(key="digest")
        token = unsubscribe_token(str(recipient.id), "digest")
    response = Client(HTTP_HOST="beta.localhost").post(f"/u/unsubscribe/{token}/")
    assert response.status_code == 404
    tampered = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    assert Client(HTTP_HOST="alpha.localhost").post(f"/u/unsubscribe/{tampered}/").status_code == 404


def test_the_preference_page_saves_choices(personas: Personas) -> None:
    with schema_context("alpha"):
        recipient = Recipient.objects.create(external_id=f"u-{uuid.uuid4()}")
        Category.objects.get_or_create(key="digest")
        token = recipient_token(str(recipient.id))
    browser = Client(HTTP_HOST="alpha.localhost")
    page = browser.get(f"/u/preferences/?token={token}")
    assert page.status_code == 200
    assert 'name="digest:email"' in page.content.decode()
    browser.post(f"/u/preferences/?token={token}", {"token": token, "digest:sms": "on"})
    with schema_context("alpha"):
        choices = {
            p.channel: p.enabled
            for p in Preference.objects.filter(recipient=recipient, category__key="digest")
        }
    assert choices == {"email": False, "sms": True, "push": False, "in_app": False}
    assert Client(HTTP_HOST="beta.localhost").get(f"/u/preferences/?token={token}").status_code == 404
