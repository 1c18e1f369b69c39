"""Web push against a local push service that verifies VAPID and decrypts what it receives,
and the end-user endpoints a browser registers its subscription with."""

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from django.test import Client
from py_vapid import Vapid02
from py_vapid.jwt import sign as sign_jwt

from notifications.links import recipient_token
from notifications.models import ProviderConfig, PushSubscription, Recipient
from notifications.providers import registry
from notifications.providers.base import Outcome, OutgoingMessage
from notifications.providers.webpush import WebPushProvider
from notifications.push.keys import ensure_vapid_keys
from tenants.crypto import decrypt_json
from tenants.schemas import use_public, use_tenant
from tests.conftest import Persona, Personas, Process, wait_until
from tests.fakes.webpush_server import FakePushService, FakeSubscription, b64url, b64url_decode, free_port


@pytest.fixture(autouse=True)
def _database(request: pytest.FixtureRequest) -> None:
    """A rolled-back transaction per test; the worker tests commit instead (live_db), so the
    worker process sees their rows."""
    if request.node.get_closest_marker("worker") is None:
        request.getfixturevalue("db")


@pytest.fixture(scope="module")
def push_service() -> Iterator[FakePushService]:
    service = FakePushService().start()
    yield service
    service.stop()


@pytest.fixture
def alpha(personas: Personas) -> Persona:
    """Work inside alpha's schema (as the send task does)."""
    use_tenant(personas.alpha.tenant)
    return personas.alpha


def new_recipient() -> Recipient:
    return Recipient.objects.create(external_id=f"u-{uuid.uuid4()}")


def subscribe(recipient: Recipient, sub: FakeSubscription) -> PushSubscription:
    return PushSubscription.objects.create(
        recipient=recipient, endpoint=sub.endpoint, p256dh=sub.p256dh, auth=sub.auth
    )


def message(recipient: Recipient, **changes: Any) -> OutgoingMessage:
    fields: dict[str, Any] = {
        "delivery_id": str(uuid.uuid4()),
        "channel": "push",
        "to": str(recipient.id),
        "subject": "Your order shipped",
        "text": "It arrives on Tuesday.",
        "priority": "normal",
        "data": {"url": "https://shop.example/orders/42", "order": 42},
        **changes,
    }
    return OutgoingMessage(**fields)


def send(*messages: OutgoingMessage) -> list[Outcome]:
    """As the send task does: the tenant's push provider from the registry."""
    primary, _ = registry.resolve("push")
    assert primary is not None
    assert primary.name == "webpush"
    return primary.build().send_batch(list(messages))


def send_one(msg: OutgoingMessage) -> Outcome:
    (outcome,) = send(msg)
    return outcome


# --- sending ---------------------------------------------------------------------------------


def test_the_push_service_decrypts_the_title_body_and_url(
    alpha: Persona, push_service: FakePushService
) -> None:
    recipient = new_recipient()
    sub = push_service.new_subscription()
    subscribe(recipient, sub)
    msg = message(recipient)

    outcome = send_one(msg)

    assert outcome.ok, outcome.error
    (push,) = push_service.received(sub)
    assert push.json() == {
        "title": "Your order shipped",
        "body": "It arrives on Tuesday.",
        "url": "https://shop.example/orders/42",
        "data": {"order": 42},
        "delivery_id": msg.delivery_id,
    }
    # The push service's message URL identifies the message.
    assert outcome.provider_message_id == push.location
    assert outcome.provider == "webpush"
    assert PushSubscription.objects.get(endpoint=sub.endpoint).last_used_at is not None


def test_it_signs_with_the_tenants_own_vapid_key(alpha: Persona, push_service: FakePushService) -> None:
    recipient = new_recipient()
    sub = push_service.new_subscription()
    subscribe(recipient, sub)

    assert send_one(message(recipient)).ok

    public_key, config = ensure_vapid_keys()
    (push,) = push_service.received(sub)
    assert push.vapid_key == public_key
    assert push.claims["aud"] == push_service.origin
    assert push.claims["sub"].startswith("mailto:")
    # Stored as a push provider of the tenant, the private key encrypted, never in clear.
    assert (config.channel, config.provider) == ("push", "webpush")
    private_key = decrypt_json(config.secrets_encrypted)["vapid_private_key"]
    assert private_key not in config.secrets_encrypted
    assert private_key not in json.dumps(config.settings)


def test_each_tenant_has_its_own_vapid_keys(personas: Personas) -> None:
    use_tenant(personas.alpha.tenant)
    alpha_key, _ = ensure_vapid_keys()
    assert ensure_vapid_keys()[0] == alpha_key  # made once
    assert ProviderConfig.objects.filter(channel="push", provider="webpush").count() == 1
    use_tenant(personas.beta.tenant)
    beta_key, _ = ensure_vapid_keys()
    assert beta_key != alpha_key
    assert len(b64url_decode(beta_key)) == 65  # an uncompressed P-256 point: applicationServerKey


def test_a_subscription_made_with_another_vapid_key_is_refused_permanently(
    alpha: Persona, push_service: FakePushService
) -> None:
    recipient = new_recipient()
    other_key = b64url(b"\x04" + b"\x01" * 64)  # not this tenant's applicationServerKey
    sub = push_service.new_subscription(application_server_key=other_key)
    subscribe(recipient, sub)

    outcome = send_one(message(recipient))

    assert outcome.error is not None
    assert outcome.error.permanent
    assert "403" in outcome.error.reason
    assert push_service.attempts(sub) == [403]
    assert push_service.received(sub) == []


@pytest.mark.parametrize(
    ("priority", "urgency", "ttl"),
    [
        ("critical", "high", 3600),
        ("high", "high", 43200),
        ("normal", "normal", 86400),
        ("bulk", "low", 259200),
    ],
)
def test_ttl_and_urgency_follow_the_priority(
    alpha: Persona, push_service: FakePushService, priority: str, urgency: str, ttl: int
) -> None:
    recipient = new_recipient()
    sub = push_service.new_subscription()
    subscribe(recipient, sub)

    assert send_one(message(recipient, priority=priority)).ok

    (push,) = push_service.received(sub)
    assert (push.urgency, push.ttl) == (urgency, ttl)


@pytest.mark.parametrize("status", [404, 410])
def test_a_gone_subscription_is_deleted_and_the_delivery_fails_permanently(
    alpha: Persona, push_service: FakePushService, status: int
) -> None:
    recipient = new_recipient()
    sub = push_service.new_subscription()
    subscribe(recipient, sub)
    push_service.answer(sub, status)

    outcome = send_one(message(recipient))

    assert outcome.error is not None
    assert outcome.error.permanent
    assert outcome.error.reason == "no live push subscription"
    assert str(status) in outcome.response
    assert not PushSubscription.objects.filter(endpoint=sub.endpoint).exists()


def test_a_recipient_with_one_gone_and_one_live_subscription_still_gets_it(
    alpha: Persona, push_service: FakePushService
) -> None:
    recipient = new_recipient()
    gone, live = push_service.new_subscription(), push_service.new_subscription()
    subscribe(recipient, gone)
    subscribe(recipient, live)
    push_service.answer(gone, 410)

    outcome = send_one(message(recipient))

    assert outcome.ok, outcome.error
    assert len(push_service.received(live)) == 1
    assert push_service.attempts(gone) == [410]
    assert "accepted by 1 of 2" in outcome.response
    assert list(PushSubscription.objects.filter(recipient=recipient).values_list("endpoint", flat=True)) == [
        live.endpoint
    ]


def test_a_fresh_vapid_token_is_signed_for_each_push_service(
    alpha: Persona, push_service: FakePushService
) -> None:
    # pywebpush writes `aud` into the claims dict it is given: a reused dict would carry the
    # first service's origin to the second, which must refuse it.
    other_service = FakePushService().start()
    try:
        recipient = new_recipient()
        here, there = push_service.new_subscription(), other_service.new_subscription()
        subscribe(recipient, here)
        subscribe(recipient, there)

        assert send_one(message(recipient)).ok

        assert push_service.attempts(here) == [201]
        assert other_service.attempts(there) == [201]
        assert other_service.received(there)[0].claims["aud"] == other_service.origin
    finally:
        other_service.stop()


def test_a_413_from_the_push_service_is_permanent(alpha: Persona, push_service: FakePushService) -> None:
    recipient = new_recipient()
    sub = push_service.new_subscription()
    subscribe(recipient, sub)
    push_service.answer(sub, 413)

    outcome = send_one(message(recipient))

    assert outcome.error is not None
    assert outcome.error.permanent
    assert "413" in outcome.error.reason
    assert PushSubscription.objects.filter(endpoint=sub.endpoint).exists()


def test_a_429_is_transient_and_carries_the_retry_after(
    alpha: Persona, push_service: FakePushService
) -> None:
    recipient = new_recipient()
    sub = push_service.new_subscription()
    subscribe(recipient, sub)
    push_service.answer(sub, 429, retry_after="17")

    outcome = send_one(message(recipient))

    assert outcome.error is not None
    assert not outcome.error.permanent
    assert outcome.error.retry_after == 17
    assert "429" in outcome.error.reason
    assert PushSubscription.objects.filter(endpoint=sub.endpoint).exists()
    assert send_one(message(recipient)).ok  # the next try goes through


def test_a_push_service_error_or_outage_is_transient(alpha: Persona, push_service: FakePushService) -> None:
    recipient = new_recipient()
    sub = push_service.new_subscription()
    subscribe(recipient, sub)
    push_service.answer(sub, 500)

    outcome = send_one(message(recipient))
    assert outcome.error is not None
    assert not outcome.error.permanent
    assert "500" in outcome.error.reason

    other = new_recipient()
    PushSubscription.objects.create(
        recipient=other,
        endpoint=f"http://127.0.0.1:{free_port()}/push/nobody-listens",
        p256dh=sub.p256dh,
        auth=sub.auth,
    )
    outcome = send_one(message(other))
    assert outcome.error is not None
    assert not outcome.error.permanent
    assert "unreachable" in outcome.error.reason


def test_a_payload_over_the_limit_is_refused_before_sending(
    alpha: Persona, push_service: FakePushService
) -> None:
    recipient = new_recipient()
    sub = push_service.new_subscription()
    subscribe(recipient, sub)
    limit = WebPushProvider.max_plaintext_bytes
    empty = len(WebPushProvider().payload(message(recipient, text="")))

    outcome = send_one(message(recipient, text="x" * (limit - empty + 1)))

    assert outcome.error is not None
    assert outcome.error.permanent
    assert f"push payload is {limit + 1} bytes" in outcome.error.reason
    assert push_service.attempts(sub) == []  # never sent

    # Exactly at the limit it fits the 4096 bytes a push service takes (the fake enforces that).
    outcome = send_one(message(recipient, text="x" * (limit - empty)))
    assert outcome.ok, outcome.error
    (push,) = push_service.received(sub)
    assert push.size == 4096


def test_the_limit_counts_bytes_not_characters(alpha: Persona, push_service: FakePushService) -> None:
    recipient = new_recipient()
    subscribe(recipient, push_service.new_subscription())
    text = "é" * 2500  # 2,500 characters, 5,000 bytes in UTF-8

    outcome = send_one(message(recipient, text=text))

    assert outcome.error is not None
    assert outcome.error.permanent
    assert "bytes" in outcome.error.reason


def test_a_recipient_without_subscriptions_fails_permanently(alpha: Persona) -> None:
    outcome = send_one(message(new_recipient()))

    assert outcome.error is not None
    assert outcome.error.permanent
    assert outcome.error.reason == "recipient has no push subscription"


def test_one_batch_sends_each_message_to_its_own_recipient(
    alpha: Persona, push_service: FakePushService
) -> None:
    ana, bo = new_recipient(), new_recipient()
    ana_sub, bo_sub = push_service.new_subscription(), push_service.new_subscription()
    subscribe(ana, ana_sub)
    subscribe(bo, bo_sub)

    outcomes = send(message(ana, subject="For Ana"), message(bo, subject="For Bo"), message(new_recipient()))

    assert [o.ok for o in outcomes] == [True, True, False]
    assert [p.json()["title"] for p in push_service.received(ana_sub)] == ["For Ana"]
    assert [p.json()["title"] for p in push_service.received(bo_sub)] == ["For Bo"]


# --- the end user's endpoints ----------------------------------------------------------------


def end_user(persona: Persona) -> tuple[Recipient, str]:
    """A recipient of `persona`'s tenant and a token for them, minted in that tenant."""
    use_tenant(persona.tenant)
    recipient = new_recipient()
    token = recipient_token(str(recipient.id))
    use_public()
    return recipient, token


def as_end_user(persona: Persona, token: str | None) -> Client:
    if token is None:
        return Client(HTTP_HOST=persona.domain)
    return Client(HTTP_HOST=persona.domain, HTTP_AUTHORIZATION=f"Recipient {token}")


def post_subscription(client: Client, body: Any) -> Any:
    return client.post("/u/push/subscriptions", json.dumps(body), content_type="application/json")


@pytest.fixture
def local_push_allowed(settings: Any) -> None:
    settings.WEBPUSH_ALLOW_LOCAL_HTTP = True


def test_the_vapid_public_key_is_public_and_the_tenants_own(personas: Personas) -> None:
    response = Client(HTTP_HOST=personas.alpha.domain).get("/u/push/vapid-public-key")
    assert response.status_code == 200
    key = response.json()["public_key"]
    use_tenant(personas.alpha.tenant)
    assert key == ensure_vapid_keys()[0]
    use_public()
    beta_key = Client(HTTP_HOST=personas.beta.domain).get("/u/push/vapid-public-key").json()["public_key"]
    assert beta_key != key
    assert response["Access-Control-Allow-Origin"] == "*"


def test_push_endpoints_are_not_served_on_a_host_without_tenant(personas: Personas) -> None:
    assert Client(HTTP_HOST="127.0.0.1").get("/u/push/vapid-public-key").status_code == 404


def test_a_browser_registers_its_subscription_and_a_repeat_updates_it(
    personas: Personas, push_service: FakePushService, local_push_allowed: None
) -> None:
    recipient, token = end_user(personas.alpha)
    sub = push_service.new_subscription()
    client = as_end_user(personas.alpha, token)

    created = post_subscription(client, sub.as_json())
    assert created.status_code == 201, created.content
    assert created.json()["endpoint"] == sub.endpoint

    renewed = push_service.new_subscription()  # new keys, same endpoint (the browser renewed them)
    again = post_subscription(client, {**sub.as_json(), "keys": renewed.as_json()["keys"]})
    assert again.status_code == 200, again.content
    assert again.json()["id"] == created.json()["id"]

    use_tenant(personas.alpha.tenant)
    (stored,) = PushSubscription.objects.filter(endpoint=sub.endpoint)
    assert stored.recipient_id == recipient.id
    assert (stored.p256dh, stored.auth) == (renewed.p256dh, renewed.auth)


def test_a_browser_that_signs_in_as_someone_else_moves_its_subscription(
    personas: Personas, push_service: FakePushService, local_push_allowed: None
) -> None:
    _, first_token = end_user(personas.alpha)
    second, second_token = end_user(personas.alpha)
    sub = push_service.new_subscription()
    assert post_subscription(as_end_user(personas.alpha, first_token), sub.as_json()).status_code == 201
    assert post_subscription(as_end_user(personas.alpha, second_token), sub.as_json()).status_code == 200
    use_tenant(personas.alpha.tenant)
    assert PushSubscription.objects.get(endpoint=sub.endpoint).recipient_id == second.id


def test_a_bad_subscription_is_refused_naming_each_field(personas: Personas) -> None:
    _, token = end_user(personas.alpha)
    response = post_subscription(
        as_end_user(personas.alpha, token),
        {"endpoint": "ftp://push.example/x", "keys": {"p256dh": "c2hvcnQ", "auth": "not base64!"}},
    )
    assert response.status_code == 400
    fields = response.json()["error"]["fields"]
    assert set(fields) == {"endpoint", "keys.p256dh", "keys.auth"}
    assert "https" in fields["endpoint"][0]
    assert "65" in fields["keys.p256dh"][0]

    missing = post_subscription(as_end_user(personas.alpha, token), {"endpoint": "https://push.example/x"})
    assert missing.status_code == 400
    assert set(missing.json()["error"]["fields"]) == {"keys"}


def test_an_auth_secret_of_the_wrong_length_is_refused(
    personas: Personas, push_service: FakePushService
) -> None:
    _, token = end_user(personas.alpha)
    body = push_service.new_subscription().as_json()
    body["endpoint"] = "https://push.example/abc"
    body["keys"]["auth"] = b64url(b"\x00" * 12)
    response = post_subscription(as_end_user(personas.alpha, token), body)
    assert response.status_code == 400
    assert response.json()["error"]["fields"]["keys.auth"] == ["decodes to 12 bytes; the auth secret is 16"]


def test_a_local_http_endpoint_is_refused_unless_allowed(
    personas: Personas, push_service: FakePushService, settings: Any
) -> None:
    _, token = end_user(personas.alpha)
    client = as_end_user(personas.alpha, token)
    settings.WEBPUSH_ALLOW_LOCAL_HTTP = False
    settings.DEBUG = False
    refused = post_subscription(client, push_service.new_subscription().as_json())
    assert refused.status_code == 400
    assert set(refused.json()["error"]["fields"]) == {"endpoint"}

    settings.WEBPUSH_ALLOW_LOCAL_HTTP = True
    assert post_subscription(client, push_service.new_subscription().as_json()).status_code == 201
    remote_http = {**push_service.new_subscription().as_json(), "endpoint": "http://push.example/x"}
    assert post_subscription(client, remote_http).status_code == 400  # only this machine, never plain http


@pytest.mark.parametrize("token_of", ["nobody", "garbage", "beta"])
def test_registering_needs_a_recipient_token_of_this_tenant(
    personas: Personas, push_service: FakePushService, local_push_allowed: None, token_of: str
) -> None:
    token = {"nobody": None, "garbage": "not-a-token", "beta": end_user(personas.beta)[1]}[token_of]
    sub = push_service.new_subscription()

    response = post_subscription(as_end_user(personas.alpha, token), sub.as_json())

    assert response.status_code in (401, 403)
    assert "token" in response.json()["error"]["message"]
    use_tenant(personas.alpha.tenant)
    assert not PushSubscription.objects.filter(endpoint=sub.endpoint).exists()


def test_a_browser_removes_its_own_subscription_only(
    personas: Personas, push_service: FakePushService, local_push_allowed: None
) -> None:
    _, owner_token = end_user(personas.alpha)
    _, other_token = end_user(personas.alpha)
    sub = push_service.new_subscription()
    assert post_subscription(as_end_user(personas.alpha, owner_token), sub.as_json()).status_code == 201

    def delete(token: str) -> Any:
        return as_end_user(personas.alpha, token).delete(
            "/u/push/subscriptions", json.dumps({"endpoint": sub.endpoint}), content_type="application/json"
        )

    assert delete(other_token).status_code == 404
    use_tenant(personas.alpha.tenant)
    assert PushSubscription.objects.filter(endpoint=sub.endpoint).exists()
    use_public()
    assert delete(owner_token).status_code == 204
    use_tenant(personas.alpha.tenant)
    assert not PushSubscription.objects.filter(endpoint=sub.endpoint).exists()


def test_a_cors_preflight_is_answered_without_a_token(personas: Personas) -> None:
    response = Client(HTTP_HOST=personas.alpha.domain).options(
        "/u/push/subscriptions",
        HTTP_ORIGIN="https://app.alpha.example",
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="authorization, content-type",
    )
    assert response.status_code == 200
    assert response["Access-Control-Allow-Origin"] == "*"
    assert "authorization" in response["Access-Control-Allow-Headers"].lower()
    assert "POST" in response["Access-Control-Allow-Methods"]


def test_the_service_worker_and_snippet_are_served_as_javascript(personas: Personas) -> None:
    client = Client(HTTP_HOST=personas.alpha.domain)
    worker = client.get("/u/push/herald-sw.js")
    assert worker.status_code == 200
    assert worker["Content-Type"].startswith("application/javascript")
    assert worker["Service-Worker-Allowed"] == "/"
    assert b'addEventListener("push"' in worker.content
    assert b'addEventListener("notificationclick"' in worker.content

    snippet = client.get("/u/push/herald-push.js")
    assert snippet.status_code == 200
    assert snippet["Content-Type"].startswith("application/javascript")
    assert b"HeraldPush" in snippet.content

    demo = client.get("/u/push/demo/?token=abc")
    assert demo.status_code == 200
    assert b'src="/u/push/herald-push.js"' in demo.content


# --- the local push service itself: its checks are what make the tests above mean something ----


def vapid_header(claims: dict[str, Any], signer: Vapid02, announced: Vapid02 | None = None) -> str:
    """`vapid t=<JWT signed by signer>, k=<announced's public key>` (the signer's by default)."""
    token = sign_jwt(claims, signer.private_key)  # py_vapid's ES256 JWT, without its claim checks
    public = (announced or signer).public_key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return f"vapid t={token}, k={b64url(public)}"


def new_vapid() -> Vapid02:
    vapid = Vapid02()
    vapid.generate_keys()
    return vapid


@pytest.mark.parametrize(
    ("case", "status"),
    [("missing", 401), ("other_key", 403), ("expired", 403), ("wrong_audience", 403), ("no_subject", 403)],
)
def test_the_push_service_refuses_a_push_without_a_valid_vapid_token(
    push_service: FakePushService, case: str, status: int
) -> None:
    sub = push_service.new_subscription()
    signer = new_vapid()
    claims: dict[str, Any] = {
        "sub": "mailto:ops@example.com",
        "aud": push_service.origin,
        "exp": int(time.time()) + 600,
    }
    headers = {"TTL": "60", "Content-Encoding": "aes128gcm"}
    if case == "other_key":
        headers["Authorization"] = vapid_header(claims, signer, announced=new_vapid())
    elif case == "expired":
        headers["Authorization"] = vapid_header({**claims, "exp": int(time.time()) - 5}, signer)
    elif case == "wrong_audience":
        headers["Authorization"] = vapid_header({**claims, "aud": "https://push.example.com"}, signer)
    elif case == "no_subject":
        headers["Authorization"] = vapid_header({**claims, "sub": ""}, signer)
    response = requests.post(sub.endpoint, data=b"\0" * 120, headers=headers, timeout=5)
    assert response.status_code == status, response.text
    assert push_service.received(sub) == []

    headers["Authorization"] = vapid_header(claims, signer)  # the same push, properly signed,
    response = requests.post(sub.endpoint, data=b"\0" * 120, headers=headers, timeout=5)
    assert response.status_code == 400  # passes VAPID and fails only to decrypt (it is zeros)


# --- end to end: API -> database -> broker -> real worker -> the local push service ----------


def register_through_the_endpoint(
    persona: Persona, push_service: FakePushService
) -> tuple[str, FakeSubscription]:
    """A recipient whose browser registered a subscription of the local push service."""
    recipient, token = end_user(persona)
    sub = push_service.new_subscription()
    response = post_subscription(as_end_user(persona, token), sub.as_json())
    assert response.status_code == 201, response.content
    return recipient.external_id, sub


def notify(persona: Persona, external_id: str, **changes: Any) -> str:
    body = {
        "recipient": {"external_id": external_id},
        "channels": ["push"],
        "subject": "Your order shipped",
        "body": "Hello {{ name }}, it arrives on Tuesday.",
        "url": "https://shop.example/orders/42",
        "data": {"name": "Ana"},
        "priority": "critical",
        **changes,
    }
    response = persona.client().post(
        "/api/v1/notifications", json.dumps(body), content_type="application/json"
    )
    assert response.status_code == 202, response.content
    url: str = response.json()["url"]
    return url


def wait_for_status(persona: Persona, url: str, status: str, timeout: float = 30) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        shown: dict[str, Any] = persona.client().get(url).json()
        return shown if shown["status"] == status else None

    result: dict[str, Any] = wait_until(reached, timeout=timeout, interval=0.2)
    return result


@pytest.mark.worker
@pytest.mark.usefixtures("live_db", "local_push_allowed")
def test_a_push_notification_goes_through_a_real_worker_to_the_push_service(
    worker: Process, personas: Personas, push_service: FakePushService
) -> None:
    external_id, sub = register_through_the_endpoint(personas.alpha, push_service)

    url = notify(personas.alpha, external_id)

    shown = wait_for_status(personas.alpha, url, "sent")
    (delivery,) = shown["deliveries"]
    assert [e["status"] for e in delivery["events"]] == ["queued", "sending", "sent"]
    assert delivery["provider"] == "webpush"
    (push,) = push_service.received(sub)
    payload = push.json()
    assert (payload["title"], payload["body"]) == ("Your order shipped", "Hello Ana, it arrives on Tuesday.")
    assert payload["url"] == "https://shop.example/orders/42"
    assert payload["delivery_id"] == delivery["id"]
    assert (push.urgency, push.ttl) == ("high", 3600)  # critical
    assert delivery["provider_message_id"] == push.location
    (attempt,) = delivery["attempt_log"]
    assert attempt["outcome"] == "sent"
    assert "accepted by 1 of 1" in attempt["response"]


@pytest.mark.worker
@pytest.mark.usefixtures("live_db", "local_push_allowed")
def test_a_410_through_a_real_worker_removes_the_subscription_and_fails_the_delivery(
    worker: Process, personas: Personas, push_service: FakePushService
) -> None:
    external_id, sub = register_through_the_endpoint(personas.alpha, push_service)
    push_service.answer(sub, 410)

    url = notify(personas.alpha, external_id)

    shown = wait_for_status(personas.alpha, url, "failed")
    (delivery,) = shown["deliveries"]
    assert [e["status"] for e in delivery["events"]] == ["queued", "sending", "failed"]
    assert delivery["error"].endswith("no live push subscription")
    assert push_service.attempts(sub) == [410]
    use_tenant(personas.alpha.tenant)
    assert not PushSubscription.objects.filter(endpoint=sub.endpoint).exists()


@pytest.mark.worker
@pytest.mark.usefixtures("live_db", "local_push_allowed")
def test_a_429_through_a_real_worker_is_retried_then_sent(
    worker: Process, personas: Personas, push_service: FakePushService
) -> None:
    external_id, sub = register_through_the_endpoint(personas.alpha, push_service)
    push_service.answer(sub, 429, retry_after="1")

    url = notify(personas.alpha, external_id)

    shown = wait_for_status(personas.alpha, url, "sent", timeout=40)
    (delivery,) = shown["deliveries"]
    assert [e["status"] for e in delivery["events"]] == ["queued", "sending", "queued", "sending", "sent"]
    assert "429" in delivery["events"][2]["detail"]
    assert [a["outcome"] for a in delivery["attempt_log"]] == ["transient_error", "sent"]
    assert push_service.attempts(sub) == [429, 201]
    assert len(push_service.received(sub)) == 1
