"""The console's providers page: accounts per channel with secrets masked, editing, health, test sends."""

import re
import uuid
from typing import Any

import pytest
from django.test import Client
from django_tenants.utils import schema_context

from notifications import health
from notifications.models import Delivery, Notification, ProviderConfig
from tenants.crypto import decrypt_json
from tests.conftest import Personas, Process, wait_until
from tests.fakes.smtp_server import FakeSmtpServer

from .console_helpers import member, owner, signed_in

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "tok-secret-value-5678"  # checked to stay off every page
TWILIO_FORM = {
    "provider": "twilio",
    "setting_from_number": "+15005550006",
    "secret_account_sid": ACCOUNT_SID,
    "secret_auth_token": AUTH_TOKEN,
}


def set_twilio(client: Client, role: str = "primary") -> None:
    response = client.post(f"/console/providers/sms/{role}/", TWILIO_FORM)
    assert response.status_code == 302, response.content


@pytest.mark.django_db
def test_an_admin_sets_an_sms_account_and_no_page_shows_its_secrets(personas: Personas) -> None:
    member("alpha", "ari@alpha.test", "admin")
    client = signed_in(personas.alpha.domain, "ari@alpha.test")
    set_twilio(client)
    with schema_context("alpha"):
        config = ProviderConfig.objects.get(channel="sms", role="primary", is_active=True)
        assert config.provider == "twilio"
        assert config.settings == {"from_number": "+15005550006"}
        assert decrypt_json(config.secrets_encrypted) == {
            "account_sid": ACCOUNT_SID,
            "auth_token": AUTH_TOKEN,
        }
    for path in ("/console/providers/", "/console/providers/sms/primary/"):
        page = client.get(path).content.decode()
        assert "twilio" in page
        assert AUTH_TOKEN not in page, path
        assert AUTH_TOKEN[-4:] not in page, path  # not even the tail of a token
        assert ACCOUNT_SID not in page, path
    page = client.get("/console/providers/").content.decode()
    assert f"••••{ACCOUNT_SID[-4:]}" in page  # the account id's tail tells accounts apart
    assert "+15005550006" in page


@pytest.mark.django_db
def test_the_push_private_key_made_at_provisioning_is_never_shown(personas: Personas) -> None:
    with schema_context("alpha"):
        config = ProviderConfig.objects.get(channel="push", role="primary", is_active=True)
        private_key = decrypt_json(config.secrets_encrypted)["vapid_private_key"]
    client = owner(personas.alpha.domain)
    for path in ("/console/providers/", "/console/providers/push/primary/"):
        page = client.get(path).content.decode()
        assert private_key not in page
        assert private_key[-4:] not in page
    assert "vapid_private_key" in client.get("/console/providers/").content.decode()


@pytest.mark.django_db
def test_saving_with_a_secret_left_blank_keeps_the_stored_one(personas: Personas) -> None:
    client = owner(personas.alpha.domain)
    set_twilio(client)
    response = client.post(
        "/console/providers/sms/primary/",
        {**TWILIO_FORM, "setting_from_number": "+15005550007", "secret_auth_token": ""},
    )
    assert response.status_code == 302
    with schema_context("alpha"):
        config = ProviderConfig.objects.get(channel="sms", role="primary", is_active=True)
        assert config.settings["from_number"] == "+15005550007"
        assert decrypt_json(config.secrets_encrypted)["auth_token"] == AUTH_TOKEN


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("path", "form", "message"),
    [
        (
            "/console/providers/email/secondary/",
            {"provider": "smtp", "setting_port": "abc"},
            "port: must be a whole number",
        ),
        ("/console/providers/email/secondary/", {"provider": "smtp", "setting_port": "70000x"}, "port"),
    ],
)
def test_a_bad_setting_is_refused_naming_the_field(
    personas: Personas, path: str, form: dict[str, str], message: str
) -> None:
    response = owner(personas.alpha.domain).post(path, form)
    assert response.status_code == 400
    assert message in response.content.decode()
    with schema_context("alpha"):
        assert not ProviderConfig.objects.filter(channel="email", role="secondary", is_active=True).exists()


@pytest.mark.django_db
def test_an_unknown_channel_or_role_is_not_found(personas: Personas) -> None:
    client = owner(personas.alpha.domain)
    assert client.get("/console/providers/fax/primary/").status_code == 404
    assert client.get("/console/providers/sms/tertiary/").status_code == 404


@pytest.mark.django_db
def test_an_smtp_account_is_saved_with_its_port_and_tls(personas: Personas) -> None:
    form = {
        "provider": "smtp",
        "setting_host": "mail.example.com",
        "setting_port": "587",
        "setting_use_tls": "on",
        "setting_username": "alpha",
        "secret_password": "hunter2-but-longer",
    }
    client = owner(personas.alpha.domain)
    assert client.post("/console/providers/email/secondary/", form).status_code == 302
    with schema_context("alpha"):
        config = ProviderConfig.objects.get(channel="email", role="secondary", is_active=True)
    assert config.settings["port"] == 587
    assert config.settings["use_tls"] is True
    assert config.settings["use_ssl"] is False
    page = client.get("/console/providers/").content.decode()
    assert "hunter2" not in page
    assert "mail.example.com" in page


@pytest.mark.django_db
def test_disabling_a_provider_falls_back_to_the_platforms(personas: Personas) -> None:
    client = owner(personas.alpha.domain)
    set_twilio(client)
    assert client.get("/console/providers/sms/primary/disable/").status_code == 405
    assert client.post("/console/providers/sms/primary/disable/").status_code == 302
    with schema_context("alpha"):
        assert not ProviderConfig.objects.filter(channel="sms", is_active=True).exists()
    page = client.get("/console/providers/").content.decode()
    assert "disabled" in page
    assert client.post("/console/providers/sms/primary/disable/").status_code == 404


@pytest.mark.django_db
def test_a_viewer_sees_providers_but_cannot_edit_disable_or_send_tests(personas: Personas) -> None:
    set_twilio(owner(personas.alpha.domain))
    member("alpha", "val@alpha.test", "viewer")
    client = signed_in(personas.alpha.domain, "val@alpha.test")
    page = client.get("/console/providers/")
    assert page.status_code == 200
    assert "twilio" in page.content.decode()
    assert "Send a test" not in page.content.decode()
    assert AUTH_TOKEN not in page.content.decode()
    assert client.get("/console/providers/sms/primary/").status_code == 403
    assert (
        client.post("/console/providers/sms/primary/", {**TWILIO_FORM, "provider": "twilio"}).status_code
        == 403
    )
    assert client.post("/console/providers/sms/primary/disable/").status_code == 403
    denied = client.post("/console/providers/test/", {"channel": "email", "to": "v@example.com"})
    assert denied.status_code == 403
    assert "Admin" in denied.content.decode()
    with schema_context("alpha"):
        assert ProviderConfig.objects.filter(channel="sms", is_active=True).exists()
        assert not Delivery.objects.filter(address="v@example.com").exists()


@pytest.mark.django_db
def test_another_tenants_accounts_are_not_shown(personas: Personas) -> None:
    set_twilio(owner(personas.alpha.domain))
    page = owner(personas.beta.domain).get("/console/providers/").content.decode()
    assert ACCOUNT_SID[-4:] not in page
    assert "+15005550006" not in page


@pytest.mark.django_db
def test_health_shows_a_providers_recent_error_rate(personas: Personas) -> None:
    client = owner(personas.beta.domain)
    set_twilio(client)
    with schema_context("beta"):
        health.record("sms", "twilio", ok=0, failed=10)
    page = client.get("/console/providers/").content.decode()
    section = page.split('id="channel-sms"')[1].split('id="channel-push"')[0]
    assert re.search(r"100% errors of \d+ attempts", section)
    assert "failing over" in section


@pytest.mark.django_db
def test_a_test_send_to_a_bad_address_names_the_problem(personas: Personas) -> None:
    client = owner(personas.alpha.domain)
    response = client.post("/console/providers/test/", {"channel": "sms", "to": "12"})
    assert response.status_code == 400
    assert "recipient.phone" in response.content.decode()
    response = client.post("/console/providers/test/", {"channel": "in_app", "to": "nobody-here"})
    assert response.status_code == 400
    assert "no recipient with id" in response.content.decode()
    assert client.get("/console/providers/test/").status_code == 405


@pytest.mark.worker
@pytest.mark.usefixtures("live_db")
def test_send_test_delivers_a_real_message_and_links_to_its_page(
    worker: Process, smtp_server: FakeSmtpServer, personas: Personas
) -> None:
    address = f"test-{uuid.uuid4().hex[:8]}@example.com"
    client = owner(personas.alpha.domain)
    response = client.post("/console/providers/test/", {"channel": "email", "to": address})
    assert response.status_code == 302
    page = client.get(response["Location"]).content.decode()
    link = re.search(r'href="/console/notifications/([0-9a-f-]{36})/"', page)
    assert link, page
    wait_until(lambda: smtp_server.messages_to(address), timeout=30)
    message: Any = smtp_server.messages_to(address)[0]
    assert "Test message from alpha" in message["Subject"]
    with schema_context("alpha"):
        notification = Notification.objects.get(pk=link.group(1))
        assert [d.address for d in notification.deliveries.all()] == [address]
    detail = client.get(f"/console/notifications/{link.group(1)}/")
    assert detail.status_code == 200
    assert address in detail.content.decode()


@pytest.mark.django_db
def test_the_push_key_pair_survives_an_edit_and_cannot_be_disabled(personas: Personas) -> None:
    with schema_context("alpha"):
        before = ProviderConfig.objects.get(channel="push", role="primary", is_active=True)
        keys = (before.settings["vapid_public_key"], decrypt_json(before.secrets_encrypted))
    client = owner(personas.alpha.domain)
    form = {
        "provider": "webpush",
        "setting_subject": "mailto:ops@alpha.test",
        "setting_vapid_public_key": "forged",
        "secret_vapid_private_key": "forged",
    }
    assert client.post("/console/providers/push/primary/", form).status_code == 302
    refused = client.post("/console/providers/push/primary/disable/", follow=True)
    assert "would stop receiving pushes" in refused.content.decode()
    with schema_context("alpha"):
        after = ProviderConfig.objects.get(channel="push", role="primary", is_active=True)
        assert after.settings["subject"] == "mailto:ops@alpha.test"
        assert (after.settings["vapid_public_key"], decrypt_json(after.secrets_encrypted)) == keys


@pytest.mark.django_db
def test_provider_forms_need_csrf(personas: Personas) -> None:
    strict = Client(HTTP_HOST=personas.alpha.domain, enforce_csrf_checks=True)
    strict.login(username="owner@alpha.test", password="pw")
    assert strict.post("/console/providers/sms/primary/", TWILIO_FORM).status_code == 403
    assert (
        strict.post("/console/providers/test/", {"channel": "email", "to": "c@example.com"}).status_code
        == 403
    )
    with schema_context("alpha"):
        assert not ProviderConfig.objects.filter(channel="sms", is_active=True).exists()
        assert not Delivery.objects.filter(address="c@example.com").exists()
