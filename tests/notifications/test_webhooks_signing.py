"""The webhook signature a tenant's backend checks, and the URLs a tenant may register."""

import time

import pytest
import requests
from django.conf import settings
from django.core.exceptions import ValidationError
from django.test import override_settings

from notifications.webhooks.signing import SignatureError, check, sign, verify
from notifications.webhooks.transport import guarded_session, validate_url
from tests.fakes.webhook_receiver import WebhookReceiver

BODY = b'{"id":"evt_1","type":"delivery.sent","data":{"status":"sent"}}'
SECRET = "hwsec_test-secret"


def production_webhooks() -> dict[str, object]:
    return {**settings.WEBHOOKS, "allow_local": False}


def test_a_signed_payload_verifies() -> None:
    header = sign(BODY, [SECRET])
    assert header.startswith("t=")
    assert verify(BODY, header, SECRET)
    assert verify(BODY.decode(), header, SECRET)  # the raw body as text works as well


def test_a_tampered_body_does_not_verify() -> None:
    header = sign(BODY, [SECRET])
    assert not verify(BODY.replace(b"sent", b"lost"), header, SECRET)
    with pytest.raises(SignatureError, match="no signature matches"):
        check(BODY + b" ", header, SECRET)


def test_another_secret_does_not_verify() -> None:
    assert not verify(BODY, sign(BODY, ["hwsec_someone-else"]), SECRET)


def test_a_stale_or_future_timestamp_does_not_verify() -> None:
    old = sign(BODY, [SECRET], timestamp=int(time.time()) - 301)
    assert not verify(BODY, old, SECRET)
    with pytest.raises(SignatureError, match="more than 300 s"):
        check(BODY, old, SECRET)
    assert verify(BODY, old, SECRET, tolerance=600)
    assert not verify(BODY, sign(BODY, [SECRET], timestamp=int(time.time()) + 400), SECRET)


def test_a_header_with_a_changed_timestamp_does_not_verify() -> None:
    header = sign(BODY, [SECRET], timestamp=1_800_000_000)
    moved = header.replace("t=1800000000", "t=1800000001")
    assert verify(BODY, header, SECRET, now=1_800_000_000)
    assert not verify(BODY, moved, SECRET, now=1_800_000_000)


@pytest.mark.parametrize("header", ["", "garbage", "t=abc,v1=00", "v1=00", "t=1800000000"])
def test_a_malformed_header_does_not_verify(header: str) -> None:
    assert not verify(BODY, header, SECRET, now=1_800_000_000)


def test_during_a_rotation_either_secret_verifies() -> None:
    header = sign(BODY, ["hwsec_new", "hwsec_old"])
    assert header.count("v1=") == 2
    assert verify(BODY, header, "hwsec_new")
    assert verify(BODY, header, "hwsec_old")
    assert not verify(BODY, header, "hwsec_other")


@override_settings(WEBHOOKS=production_webhooks())
@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://example.com/hooks", "must start with https://"),
        ("http://localhost:8000/hooks", "must start with https://"),
        ("https://localhost/hooks", "not a public host name"),
        ("https://redis.internal/hooks", "not a public host name"),
        ("https://10.0.0.5/hooks", "private or reserved address"),
        ("https://169.254.169.254/latest/meta-data", "private or reserved address"),
        ("https://[::ffff:127.0.0.1]/hooks", "private or reserved address"),
        ("https://[fd00::1]/hooks", "private or reserved address"),
        ("https://intranet/hooks", "not a public host name"),
        ("https://user:pw@example.com/hooks", "user name or password"),
        ("ftp://example.com/hooks", "full URL"),
        ("https://example.com/hooks#top", "fragment"),
        ("", "Enter the URL"),
    ],
)
def test_in_production_a_url_must_be_https_and_public(url: str, problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        validate_url(url)


@override_settings(WEBHOOKS=production_webhooks())
def test_in_production_a_public_https_url_is_accepted() -> None:
    assert (
        validate_url(" https://hooks.example.com:8443/herald?x=1 ")
        == "https://hooks.example.com:8443/herald?x=1"
    )


def test_in_development_http_is_accepted_for_this_machine_only() -> None:
    assert validate_url("http://127.0.0.1:9000/hooks") == "http://127.0.0.1:9000/hooks"
    assert validate_url("http://localhost:9000/hooks")
    with pytest.raises(ValidationError, match="https://"):
        validate_url("http://example.com/hooks")


@override_settings(WEBHOOKS=production_webhooks())
@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_in_production_no_request_reaches_a_private_address_whatever_the_url_says(host: str) -> None:
    receiver = WebhookReceiver().start()
    try:
        with pytest.raises(requests.ConnectionError, match="private or reserved address"):
            guarded_session().post(f"http://{host}:{receiver.port}/hooks", data=b"{}", timeout=2)
        assert receiver.received == []
    finally:
        receiver.stop()
