"""The console's first slice: sign in on the tenant's domain, see notifications and timelines."""

import json

import pytest
from django.test import Client

from tests.conftest import Personas

pytestmark = pytest.mark.django_db


def signed_in(domain: str, email: str, password: str = "pw") -> Client:
    client = Client(HTTP_HOST=domain)
    response = client.post("/console/login/", {"username": email, "password": password})
    assert response.status_code == 302, response.content
    return client


def send(personas: Personas, subject: str) -> str:
    body = {
        "recipient": {"external_id": "u-1", "email": "ana@example.com"},
        "channels": ["email"],
        "subject": subject,
        "body": "Hi",
    }
    response = personas.alpha.client().post(
        "/api/v1/notifications", json.dumps(body), content_type="application/json"
    )
    notification_id: str = response.json()["id"]
    return notification_id


def test_an_anonymous_visitor_is_sent_to_sign_in(personas: Personas) -> None:
    response = Client(HTTP_HOST=personas.alpha.domain).get("/console/notifications/")
    assert response.status_code == 302
    assert response["Location"].startswith("/console/login/")


def test_the_admin_signs_in_and_sees_the_tenants_notifications(personas: Personas) -> None:
    notification_id = send(personas, "Quarterly report ready")
    client = signed_in(personas.alpha.domain, "owner@alpha.test")
    page = client.get("/console/notifications/").content.decode()
    assert "Quarterly report ready" in page
    detail = client.get(f"/console/notifications/{notification_id}/").content.decode()
    assert "ana@example.com" in detail
    assert "queued" in detail


def test_an_empty_console_tells_a_newcomer_what_to_do(personas: Personas) -> None:
    page = signed_in(personas.beta.domain, "owner@beta.test").get("/console/notifications/?status=bounced")
    assert "No notifications" in page.content.decode()
    assert "/api/v1/notifications" in page.content.decode()


def test_another_tenants_admin_cannot_sign_in_here(personas: Personas) -> None:
    client = Client(HTTP_HOST=personas.alpha.domain)
    response = client.post("/console/login/", {"username": "owner@beta.test", "password": "pw"})
    assert response.status_code == 200
    assert "match an account of" in response.content.decode()
    assert client.get("/console/notifications/").status_code == 302


def test_a_session_from_one_tenant_means_nothing_on_another(personas: Personas) -> None:
    alpha_session = signed_in(personas.alpha.domain, "owner@alpha.test").cookies["sessionid"].value
    beta = Client(HTTP_HOST=personas.beta.domain)
    beta.cookies["sessionid"] = alpha_session
    assert beta.get("/console/notifications/").status_code == 302


def test_another_tenants_notification_is_not_found(personas: Personas) -> None:
    notification_id = send(personas, "Alpha only")
    client = signed_in(personas.beta.domain, "owner@beta.test")
    assert client.get(f"/console/notifications/{notification_id}/").status_code == 404


def test_there_is_no_console_on_the_api_host() -> None:
    assert Client(HTTP_HOST="localhost").get("/console/login/").status_code == 404


def test_a_suspended_tenants_console_and_pages_are_closed(personas: Personas) -> None:
    client = Client(HTTP_HOST=personas.inactive.domain)
    login = client.post("/console/login/", {"username": "owner@gamma.test", "password": "pw"})
    assert login.status_code == 403
    assert "suspended" in login.content.decode()
    api = client.get("/u/preferences/?token=x")
    assert api.status_code == 403
    assert api.json()["error"]["code"] == "tenant_suspended"


def test_the_navigation_links_every_console_page(personas: Personas) -> None:
    page = signed_in(personas.alpha.domain, "owner@alpha.test").get("/console/").content.decode()
    for path in (
        "/console/notifications/",
        "/console/broadcasts/",
        "/console/templates/",
        "/console/recipients/",
        "/console/topics/",
        "/console/webhooks/",
        "/console/providers/",
        "/console/api-keys/",
        "/console/team/",
        "/console/usage/",
    ):
        assert f'href="{path}"' in page, path
