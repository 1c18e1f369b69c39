"""The notifications API as a tenant backend meets it: errors, isolation, the accepted shape."""

import json
import uuid
from typing import Any

import pytest
from django.conf import settings
from django.test import Client
from django_tenants.utils import schema_context

from notifications.models import Delivery, Recipient
from tenants.models import ApiKey
from tests.conftest import Personas

pytestmark = pytest.mark.django_db

WELCOME = {
    "recipient": {"external_id": "u-42", "email": "ana@example.com"},
    "channels": ["email"],
    "subject": "Welcome",
    "body": "Hello {{ name }}",
    "data": {"name": "Ana"},
    "priority": "high",
}


def post(client: Client, body: Any, path: str = "/api/v1/notifications") -> Any:
    return client.post(path, data=json.dumps(body), content_type="application/json")


def with_changes(**changes: Any) -> dict[str, Any]:
    return {**WELCOME, **changes}


# --- accepting --------------------------------------------------------------------------------


def test_it_accepts_a_notification_and_shows_it_queued(personas: Personas) -> None:
    client = personas.alpha.client()
    response = post(client, WELCOME)
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["status"] == "queued"
    assert body["url"] == f"/api/v1/notifications/{body['id']}"
    assert response["Location"] == body["url"]

    shown = client.get(body["url"]).json()
    assert shown["id"] == body["id"]
    assert shown["status"] == "queued"
    assert shown["priority"] == "high"
    assert shown["recipient"] == {
        "external_id": "u-42",
        "email": "ana@example.com",
        "phone": "",
        "locale": "",
    }
    (delivery,) = shown["deliveries"]
    assert delivery["channel"] == "email"
    assert delivery["address"] == "ana@example.com"
    assert delivery["status"] == "queued"
    assert [e["status"] for e in delivery["events"]] == ["queued"]


def test_it_upserts_the_recipient_by_external_id(personas: Personas) -> None:
    client = personas.alpha.client()
    external_id = f"u-{uuid.uuid4()}"
    post(client, with_changes(recipient={"external_id": external_id, "email": "old@example.com"}))
    post(client, with_changes(recipient={"external_id": external_id, "email": "new@example.com"}))
    with schema_context("alpha"):
        (recipient,) = Recipient.objects.filter(external_id=external_id)
        assert recipient.email == "new@example.com"
        assert recipient.notifications.count() == 2


def test_the_api_host_picks_the_tenant_from_the_key(personas: Personas) -> None:
    response = post(personas.beta.client(host="localhost"), WELCOME)
    assert response.status_code == 202
    with schema_context("beta"):
        assert Delivery.objects.filter(notification_id=response.json()["id"]).exists()
    with schema_context("alpha"):
        assert not Delivery.objects.filter(notification_id=response.json()["id"]).exists()


def test_the_list_shows_only_the_tenants_own_notifications(personas: Personas) -> None:
    mine = post(personas.alpha.client(), WELCOME).json()["id"]
    theirs = post(personas.beta.client(), WELCOME).json()["id"]
    listed = {n["id"] for n in personas.alpha.client().get("/api/v1/notifications").json()["results"]}
    assert mine in listed
    assert theirs not in listed


# --- authentication and isolation -------------------------------------------------------------


def error_of(response: Any) -> dict[str, Any]:
    assert response["Content-Type"] == "application/json"
    error: dict[str, Any] = response.json()["error"]
    return error


def test_no_key_is_401_with_a_json_error(personas: Personas) -> None:
    response = post(Client(HTTP_HOST=personas.alpha.domain), WELCOME)
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert "Bearer" in error_of(response)["message"]


@pytest.mark.parametrize(
    "header",
    ["Bearer hk_nope_nope", "Bearer not-a-key", "Basic dXNlcjpwYXNz", "Bearer", "Bearer a b"],
)
def test_a_bad_key_is_401(personas: Personas, header: str) -> None:
    client = Client(HTTP_HOST=personas.alpha.domain, HTTP_AUTHORIZATION=header)
    response = post(client, WELCOME)
    assert response.status_code == 401
    assert error_of(response)["code"] in {"invalid_api_key", "malformed_authorization"}


def test_a_right_prefix_with_a_wrong_secret_is_401(personas: Personas) -> None:
    prefix = personas.alpha.api_key.split("_")[1]
    client = Client(HTTP_HOST=personas.alpha.domain, HTTP_AUTHORIZATION=f"Bearer hk_{prefix}_{'x' * 43}")
    assert post(client, WELCOME).status_code == 401


def test_a_revoked_key_is_401(personas: Personas) -> None:
    key, raw = ApiKey.issue(personas.alpha.tenant, name="to revoke")
    client = Client(HTTP_HOST=personas.alpha.domain, HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert post(client, WELCOME).status_code == 202
    key.revoke()
    assert post(client, WELCOME).status_code == 401


def test_the_key_is_stored_hashed_and_records_its_last_use(personas: Personas) -> None:
    key, raw = ApiKey.issue(personas.alpha.tenant, name="hashed")
    assert raw not in (key.key_hash, key.prefix)
    assert key.last_used_at is None
    post(Client(HTTP_HOST="localhost", HTTP_AUTHORIZATION=f"Bearer {raw}"), WELCOME)
    key.refresh_from_db()
    assert key.last_used_at is not None


def test_a_key_of_tenant_a_on_tenant_bs_domain_is_403(personas: Personas) -> None:
    response = post(personas.alpha.client(host=personas.beta.domain), WELCOME)
    assert response.status_code == 403
    assert error_of(response)["code"] == "wrong_tenant"


def test_a_tenant_cannot_read_another_tenants_notification(personas: Personas) -> None:
    url = post(personas.beta.client(), WELCOME).json()["url"]
    assert personas.beta.client().get(url).status_code == 200
    # Alpha's key, on the API host and on alpha's own domain: not found.
    assert personas.alpha.client(host="localhost").get(url).status_code == 404
    assert personas.alpha.client().get(url).status_code == 404
    # Alpha's key on beta's domain: refused before any lookup.
    assert personas.alpha.client(host=personas.beta.domain).get(url).status_code == 403
    # An outsider with no key.
    assert Client(HTTP_HOST=personas.beta.domain).get(url).status_code == 401


def test_a_suspended_tenants_key_is_403(personas: Personas) -> None:
    response = post(personas.inactive.client(host="localhost"), WELCOME)
    assert response.status_code == 403
    assert error_of(response)["code"] == "tenant_suspended"


# --- validation -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({k: v for k, v in WELCOME.items() if k != "recipient"}, "recipient", "required"),
        (with_changes(recipient={"email": "ana@example.com"}), "recipient.external_id", "required"),
        (
            with_changes(recipient={"external_id": "u-1", "email": "not-an-email"}),
            "recipient.email",
            "valid email",
        ),
        (with_changes(recipient={"external_id": "u-1"}), "recipient.email", "email channel"),
        (with_changes(channels=[]), "channels", "empty"),
        (with_changes(channels=["pigeon"]), "channels[0]", "unknown channel"),
        (with_changes(channels=["email", "email"]), "channels", "more than once"),
        (with_changes(subject=""), "subject", "email channel"),
        (with_changes(priority="urgent"), "priority", "not a valid choice"),
        (with_changes(data=["a"]), "data", "dictionary"),
        (with_changes(body="Hello {{ nickname }}"), "body", "nickname"),
        (with_changes(body="Hello {{ name "), "body", "cannot render"),
        (with_changes(category="Not A Slug!"), "category", "slug"),
    ],
)
def test_a_bad_field_is_400_naming_it(
    personas: Personas, body: dict[str, Any], field: str, words: str
) -> None:
    response = post(personas.alpha.client(), body)
    assert response.status_code == 400, response.content
    error = error_of(response)
    assert error["code"] == "validation_failed"
    assert field in error["fields"], error
    assert words.lower() in " ".join(error["fields"][field]).lower()
    assert field in error["message"]


def test_every_bad_field_is_named_at_once(personas: Personas) -> None:
    body = with_changes(
        recipient={"external_id": "u-1", "email": "nope"}, priority="urgent", channels=["pigeon"]
    )
    fields = error_of(post(personas.alpha.client(), body))["fields"]
    assert {"recipient.email", "priority", "channels[0]"} <= set(fields)


def test_a_channel_without_a_provider_is_refused_clearly(personas: Personas) -> None:
    # No platform Twilio account in the test settings and none of the tenant's own.
    error = error_of(post(personas.alpha.client(), with_changes(channels=["sms"])))
    assert "no sms provider is configured for this tenant" in error["fields"]["channels"][0]


def test_a_body_that_is_not_json_is_400(personas: Personas) -> None:
    response = personas.alpha.client().post(
        "/api/v1/notifications", data="{oops", content_type="application/json"
    )
    assert response.status_code == 400
    assert error_of(response)["code"] == "parse_error"


def test_nothing_is_written_when_validation_fails(personas: Personas) -> None:
    external_id = f"u-{uuid.uuid4()}"
    post(personas.alpha.client(), with_changes(recipient={"external_id": external_id}, priority="urgent"))
    with schema_context("alpha"):
        assert not Recipient.objects.filter(external_id=external_id).exists()


@pytest.mark.parametrize(
    "template",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ cycler.__init__.__globals__.os }}",
        "{{ settings.SECRET_KEY }}",
        "{% for x in range(10**9) %}{% endfor %}",
        "{{ 9**9999999 }}",
        "{{ 'x' * 10**9 }}",
        "{{ lipsum.__globals__ }}",
    ],
)
def test_template_escapes_render_nothing_dangerous(personas: Personas, template: str) -> None:
    response = post(personas.alpha.client(), with_changes(body=template))
    assert response.status_code == 400
    message = error_of(response)["fields"]["body"][0]
    assert message.startswith("cannot render with the given data:")
    # Nothing from inside Python reaches the answer.
    for leak in ("<class", "<function", "<module", "object at 0x", settings.SECRET_KEY):
        assert leak not in message


# --- docs -------------------------------------------------------------------------------------


def test_the_openapi_schema_describes_the_notifications_endpoints() -> None:
    response = Client(HTTP_HOST="localhost").get("/api/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    schema = json.loads(response.content)
    assert "/api/v1/notifications" in schema["paths"]
    assert "post" in schema["paths"]["/api/v1/notifications"]
    assert "/api/v1/notifications/{id}" in schema["paths"]


def test_the_api_docs_page_loads() -> None:
    response = Client(HTTP_HOST="localhost").get("/api/docs/")
    assert response.status_code == 200
    assert b"swagger" in response.content.lower()


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("+1 415 555 0100", "+14155550100"),
        ("+44 20 7946 0958", "+442079460958"),
        ("+351912345678", "+351912345678"),
    ],
)
def test_a_phone_number_is_stored_in_e164(personas: Personas, given: str, stored: str) -> None:
    external_id = f"u-{uuid.uuid4()}"
    body = with_changes(recipient={"external_id": external_id, "email": "a@example.com", "phone": given})
    assert post(personas.alpha.client(), body).status_code == 202
    with schema_context("alpha"):
        assert Recipient.objects.get(external_id=external_id).phone == stored


@pytest.mark.parametrize("phone", ["4155550100", "+1 555", "+999 123 456", "call me", "+1415555010099999"])
def test_a_bad_phone_number_is_a_400_naming_the_field(personas: Personas, phone: str) -> None:
    body = with_changes(recipient={"external_id": "u-1", "email": "a@example.com", "phone": phone})
    error = error_of(post(personas.alpha.client(), body))
    assert "international format" in error["fields"]["recipient.phone"][0]


def test_a_body_over_the_size_limit_is_a_json_400(personas: Personas, settings: Any) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    response = post(personas.alpha.client(), with_changes(body="x" * 5000))
    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"]["code"] in {"bad_request", "parse_error"}
