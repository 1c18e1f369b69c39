"""A tenant's own provider accounts over the API: validated, stored encrypted, shown masked."""

import json
from typing import Any

import pytest
from django.db import connection
from django_tenants.utils import schema_context

from notifications.models import ProviderConfig
from tests.conftest import Personas

pytestmark = pytest.mark.django_db

TWILIO = {
    "provider": "twilio",
    "settings": {"from_number": "+15005550006"},
    "secrets": {"account_sid": "AC" + "1" * 32, "auth_token": "super-secret-token-9876"},
}


def put(personas: Personas, path: str, body: Any) -> Any:
    return personas.alpha.client().put(path, json.dumps(body), content_type="application/json")


def test_a_tenant_sets_its_own_sms_account_and_sees_it_masked(personas: Personas) -> None:
    response = put(personas, "/api/v1/providers/sms/primary", TWILIO)
    assert response.status_code == 201, response.content
    shown = response.json()
    assert shown["secrets"] == {"account_sid": "••••1111", "auth_token": "••••9876"}
    assert "super-secret-token-9876" not in response.content.decode()
    listed = personas.alpha.client().get("/api/v1/providers").content.decode()
    assert "super-secret-token-9876" not in listed
    assert '"provider": "twilio"' in listed.replace('":"', '": "')
    with schema_context("alpha"):
        stored = ProviderConfig.objects.get(channel="sms", role="primary")
        assert "super-secret" not in stored.secrets_encrypted  # encrypted at rest
    with connection.cursor() as cursor:
        cursor.execute("SELECT secrets_encrypted FROM alpha.notifications_providerconfig")
        assert all("super-secret" not in row[0] for row in cursor.fetchall())


def test_updating_without_secrets_keeps_the_stored_ones(personas: Personas) -> None:
    put(personas, "/api/v1/providers/sms/primary", TWILIO)
    response = put(personas, "/api/v1/providers/sms/primary", {**TWILIO, "secrets": {}})
    assert response.status_code == 200
    assert response.json()["secrets"]["auth_token"] == "••••9876"


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/v1/providers/sms/primary", {**TWILIO, "provider": "smtp"}, "provider"),
        ("/api/v1/providers/sms/primary", {**TWILIO, "settings": {"colour": "red"}}, "settings"),
        ("/api/v1/providers/sms/primary", {**TWILIO, "secrets": {"password": "x"}}, "secrets"),
        ("/api/v1/providers/fax/primary", TWILIO, "channel"),
        ("/api/v1/providers/sms/tertiary", TWILIO, "role"),
    ],
)
def test_a_bad_provider_configuration_is_a_400_naming_the_field(
    personas: Personas, path: str, body: Any, field: str
) -> None:
    response = put(personas, path, body)
    assert response.status_code == 400
    assert field in response.json()["error"]["fields"]


def test_another_tenant_sees_none_of_it(personas: Personas) -> None:
    put(personas, "/api/v1/providers/sms/primary", TWILIO)
    assert personas.beta.client().get("/api/v1/providers/sms/primary").status_code == 404
