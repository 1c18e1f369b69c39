"""The console's webhook pages: endpoints, their secret (shown once), messages and attempts."""

import re
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone
from django_tenants.utils import schema_context

from notifications.console import roles
from notifications.webhooks import service
from notifications.webhooks.models import Endpoint, MessageStatus, WebhookAttempt, WebhookMessage
from notifications.webhooks.signing import sign, verify
from tests.conftest import Personas

pytestmark = pytest.mark.django_db

URL = "https://hooks.example.com/herald"
SECRET_RE = re.compile(r"hwsec_[A-Za-z0-9_-]{20,}")


@pytest.fixture(autouse=True)
def _forget_cached_endpoints(personas: Personas) -> Iterator[None]:
    yield
    for persona in (personas.alpha, personas.beta):
        with schema_context(persona.tenant.schema_name):
            service.forget_endpoints()


def signed_in(domain: str, email: str, password: str = "pw") -> Client:
    client = Client(HTTP_HOST=domain)
    response = client.post("/console/login/", {"username": email, "password": password})
    assert response.status_code == 302, response.content
    return client


def admin(personas: Personas) -> Client:
    return signed_in(personas.alpha.domain, "owner@alpha.test")


def create(client: Client, url: str = URL, statuses: tuple[str, ...] = ("failed", "bounced")) -> str:
    response = client.post(
        "/console/webhooks/new/", {"url": url, "description": "Orders service", "statuses": list(statuses)}
    )
    assert response.status_code == 200, response.content
    page = response.content.decode()
    match = SECRET_RE.search(page)
    assert match, page
    assert "no-store" in response["Cache-Control"]
    return match.group(0)


def the_endpoint(personas: Personas) -> Endpoint:
    with schema_context(personas.alpha.tenant.schema_name):
        return Endpoint.objects.get(url=URL)


def test_an_admin_adds_an_endpoint_and_sees_its_secret_only_once(personas: Personas) -> None:
    client = admin(personas)
    assert "No webhook endpoints yet" in client.get("/console/webhooks/").content.decode()

    secret = create(client)

    endpoint = the_endpoint(personas)
    with schema_context(personas.alpha.tenant.schema_name):
        assert endpoint.secret == secret
    assert endpoint.statuses == ["failed", "bounced"]
    assert secret not in endpoint.secret_encrypted  # stored encrypted
    listing = client.get("/console/webhooks/").content.decode()
    assert URL in listing
    assert "Orders service" in listing
    detail = client.get(f"/console/webhooks/{endpoint.pk}/").content.decode()
    assert secret not in detail
    assert secret[-4:] in detail  # the hint: its last four characters
    assert "failed, bounced" in detail


def test_a_bad_url_is_refused_with_a_message_naming_the_field(personas: Personas) -> None:
    response = admin(personas).post(
        "/console/webhooks/new/", {"url": "http://example.com/x", "statuses": ["sent"]}
    )
    assert response.status_code == 400
    assert "URL: The URL must start with https://." in response.content.decode()
    response = admin(personas).post("/console/webhooks/new/", {"url": URL})
    assert "Statuses: Choose at least one delivery status to send." in response.content.decode()
    with schema_context(personas.alpha.tenant.schema_name):
        assert not Endpoint.objects.exists()


def test_an_admin_edits_the_url_filter_and_turns_it_off(personas: Personas) -> None:
    client = admin(personas)
    create(client)
    endpoint = the_endpoint(personas)
    response = client.post(
        f"/console/webhooks/{endpoint.pk}/",
        {"url": "https://other.example.com/h", "statuses": ["delivered", "queued"], "description": ""},
    )
    assert response.status_code == 302
    with schema_context(personas.alpha.tenant.schema_name):
        endpoint.refresh_from_db()
    assert endpoint.url == "https://other.example.com/h"
    assert endpoint.statuses == ["queued", "delivered"]
    assert not endpoint.is_active  # the box was not ticked
    assert "Endpoint saved." in client.get(response["Location"]).content.decode()


def test_rotating_shows_the_new_secret_once_and_the_old_one_signs_during_the_grace(
    personas: Personas,
) -> None:
    client = admin(personas)
    old = create(client)
    endpoint = the_endpoint(personas)

    response = client.post(f"/console/webhooks/{endpoint.pk}/rotate/")
    new = SECRET_RE.search(response.content.decode())

    assert new
    assert new.group(0) != old
    with schema_context(personas.alpha.tenant.schema_name):
        endpoint.refresh_from_db()
        keys = endpoint.signing_secrets()
    assert keys == [new.group(0), old]
    header = sign(b"{}", keys)
    assert verify(b"{}", header, old)
    assert verify(b"{}", header, new.group(0))
    client.post(f"/console/webhooks/{endpoint.pk}/rotate/", {"expire_now": "1"})
    with schema_context(personas.alpha.tenant.schema_name):
        endpoint.refresh_from_db()
        assert len(endpoint.signing_secrets()) == 1


def test_a_test_event_is_queued_for_the_endpoint(personas: Personas) -> None:
    client = admin(personas)
    create(client)
    endpoint = the_endpoint(personas)
    response = client.post(f"/console/webhooks/{endpoint.pk}/test/", follow=True)
    assert "Test event evt_test_" in response.content.decode()
    with schema_context(personas.alpha.tenant.schema_name):
        (message,) = WebhookMessage.objects.filter(endpoint=endpoint)
    assert message.event_type == "webhook.test"
    assert message.status == MessageStatus.PENDING


def test_the_attempts_page_shows_each_try_and_a_failed_message_can_be_resent(personas: Personas) -> None:
    client = admin(personas)
    create(client)
    endpoint = the_endpoint(personas)
    with schema_context(personas.alpha.tenant.schema_name):
        message = WebhookMessage.objects.create(
            endpoint=endpoint,
            event_id="evt_42",
            event_type="delivery.failed",
            body='{"id":"evt_42"}',
            status=MessageStatus.FAILED,
            attempts=2,
            last_status_code=500,
            last_error="HTTP 500",
        )
        WebhookAttempt.objects.create(
            message=message,
            number=1,
            duration_ms=1234,
            error="no answer within 10 s",
            next_retry_at=timezone.now(),
        )
        WebhookAttempt.objects.create(
            message=message,
            number=2,
            duration_ms=87,
            status_code=500,
            error="HTTP 500",
            response_excerpt="oops",
        )

    detail = client.get(f"/console/webhooks/{endpoint.pk}/").content.decode()
    assert "evt_42" in detail
    assert "1234 ms" in detail
    assert "no answer within 10 s" in detail
    page = client.get(f"/console/webhooks/{endpoint.pk}/messages/{message.id}/").content.decode()
    assert "#1" in page
    assert "#2" in page
    assert "87 ms" in page
    assert "oops" in page
    assert "Resend" in page

    response = client.post(f"/console/webhooks/{endpoint.pk}/messages/{message.id}/resend/")

    assert response.status_code == 302
    with schema_context(personas.alpha.tenant.schema_name):
        message.refresh_from_db()
    assert message.status == MessageStatus.PENDING
    assert message.round_base == 2  # a new round of tries


def test_deleting_an_endpoint_deletes_its_messages(personas: Personas) -> None:
    client = admin(personas)
    create(client)
    endpoint = the_endpoint(personas)
    client.post(f"/console/webhooks/{endpoint.pk}/test/")
    assert "1 message" in client.get(f"/console/webhooks/{endpoint.pk}/delete/").content.decode()
    response = client.post(f"/console/webhooks/{endpoint.pk}/delete/")
    assert response.status_code == 302
    with schema_context(personas.alpha.tenant.schema_name):
        assert not Endpoint.objects.exists()
        assert not WebhookMessage.objects.exists()


def test_another_tenants_endpoint_is_not_found(personas: Personas) -> None:
    create(admin(personas))
    endpoint = the_endpoint(personas)
    with schema_context(personas.alpha.tenant.schema_name):
        message = WebhookMessage.objects.create(endpoint=endpoint, event_id="e", event_type="t", body="{}")
    beta = signed_in(personas.beta.domain, "owner@beta.test")
    base = f"/console/webhooks/{endpoint.pk}"
    assert beta.get(f"{base}/").status_code == 404
    assert beta.get(f"{base}/messages/{message.id}/").status_code == 404
    assert beta.get(f"{base}/delete/").status_code == 404
    assert beta.post(f"{base}/rotate/").status_code == 404
    assert beta.post(f"{base}/test/").status_code == 404
    assert beta.post(f"{base}/messages/{message.id}/resend/").status_code == 404
    assert URL not in beta.get("/console/webhooks/").content.decode()


def test_a_visitor_who_is_not_signed_in_is_sent_to_sign_in(personas: Personas) -> None:
    response = Client(HTTP_HOST=personas.alpha.domain).get("/console/webhooks/")
    assert response.status_code == 302
    assert response["Location"].startswith("/console/login/")


def test_a_form_without_its_csrf_token_is_refused(personas: Personas) -> None:
    client = Client(HTTP_HOST=personas.alpha.domain, enforce_csrf_checks=True)
    client.cookies["sessionid"] = admin(personas).cookies["sessionid"].value
    response = client.post("/console/webhooks/new/", {"url": URL, "statuses": ["sent"]})
    assert response.status_code == 403
    with schema_context(personas.alpha.tenant.schema_name):
        assert not Endpoint.objects.exists()
    form = client.get("/console/webhooks/new/").content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form)
    assert token
    response = client.post(
        "/console/webhooks/new/", {"url": URL, "statuses": ["sent"], "csrfmiddlewaretoken": token.group(1)}
    )
    assert response.status_code == 200
    assert SECRET_RE.search(response.content.decode())


def test_a_user_who_may_not_manage_can_look_but_not_change(personas: Personas) -> None:
    create(admin(personas))
    endpoint = the_endpoint(personas)
    with schema_context(personas.alpha.tenant.schema_name):
        user = get_user_model().objects.create_user(
            username="viewer@alpha.test", email="viewer@alpha.test", password="pw"
        )
        roles.set_role(user, roles.VIEWER)  # a user with no role sees no console page at all
    viewer = signed_in(personas.alpha.domain, "viewer@alpha.test")
    assert URL in viewer.get("/console/webhooks/").content.decode()
    page = viewer.get(f"/console/webhooks/{endpoint.pk}/").content.decode()
    assert "Rotate secret" not in page
    assert viewer.post("/console/webhooks/new/", {"url": URL, "statuses": ["sent"]}).status_code == 403
    assert viewer.post(f"/console/webhooks/{endpoint.pk}/rotate/").status_code == 403
    assert viewer.post(f"/console/webhooks/{endpoint.pk}/delete/").status_code == 403


def test_a_tenant_has_at_most_the_configured_number_of_endpoints(personas: Personas, settings: Any) -> None:
    settings.WEBHOOKS = {**settings.WEBHOOKS, "max_endpoints": 1}
    client = admin(personas)
    create(client)
    response = client.post("/console/webhooks/new/", {"url": URL + "/2", "statuses": ["sent"]})
    assert response.status_code == 400
    assert "at most 1 endpoints; delete one first" in response.content.decode()
