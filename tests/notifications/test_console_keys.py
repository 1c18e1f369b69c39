"""The console's API keys page: a new key shown once and working, revocation at once, isolation."""

import re

import pytest
from django.test import Client

from tenants.models import ApiKey
from tests.conftest import Personas

from .console_helpers import member, owner, signed_in

pytestmark = pytest.mark.django_db

KEY = re.compile(r"hk_[0-9a-f]{8}_[A-Za-z0-9_-]{40,}")


def create(client: Client, name: str) -> str:
    response = client.post("/console/api-keys/new/", {"name": name})
    assert response.status_code == 201, response.content
    assert "no-store" in response["Cache-Control"]
    found = KEY.search(response.content.decode())
    assert found, "the new key is not on the page"
    return found.group(0)


def api(domain: str, key: str) -> int:
    client = Client(HTTP_HOST=domain, HTTP_AUTHORIZATION=f"Bearer {key}")
    status: int = client.get("/api/v1/notifications").status_code
    return status


def test_an_admin_creates_a_key_that_is_shown_once_and_works_against_the_api(personas: Personas) -> None:
    member("alpha", "ada@alpha.test", "admin")
    client = signed_in(personas.alpha.domain, "ada@alpha.test")
    raw_key = create(client, "billing backend")
    assert api(personas.alpha.domain, raw_key) == 200
    assert api("localhost", raw_key) == 200  # on the bare API host the key picks the tenant
    listed = client.get("/console/api-keys/").content.decode()
    assert raw_key not in listed  # never again
    prefix = raw_key.split("_")[1]
    assert f"hk_{prefix}_" in listed
    assert "billing backend" in listed
    stored = ApiKey.objects.get(prefix=prefix)
    assert stored.tenant_id == personas.alpha.tenant.pk
    assert raw_key not in stored.key_hash


def test_the_list_shows_when_a_key_was_last_used(personas: Personas) -> None:
    client = owner(personas.alpha.domain)
    raw_key = create(client, "used key")
    row = next(r for r in client.get("/console/api-keys/").content.decode().split("<tr>") if "used key" in r)
    assert "never" in row
    api(personas.alpha.domain, raw_key)
    row = next(r for r in client.get("/console/api-keys/").content.decode().split("<tr>") if "used key" in r)
    assert "never" not in row


def test_a_revoked_key_gets_401_at_once(personas: Personas) -> None:
    client = owner(personas.alpha.domain)
    raw_key = create(client, "to revoke")
    assert api(personas.alpha.domain, raw_key) == 200
    key = ApiKey.objects.get(prefix=raw_key.split("_")[1])
    assert client.post(f"/console/api-keys/{key.pk}/revoke/").status_code == 302
    assert api(personas.alpha.domain, raw_key) == 401
    page = client.get("/console/api-keys/").content.decode()
    assert "revoked" in page
    assert "now get 401" in page


def test_a_viewer_sees_the_keys_but_cannot_create_or_revoke_them(personas: Personas) -> None:
    member("alpha", "vic@alpha.test", "viewer")
    client = signed_in(personas.alpha.domain, "vic@alpha.test")
    page = client.get("/console/api-keys/")
    assert page.status_code == 200
    assert "Default key" in page.content.decode()
    assert "Create a key" not in page.content.decode()
    created = client.post("/console/api-keys/new/", {"name": "sneaky"})
    assert created.status_code == 403
    assert "Admin" in created.content.decode()
    assert not ApiKey.objects.filter(name="sneaky").exists()
    key = ApiKey.objects.filter(tenant=personas.alpha.tenant).first()
    assert key is not None
    assert client.post(f"/console/api-keys/{key.pk}/revoke/").status_code == 403
    key.refresh_from_db()
    assert key.revoked_at is None


def test_another_tenants_key_is_neither_listed_nor_revocable(personas: Personas) -> None:
    alpha_key = ApiKey.objects.get(prefix=personas.alpha.api_key.split("_")[1])
    beta = owner(personas.beta.domain)
    assert f"hk_{alpha_key.prefix}_" not in beta.get("/console/api-keys/").content.decode()
    assert beta.post(f"/console/api-keys/{alpha_key.pk}/revoke/").status_code == 404
    alpha_key.refresh_from_db()
    assert alpha_key.revoked_at is None
    assert api(personas.alpha.domain, personas.alpha.api_key) == 200


def test_a_key_needs_a_name(personas: Personas) -> None:
    response = owner(personas.alpha.domain).post("/console/api-keys/new/", {"name": ""})
    assert response.status_code == 400
    assert "Name: This field is required." in response.content.decode()
    assert not KEY.search(response.content.decode())


def test_key_actions_reject_get_and_need_csrf(personas: Personas) -> None:
    client = owner(personas.alpha.domain)
    key = ApiKey.objects.filter(tenant=personas.alpha.tenant).first()
    assert key is not None
    assert client.get("/console/api-keys/new/").status_code == 405
    assert client.get(f"/console/api-keys/{key.pk}/revoke/").status_code == 405
    strict = Client(HTTP_HOST=personas.alpha.domain, enforce_csrf_checks=True)
    strict.login(username="owner@alpha.test", password="pw")
    assert strict.post("/console/api-keys/new/", {"name": "no token"}).status_code == 403
    assert not ApiKey.objects.filter(name="no token").exists()


def test_a_tenant_without_keys_is_told_how_to_start(personas: Personas) -> None:
    ApiKey.objects.filter(tenant=personas.beta.tenant).delete()
    page = owner(personas.beta.domain).get("/console/api-keys/").content.decode()
    assert "No API keys yet" in page
    assert "Create a key" in page
