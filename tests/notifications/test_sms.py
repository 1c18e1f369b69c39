"""SMS through Twilio, against a local server that speaks Twilio's Messages API.

The provider sends with the real `twilio` SDK (its HTTP client pointed at the fake by
TWILIO_API_BASE_URL); the fake posts signed status callbacks over HTTP to Herald served by a
real WSGI server on a free port, with the tenant's domain in the Host header, as Twilio would
reach it through a proxy. Every row the tests write is committed (`live_db`), because that
server answers from its own threads and connections.
"""

import http.client
import json
import secrets
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Protocol
from urllib.parse import urlsplit

import pytest
from django.core.handlers.wsgi import WSGIHandler
from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler
from django_tenants.utils import schema_context, tenant_context
from twilio.request_validator import RequestValidator

from notifications import pipeline
from notifications.models import (
    Delivery,
    DeliveryEvent,
    DeliveryStatus,
    Notification,
    ProviderConfig,
    Recipient,
)
from notifications.providers import registry
from notifications.providers.base import Outcome, OutgoingMessage, parse_retry_after
from notifications.providers.twilio_sms import TwilioSmsProvider, rewrite_twilio_url
from tenants.crypto import encrypt_json
from tests.conftest import REPO, Persona, Personas, Process, wait_until
from tests.fakes.smtp_server import free_port
from tests.fakes.twilio_server import CallbackResult, FakeTwilioServer, new_sid

pytestmark = pytest.mark.usefixtures("live_db")


# --- servers ---------------------------------------------------------------------------------


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@dataclass
class Web:
    port: int


@pytest.fixture(scope="module")
def web() -> Iterator[Web]:
    """Herald itself over HTTP on a free port (Twilio's callbacks come over the network)."""
    server = ThreadedWSGIServer(("127.0.0.1", 0), _QuietHandler, allow_reuse_address=True)
    server.set_app(WSGIHandler())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield Web(port=server.server_address[1])
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def fake(twilio_server: FakeTwilioServer, web: Web) -> Iterator[FakeTwilioServer]:
    """The session's fake Twilio (the worker sends to it too), posting callbacks to `web`.

    Callback URLs name http://<tenant>.localhost:8000 (the test settings' public port); the
    fake connects to our server instead and keeps that host in the Host header.
    """
    twilio_server.callback_target = ("127.0.0.1", web.port)
    yield twilio_server
    twilio_server.callback_target = None


@pytest.fixture(autouse=True)
def _twilio_at_the_fake(settings: Any, fake: FakeTwilioServer) -> None:
    settings.TWILIO_API_BASE_URL = fake.url


# --- accounts --------------------------------------------------------------------------------


@dataclass
class Account:
    sid: str
    token: str
    from_number: str

    def provider(self, **settings: str) -> TwilioSmsProvider:
        return TwilioSmsProvider(
            {"from_number": self.from_number, **settings}, {"account_sid": self.sid, "auth_token": self.token}
        )


AccountFactory = Callable[..., Account]


@pytest.fixture
def twilio_account(fake: FakeTwilioServer) -> Iterator[AccountFactory]:
    """Give a tenant its own Twilio account (a ProviderConfig), removed after the test."""
    made: list[tuple[str, int]] = []

    def make(persona: Persona | None = None, role: str = "primary") -> Account:
        sid, token = fake.add_account()
        account = Account(sid, token, from_number=phone())
        if persona is not None:
            with schema_context(persona.tenant.schema_name):
                config = ProviderConfig.objects.create(
                    channel="sms",
                    role=role,
                    provider="twilio",
                    settings={"from_number": account.from_number},
                    secrets_encrypted=encrypt_json({"account_sid": sid, "auth_token": token}),
                )
            made.append((persona.tenant.schema_name, config.pk))
        return account

    yield make
    for schema, pk in made:
        with schema_context(schema):
            ProviderConfig.objects.filter(pk=pk).delete()


def phone() -> str:
    """A fresh number in a US fictional range, so tests never share one."""
    return f"+1555{secrets.randbelow(10**7):07d}"


# --- deliveries ------------------------------------------------------------------------------


@dataclass
class SentSms:
    delivery_id: str
    sid: str
    to: str
    callback_url: str


def new_delivery(persona: Persona, to: str, status: str = DeliveryStatus.SENDING) -> Delivery:
    with schema_context(persona.tenant.schema_name):
        recipient = Recipient.objects.create(external_id=f"u-{uuid.uuid4()}", phone=to)
        notification = Notification.objects.create(
            recipient=recipient, channels=["sms"], body="Your code is 4711"
        )
        return Delivery.objects.create(notification=notification, channel="sms", address=to, status=status)


class Recorded(Protocol):
    def message(self, sid: str) -> Any: ...


def send_sms(persona: Persona, fake: Recorded, text: str = "Your code is 4711") -> SentSms:
    """A delivery sent the way the send task sends it: the tenant's provider from the registry,
    then `sent` with Twilio's message SID."""
    to = phone()
    delivery = new_delivery(persona, to)
    with tenant_context(persona.tenant):
        primary, _ = registry.resolve("sms")
        assert primary is not None
        (outcome,) = primary.build().send_batch([OutgoingMessage(str(delivery.id), "sms", to, text=text)])
        assert outcome.ok, outcome.error
        assert pipeline.transition(
            delivery.id,
            DeliveryStatus.SENT,
            provider=primary.name,
            provider_message_id=outcome.provider_message_id,
        )
    received = fake.message(outcome.provider_message_id)
    return SentSms(str(delivery.id), outcome.provider_message_id, to, received.status_callback)


def state(persona: Persona, delivery_id: str) -> tuple[str, list[tuple[str, str]]]:
    """(status, [(event status, detail)...]) of a delivery."""
    with schema_context(persona.tenant.schema_name):
        delivery = Delivery.objects.get(id=delivery_id)
        events = [
            (e.status, e.detail) for e in DeliveryEvent.objects.filter(delivery=delivery).order_by("id")
        ]
        return delivery.status, events


def send_one(provider: TwilioSmsProvider, persona: Persona, to: str, text: str = "Hello") -> Outcome:
    with tenant_context(persona.tenant):
        (outcome,) = provider.send_batch([OutgoingMessage(str(uuid.uuid4()), "sms", to, text=text)])
    return outcome


# --- sending ---------------------------------------------------------------------------------


def test_it_sends_to_from_body_and_status_callback_and_returns_the_sid(
    fake: FakeTwilioServer, twilio_account: AccountFactory, personas: Personas
) -> None:
    account = twilio_account()
    to = phone()
    delivery_id = str(uuid.uuid4())
    with tenant_context(personas.alpha.tenant):
        (outcome,) = account.provider().send_batch(
            [OutgoingMessage(delivery_id, "sms", to, text="Your code is 4711 ✓")]
        )

    assert outcome.ok, outcome.error
    (received,) = fake.messages_to(to)
    assert received.account_sid == account.sid
    assert received.from_ == account.from_number
    assert received.body == "Your code is 4711 ✓"
    assert received.status_callback == f"http://alpha.localhost:8000/hooks/twilio/status/{delivery_id}"
    assert outcome.provider_message_id == received.sid
    assert received.sid.startswith("SM")
    assert len(received.sid) == 34
    assert outcome.provider == "twilio"
    assert "queued" in outcome.response


def test_a_messaging_service_sends_without_a_from_number(
    fake: FakeTwilioServer, twilio_account: AccountFactory, personas: Personas
) -> None:
    account = twilio_account()
    service = new_sid("MG")
    provider = TwilioSmsProvider(
        {"messaging_service_sid": service}, {"account_sid": account.sid, "auth_token": account.token}
    )
    to = phone()
    outcome = send_one(provider, personas.alpha, to)
    assert outcome.ok, outcome.error
    (received,) = fake.messages_to(to)
    assert received.messaging_service_sid == service
    assert received.from_ == ""


def test_a_batch_shares_one_client_and_one_bad_number_does_not_stop_the_rest(
    fake: FakeTwilioServer, twilio_account: AccountFactory, personas: Personas
) -> None:
    account = twilio_account()
    good, bad, also_good = phone(), phone(), phone()
    fake.fail(bad, 400)
    provider = account.provider()
    with tenant_context(personas.alpha.tenant):
        outcomes = provider.send_batch(
            [OutgoingMessage(str(uuid.uuid4()), "sms", to, text="Hi") for to in (good, bad, also_good)]
        )
    assert [o.ok for o in outcomes] == [True, False, True]
    assert len(fake.messages_to(good)) == len(fake.messages_to(also_good)) == 1
    assert provider.client is None  # the batch's client is closed with its session


def test_an_invalid_number_is_a_permanent_error_with_twilios_message(
    fake: FakeTwilioServer, twilio_account: AccountFactory, personas: Personas
) -> None:
    account = twilio_account()
    outcome = send_one(account.provider(), personas.alpha, "0155 5550 100")
    assert outcome.error is not None
    assert outcome.error.permanent
    assert "400" in outcome.error.reason
    assert "21211" in outcome.error.reason
    assert "The 'To' number 0155 5550 100 is not a valid phone number." in outcome.error.reason
    assert not outcome.error.reason.startswith("Unable to")
    assert fake.messages_to("0155 5550 100") == []


def test_a_rate_limit_is_transient_and_carries_twilios_retry_after(
    fake: FakeTwilioServer, twilio_account: AccountFactory, personas: Personas
) -> None:
    account = twilio_account()
    to = phone()
    fake.fail(to, 429, retry_after=7)
    outcome = send_one(account.provider(), personas.alpha, to)
    assert outcome.error is not None
    assert not outcome.error.permanent
    assert outcome.error.retry_after == 7.0
    assert "429" in outcome.error.reason
    assert "20429" in outcome.error.reason
    # The next try goes through.
    assert send_one(account.provider(), personas.alpha, to).ok
    assert fake.attempts_for(to) == 2


@pytest.mark.parametrize("status", [500, 503])
def test_a_twilio_server_error_is_transient(
    status: int, fake: FakeTwilioServer, twilio_account: AccountFactory, personas: Personas
) -> None:
    account = twilio_account()
    to = phone()
    fake.fail(to, status)
    outcome = send_one(account.provider(), personas.alpha, to)
    assert outcome.error is not None
    assert not outcome.error.permanent
    assert str(status) in outcome.error.reason
    assert outcome.error.retry_after is None


def test_a_wrong_auth_token_is_permanent_and_the_token_is_not_shown(
    fake: FakeTwilioServer, twilio_account: AccountFactory, personas: Personas
) -> None:
    account = twilio_account()
    wrong = secrets.token_hex(16)
    provider = TwilioSmsProvider(
        {"from_number": account.from_number}, {"account_sid": account.sid, "auth_token": wrong}
    )
    to = phone()
    outcome = send_one(provider, personas.alpha, to)
    assert outcome.error is not None
    assert outcome.error.permanent
    assert "401" in outcome.error.reason
    assert "20003" in outcome.error.reason
    assert wrong not in outcome.error.reason + outcome.response
    assert account.token not in outcome.error.reason + outcome.response
    assert fake.messages_to(to) == []


def test_an_unreachable_twilio_is_transient(
    settings: Any, twilio_account: AccountFactory, personas: Personas
) -> None:
    account = twilio_account()
    settings.TWILIO_API_BASE_URL = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    outcome = send_one(account.provider(), personas.alpha, phone())
    assert outcome.error is not None
    assert not outcome.error.permanent
    assert "unreachable" in outcome.error.reason


def test_missing_credentials_fail_every_message_permanently(personas: Personas) -> None:
    provider = TwilioSmsProvider({"from_number": phone()}, {})
    with tenant_context(personas.alpha.tenant):
        outcomes = provider.send_batch(
            [OutgoingMessage(str(uuid.uuid4()), "sms", phone(), text="Hi") for _ in range(2)]
        )
    assert all(o.error is not None and o.error.permanent for o in outcomes)
    assert "account_sid" in outcomes[0].response


def test_the_platform_account_sends_and_is_trusted_when_the_tenant_has_none(
    settings: Any, fake: FakeTwilioServer, personas: Personas
) -> None:
    sid, token = fake.add_account()
    from_number = phone()
    settings.PLATFORM_PROVIDERS = {
        **settings.PLATFORM_PROVIDERS,
        "sms": {
            "provider": "twilio",
            "settings": {"from_number": from_number},
            "secrets": {"account_sid": sid, "auth_token": token},
        },
    }
    sms = send_sms(personas.beta, fake)
    received = fake.message(sms.sid)
    assert received.account_sid == sid
    assert received.from_ == from_number
    assert sms.callback_url.startswith("http://beta.localhost:8000/hooks/twilio/status/")

    assert fake.deliver(sms.sid).status == 200
    assert state(personas.beta, sms.delivery_id)[0] == "delivered"


def test_retry_after_reads_seconds_and_http_dates() -> None:
    assert parse_retry_after("12") == 12.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("Thu, 01 Jan 1970 00:00:00 GMT") == 0.0
    assert rewrite_twilio_url(
        "https://api.twilio.com/2010-04-01/Accounts/AC1/Messages.json", "http://127.0.0.1:9"
    ) == ("http://127.0.0.1:9/2010-04-01/Accounts/AC1/Messages.json")
    assert rewrite_twilio_url("https://example.com/x", "http://127.0.0.1:9") == "https://example.com/x"


# --- status callbacks ------------------------------------------------------------------------


@pytest.fixture
def alpha_sms(fake: FakeTwilioServer, twilio_account: AccountFactory, personas: Personas) -> SentSms:
    twilio_account(personas.alpha)
    return send_sms(personas.alpha, fake)


def test_a_signed_delivered_callback_moves_a_sent_delivery_to_delivered(
    fake: FakeTwilioServer, alpha_sms: SentSms, personas: Personas
) -> None:
    assert state(personas.alpha, alpha_sms.delivery_id)[0] == "sent"
    sent = fake.send_callback(alpha_sms.sid, "sent")
    assert sent.status == 200
    assert sent.json()["result"] == "ignored"
    assert state(personas.alpha, alpha_sms.delivery_id)[0] == "sent"

    delivered = fake.send_callback(alpha_sms.sid, "delivered")
    assert delivered.status == 200, delivered.body
    assert delivered.json() == {"delivery": alpha_sms.delivery_id, "result": "updated", "status": "delivered"}
    status, events = state(personas.alpha, alpha_sms.delivery_id)
    assert status == "delivered"
    assert events[-1][0] == "delivered"
    assert alpha_sms.sid in events[-1][1]


def test_a_forged_callback_is_refused_and_changes_nothing(
    fake: FakeTwilioServer, alpha_sms: SentSms, personas: Personas
) -> None:
    other_url = alpha_sms.callback_url.rsplit("/", 1)[0] + f"/{uuid.uuid4()}"
    forgeries: dict[str, dict[str, Any]] = {
        "no signature": {"signature": ""},
        "a made-up signature": {"signature": "bm90IGEgc2lnbmF0dXJl"},
        "signed with another token": {"auth_token": secrets.token_hex(16)},
        "signed for another URL": {"signed_url": other_url},
    }
    for name, forgery in forgeries.items():
        result = fake.send_callback(alpha_sms.sid, "delivered", **forgery)
        assert result.status == 403, name
        assert result.json()["error"]["code"] == "forbidden"
    # Fields changed after signing (a replay with another status) are refused too.
    params = fake.callback_params(alpha_sms.sid, "delivered")
    signature = _signature(fake, alpha_sms, params)
    tampered = {**params, "MessageStatus": "failed", "SmsStatus": "failed"}
    assert fake.send_callback(alpha_sms.sid, "failed", params=tampered, signature=signature).status == 403

    status, events = state(personas.alpha, alpha_sms.delivery_id)
    assert status == "sent"
    assert [e for e, _ in events][-1] == "sent"


def _signature(fake: FakeTwilioServer, sms: SentSms, params: dict[str, str]) -> str:
    token = fake.accounts[fake.message(sms.sid).account_sid]
    signature: str = RequestValidator(token).compute_signature(sms.callback_url, params)
    return signature


def test_undelivered_is_bounced_with_twilios_error_code(
    fake: FakeTwilioServer, alpha_sms: SentSms, personas: Personas
) -> None:
    result = fake.deliver(alpha_sms.sid, "undelivered", error_code=30003)
    assert result.status == 200
    status, events = state(personas.alpha, alpha_sms.delivery_id)
    assert status == "bounced"
    assert events[-1][0] == "bounced"
    assert "30003" in events[-1][1]
    assert "Unreachable destination handset" in events[-1][1]
    with schema_context("alpha"):
        assert "30003" in Delivery.objects.get(id=alpha_sms.delivery_id).last_error


def test_failed_is_failed_with_twilios_error_code(
    fake: FakeTwilioServer, alpha_sms: SentSms, personas: Personas
) -> None:
    assert fake.send_callback(alpha_sms.sid, "failed", error_code=30008).status == 200
    status, events = state(personas.alpha, alpha_sms.delivery_id)
    assert status == "failed"
    assert "30008" in events[-1][1]


def test_a_repeated_callback_is_a_no_op(
    fake: FakeTwilioServer, alpha_sms: SentSms, personas: Personas
) -> None:
    first = fake.send_callback(alpha_sms.sid, "delivered")
    again = fake.send_callback(alpha_sms.sid, "delivered")
    assert (first.json()["result"], again.json()["result"]) == ("updated", "unchanged")
    status, events = state(personas.alpha, alpha_sms.delivery_id)
    assert status == "delivered"
    assert [e for e, _ in events].count("delivered") == 1


def test_a_callback_for_another_tenants_delivery_is_404(
    fake: FakeTwilioServer, alpha_sms: SentSms, twilio_account: AccountFactory, personas: Personas
) -> None:
    twilio_account(personas.beta)
    beta_sms = send_sms(personas.beta, fake)
    # Signed rightly (alpha's token, the very URL posted to), on alpha's domain, for beta's delivery.
    on_alpha = alpha_sms.callback_url.rsplit("/", 1)[0] + f"/{beta_sms.delivery_id}"
    result = fake.send_callback(alpha_sms.sid, "delivered", url=on_alpha)
    assert result.status == 404
    assert result.json()["error"]["code"] == "not_found"
    assert state(personas.beta, beta_sms.delivery_id)[0] == "sent"
    # ...and beta's own report, on beta's domain, still works.
    assert fake.send_callback(beta_sms.sid, "delivered").status == 200
    assert state(personas.beta, beta_sms.delivery_id)[0] == "delivered"


def test_a_callback_for_another_message_of_the_tenant_changes_nothing(
    fake: FakeTwilioServer, alpha_sms: SentSms, personas: Personas
) -> None:
    other = send_sms(personas.alpha, fake)
    # Twilio's report for `other`'s message, posted (and signed) for alpha_sms's delivery.
    result = fake.send_callback(other.sid, "delivered", url=alpha_sms.callback_url)
    assert result.status == 200
    assert result.json()["result"] == "ignored"
    assert state(personas.alpha, alpha_sms.delivery_id)[0] == "sent"


def test_a_report_that_arrives_before_the_worker_recorded_sent_still_counts(
    fake: FakeTwilioServer, twilio_account: AccountFactory, personas: Personas
) -> None:
    """Twilio can report `delivered` before our worker has written `sent` and the sid."""
    twilio_account(personas.alpha)
    to = phone()
    delivery = new_delivery(personas.alpha, to)  # still `sending`, no sid recorded
    with tenant_context(personas.alpha.tenant):
        primary, _ = registry.resolve("sms")
        assert primary is not None
        (outcome,) = primary.build().send_batch([OutgoingMessage(str(delivery.id), "sms", to, text="Hi")])
    callback_url = fake.message(outcome.provider_message_id).status_callback
    result = fake.send_callback(outcome.provider_message_id, "delivered", url=callback_url)
    assert result.json()["result"] == "updated"
    with schema_context("alpha"):
        stored = Delivery.objects.get(id=delivery.id)
        assert (stored.status, stored.provider_message_id) == ("delivered", outcome.provider_message_id)
    # The worker's own `sent`, arriving late, does not move it back.
    with schema_context("alpha"):
        assert not pipeline.transition(delivery.id, DeliveryStatus.SENT, provider="twilio")


def test_a_callback_signed_with_the_secondary_account_is_trusted(
    fake: FakeTwilioServer, twilio_account: AccountFactory, personas: Personas
) -> None:
    twilio_account(personas.alpha)
    secondary = twilio_account(personas.alpha, role="secondary")
    sms = send_sms(personas.alpha, fake)
    result = fake.send_callback(sms.sid, "delivered", auth_token=secondary.token)
    assert result.status == 200
    assert state(personas.alpha, sms.delivery_id)[0] == "delivered"


def test_junk_is_answered_with_4xx_never_500(fake: FakeTwilioServer, alpha_sms: SentSms, web: Web) -> None:
    base = alpha_sms.callback_url.rsplit("/", 1)[0]
    token = fake.accounts[fake.message(alpha_sms.sid).account_sid]

    def signed(url: str, params: dict[str, str]) -> CallbackResult:
        signature = RequestValidator(token).compute_signature(url, params)
        return fake.post_form(url, params, signature)

    report = {"MessageSid": alpha_sms.sid, "MessageStatus": "delivered"}
    assert signed(f"{base}/not-a-uuid", report).status == 404
    assert signed(f"{base}/{uuid.uuid4()}", report).status == 404
    assert signed(alpha_sms.callback_url, {}).status == 400
    assert signed(alpha_sms.callback_url, {"MessageSid": alpha_sms.sid}).status == 400
    odd = signed(alpha_sms.callback_url, {"MessageSid": alpha_sms.sid, "MessageStatus": "exploded"})
    assert (odd.status, odd.json()["result"]) == (200, "ignored")
    stray = signed(alpha_sms.callback_url, {"MessageSid": "' OR 1=1 --", "MessageStatus": "delivered"})
    assert (stray.status, stray.json()["result"]) == (200, "ignored")
    unsigned_junk = {"MessageSid": "\u0000" * 40, "x" * 300: "y" * 5000}
    assert fake.post_form(alpha_sms.callback_url, unsigned_junk, "").status == 403
    # A host that names no tenant has no deliveries.
    assert (
        fake.post_form(f"http://127.0.0.1:{web.port}/hooks/twilio/status/{uuid.uuid4()}", {}, "x").status
        == 404
    )
    assert http_get(web, alpha_sms.callback_url) == 405
    assert state_of(alpha_sms) == "sent"


def state_of(sms: SentSms) -> str:
    with schema_context("alpha"):
        return Delivery.objects.get(id=sms.delivery_id).status


def http_get(web: Web, url: str) -> int:
    parts = urlsplit(url)
    connection = http.client.HTTPConnection("127.0.0.1", web.port, timeout=10)
    try:
        connection.request("GET", parts.path, headers={"Host": parts.netloc})
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


# --- end to end: API -> real worker -> Twilio -> status callback -> API ----------------------

_used_numbers: set[str] = set()


def us_number() -> tuple[str, str]:
    """(as a backend might send it, E.164) for a fresh valid number in 415-555-01xx style."""
    while True:
        digits = f"{secrets.randbelow(10**4):04d}"
        if digits not in _used_numbers:
            _used_numbers.add(digits)
            return f"+1 415 555 {digits}", f"+1415555{digits}"


def post_sms(persona: Persona, number: str) -> str:
    body = {
        "recipient": {"external_id": f"u-{uuid.uuid4()}", "phone": number},
        "channels": ["sms"],
        "body": "Your code is {{ code }}",
        "data": {"code": "4711"},
        "priority": "high",
    }
    response = persona.client().post(
        "/api/v1/notifications", json.dumps(body), content_type="application/json"
    )
    assert response.status_code == 202, response.content
    url: str = response.json()["url"]
    return url


def shown_when(persona: Persona, url: str, status: str, timeout: float = 40) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        shown: dict[str, Any] = persona.client().get(url).json()
        return shown if shown["status"] == status else None

    result: dict[str, Any] = wait_until(reached, timeout=timeout, interval=0.2)
    return result


@pytest.mark.worker
def test_an_sms_reaches_twilio_through_a_real_worker_and_its_delivery_report_shows_delivered(
    worker: Process, fake: FakeTwilioServer, twilio_account: AccountFactory, personas: Personas
) -> None:
    account = twilio_account(personas.alpha)
    given, e164 = us_number()
    url = post_sms(personas.alpha, given)

    shown = shown_when(personas.alpha, url, "sent")
    (delivery,) = shown["deliveries"]
    assert [e["status"] for e in delivery["events"]] == ["queued", "sending", "sent"]
    assert delivery["provider"] == "twilio"
    (received,) = fake.messages_to(e164)
    assert received.account_sid == account.sid
    assert received.from_ == account.from_number
    assert received.body == "Your code is 4711"
    assert received.status_callback == f"http://alpha.localhost:8000/hooks/twilio/status/{delivery['id']}"
    assert delivery["provider_message_id"] == received.sid

    forged = fake.send_callback(received.sid, "delivered", auth_token=secrets.token_hex(16))
    assert forged.status == 403
    assert personas.alpha.client().get(url).json()["status"] == "sent"

    assert fake.deliver(received.sid).status == 200
    shown = shown_when(personas.alpha, url, "delivered", timeout=5)
    (delivery,) = shown["deliveries"]
    assert [e["status"] for e in delivery["events"]] == ["queued", "sending", "sent", "delivered"]
    assert received.sid in delivery["events"][-1]["detail"]


@pytest.mark.worker
def test_a_twilio_rate_limit_is_retried_after_its_retry_after_then_sent(
    worker: Process, fake: FakeTwilioServer, twilio_account: AccountFactory, personas: Personas
) -> None:
    twilio_account(personas.alpha)
    given, e164 = us_number()
    fake.fail(e164, 429, retry_after=1)
    url = post_sms(personas.alpha, given)

    (delivery,) = shown_when(personas.alpha, url, "sent")["deliveries"]
    assert [e["status"] for e in delivery["events"]] == ["queued", "sending", "queued", "sending", "sent"]
    assert "20429" in delivery["events"][2]["detail"]
    assert [a["outcome"] for a in delivery["attempt_log"]] == ["transient_error", "sent"]
    assert fake.attempts_for(e164) == 2
    assert len(fake.messages_to(e164)) == 1


@pytest.mark.worker
def test_an_invalid_number_at_twilio_fails_at_once_with_twilios_reason(
    worker: Process, fake: FakeTwilioServer, twilio_account: AccountFactory, personas: Personas
) -> None:
    twilio_account(personas.alpha)
    given, e164 = us_number()
    fake.fail(e164, 400, times=5)
    url = post_sms(personas.alpha, given)

    (delivery,) = shown_when(personas.alpha, url, "failed")["deliveries"]
    assert [e["status"] for e in delivery["events"]] == ["queued", "sending", "failed"]
    assert "21211" in delivery["error"]
    assert f"The 'To' number {e164} is not a valid phone number." in delivery["error"]
    assert fake.attempts_for(e164) == 1


@pytest.mark.worker
def test_twilio_errors_fail_over_to_the_tenants_secondary_account(
    worker: Process, fake: FakeTwilioServer, twilio_account: AccountFactory, personas: Personas
) -> None:
    primary = twilio_account(personas.alpha)
    secondary = twilio_account(personas.alpha, role="secondary")
    given, e164 = us_number()
    fake.fail(e164, 500, times=2)
    url = post_sms(personas.alpha, given)

    (delivery,) = shown_when(personas.alpha, url, "sent", timeout=60)["deliveries"]
    (received,) = fake.messages_to(e164)
    assert received.account_sid == secondary.sid != primary.sid
    assert fake.attempts_for(e164) == 3
    assert [a["outcome"] for a in delivery["attempt_log"]] == ["transient_error", "transient_error", "sent"]
    # Twilio reports with the secondary account's token; the hook trusts it.
    assert fake.deliver(received.sid).status == 200
    assert shown_when(personas.alpha, url, "delivered", timeout=5)


# --- make run --------------------------------------------------------------------------------


def test_the_command_line_fake_records_each_message_and_reports_it_delivered(
    tmp_path: Path, settings: Any, web: Web, personas: Personas
) -> None:
    sid, token = new_sid("AC"), secrets.token_hex(16)
    port = free_port()
    record_dir = tmp_path / "sms"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.fakes.twilio_server",
            "--port",
            str(port),
            "--record-dir",
            str(record_dir),
            "--account-sid",
            sid,
            "--auth-token",
            token,
            "--callback-delay",
            "0.2",
            "--callback-target",
            f"127.0.0.1:{web.port}",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        settings.TWILIO_API_BASE_URL = f"http://127.0.0.1:{port}"
        settings.PLATFORM_PROVIDERS = {
            **settings.PLATFORM_PROVIDERS,
            "sms": {
                "provider": "twilio",
                "settings": {"from_number": "+15550000001"},
                "secrets": {"account_sid": sid, "auth_token": token},
            },
        }
        wait_until(lambda: _listening(port), timeout=10)
        sms = send_sms(personas.beta, FakeTwilioServerView(record_dir), text="Arrives in the dev page")
        assert wait_until(lambda: state(personas.beta, sms.delivery_id)[0] == "delivered", timeout=10)
        (record,) = [p for p in record_dir.glob("*.json") if sms.sid in p.name]
        document = json.loads(record.read_text())
        assert document["body"] == "Arrives in the dev page"
        assert document["to"] == sms.to
        assert document["status"] == "delivered"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


class FakeTwilioServerView:
    """Reads what the command-line fake recorded, as `send_sms` reads a FakeTwilioServer."""

    def __init__(self, record_dir: Path) -> None:
        self.record_dir = record_dir

    def message(self, sid: str) -> Any:
        (path,) = self.record_dir.glob(f"*-{sid}.json")
        return SimpleNamespace(status_callback=json.loads(path.read_text())["status_callback"])
