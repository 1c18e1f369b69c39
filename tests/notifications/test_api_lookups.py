"""What every POST reads is kept per process, and a change is seen on the next request.

These tests commit (live_db): inside a test's rolled-back transaction nothing is cached, since
what a transaction reads may never be committed.
"""

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django_tenants.utils import schema_context

from notifications.models import ProviderConfig
from notifications.providers.registry import resolve
from tenants.crypto import encrypt_json
from tenants.models import ApiKey
from tests.conftest import REPO, Personas, service_env

pytestmark = pytest.mark.usefixtures("live_db")


def sms_body() -> dict[str, Any]:
    return {
        "recipient": {"external_id": f"u-{uuid.uuid4()}", "phone": "+14155550100"},
        "channels": ["sms"],
        "body": "Your code is 1234",
    }


def email_body() -> dict[str, Any]:
    return {
        "recipient": {"external_id": f"u-{uuid.uuid4()}", "email": "ana@example.com"},
        "channels": ["email"],
        "subject": "Hi",
        "body": "Hello",
    }


def post(client: Client, body: dict[str, Any]) -> Any:
    return client.post("/api/v1/notifications", data=json.dumps(body), content_type="application/json")


@pytest.fixture
def sms_provider(personas: Personas) -> Iterator[None]:
    """alpha's own Twilio account, deleted after the test (the platform has none in tests)."""
    with schema_context("alpha"):
        ProviderConfig.objects.filter(channel="sms").delete()
    yield
    with schema_context("alpha"):
        ProviderConfig.objects.filter(channel="sms").delete()


def add_sms_provider() -> None:
    with schema_context("alpha"):
        ProviderConfig.objects.create(
            channel="sms",
            role="primary",
            provider="twilio",
            settings={"from_number": "+15005550006"},
            secrets_encrypted=encrypt_json({"account_sid": "AC" + "0" * 32, "auth_token": "t"}),
        )


def test_a_provider_added_after_a_first_post_is_used_by_the_next_post(
    personas: Personas, sms_provider: None
) -> None:
    client = personas.alpha.client()
    refused = post(client, sms_body())
    assert refused.status_code == 400
    assert "no sms provider is configured" in refused.json()["error"]["fields"]["channels"][0]

    add_sms_provider()
    assert post(client, sms_body()).status_code == 202

    with schema_context("alpha"):
        ProviderConfig.objects.filter(channel="sms").delete()
    assert post(client, sms_body()).status_code == 400


def test_a_provider_added_by_another_process_is_used_by_the_next_post(
    personas: Personas, sms_provider: None
) -> None:
    client = personas.alpha.client()
    assert post(client, sms_body()).status_code == 400
    code = (
        "from django_tenants.utils import schema_context\n"
        "from notifications.models import ProviderConfig\n"
        "from tenants.crypto import encrypt_json\n"
        "with schema_context('alpha'):\n"
        "    ProviderConfig.objects.create(channel='sms', role='primary', provider='twilio',\n"
        "        settings={'from_number': '+15005550006'},\n"
        "        secrets_encrypted=encrypt_json({'account_sid': 'AC' + '0' * 32, 'auth_token': 't'}))\n"
    )
    run_in_another_process(code)
    # TENANT_CACHE_CHECK_INTERVAL is 0 in the tests: the very next request looks.
    assert post(client, sms_body()).status_code == 202


def test_the_providers_a_send_uses_are_kept_and_a_change_anywhere_is_seen_by_the_next_send(
    personas: Personas, sms_provider: None
) -> None:
    add_sms_provider()
    with schema_context("alpha"):
        primary, secondary = resolve("sms")
        assert primary is not None
        assert primary.settings["from_number"] == "+15005550006"
        assert secondary is None
        assert resolve("sms")[0] is primary  # kept: no query the second time
    run_in_another_process(
        "from django_tenants.utils import schema_context\n"
        "from notifications.models import ProviderConfig\n"
        "with schema_context('alpha'):\n"
        "    c = ProviderConfig.objects.get(channel='sms', role='primary')\n"
        "    c.settings = {'from_number': '+15005550007'}\n"
        "    c.save()\n"
    )
    with schema_context("alpha"):
        changed = resolve("sms")[0]
        assert changed is not None
        assert changed.settings["from_number"] == "+15005550007"
        ProviderConfig.objects.filter(channel="sms").delete()  # in this process: seen at once
        assert resolve("sms") == (None, None)
    with schema_context("beta"):  # another tenant's answer is its own
        assert resolve("sms") == (None, None)


def test_a_key_revoked_by_another_process_is_refused_on_the_next_request(personas: Personas) -> None:
    key, raw = ApiKey.issue(personas.alpha.tenant, name="revoked elsewhere")
    client = Client(HTTP_HOST=personas.alpha.domain, HTTP_AUTHORIZATION=f"Bearer {raw}")
    try:
        assert post(client, email_body()).status_code == 202
        assert post(client, email_body()).status_code == 202  # now served from the cache
        run_in_another_process(
            f"from tenants.models import ApiKey\nApiKey.objects.get(pk={key.pk}).revoke()\n"
        )
        response = post(client, email_body())
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "invalid_api_key"
    finally:
        key.delete()


def test_a_cached_key_still_needs_its_secret(personas: Personas) -> None:
    client = personas.alpha.client()
    assert post(client, email_body()).status_code == 202
    prefix = personas.alpha.api_key.split("_")[1]
    forged = Client(HTTP_HOST=personas.alpha.domain, HTTP_AUTHORIZATION=f"Bearer hk_{prefix}_{'x' * 43}")
    assert post(forged, email_body()).status_code == 401


def test_a_repeated_post_reads_neither_the_key_nor_the_providers_again(personas: Personas) -> None:
    client = personas.alpha.client()
    assert post(client, email_body()).status_code == 202
    with CaptureQueriesContext(connection) as queries:
        assert post(client, email_body()).status_code == 202
    tables = " ".join(q["sql"] for q in queries.captured_queries)
    assert "tenants_apikey" not in tables
    assert "notifications_providerconfig" not in tables


def run_in_another_process(code: str) -> None:
    env = service_env("smtp://127.0.0.1:1")
    subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code], cwd=REPO, env=env, check=True, timeout=120
    )
