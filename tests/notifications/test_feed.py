"""The in-app feed over REST, as the tenant's backend and the end user meet it, and its provider.

Personas: alpha's backend (API key) and alpha's end users (recipient tokens); beta, whose
tokens must be worthless on alpha's domain; an outsider with a forged or expired token.
"""

import json
import time
import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.core import signing
from django.test import Client
from django.utils import timezone
from django_tenants.utils import schema_context

from notifications import links
from notifications.models import Channel, Delivery, FeedStatus, InAppMessage, Notification, Recipient
from notifications.providers.base import OutgoingMessage
from notifications.providers.inapp import InAppFeedProvider
from tests.conftest import Persona, Personas

pytestmark = pytest.mark.django_db


# --- helpers ----------------------------------------------------------------------------------


def new_recipient(schema: str = "alpha") -> Recipient:
    with schema_context(schema):
        return Recipient.objects.create(external_id=f"u-{uuid.uuid4()}")


def add_item(
    recipient: Recipient, title: str, status: str = FeedStatus.UNREAD, age: int = 0, schema: str = "alpha"
) -> InAppMessage:
    """An item `age` minutes old (the feed is ordered by time)."""
    with schema_context(schema):
        return InAppMessage.objects.create(
            recipient=recipient,
            title=title,
            body=f"body of {title}",
            status=status,
            created_at=timezone.now() - timedelta(minutes=age),
        )


def token_for(recipient: Recipient, schema: str = "alpha") -> str:
    with schema_context(schema):
        return links.recipient_token(str(recipient.id))


def end_user(persona: Persona, token: str, host: str | None = None) -> Client:
    return Client(HTTP_HOST=host or persona.domain, HTTP_AUTHORIZATION=f"Recipient {token}")


def patch(client: Client, path: str, body: Any) -> Any:
    return client.patch(path, data=json.dumps(body), content_type="application/json")


def feed_url(recipient: Recipient) -> str:
    return f"/api/v1/recipients/{recipient.external_id}/feed"


def titles(response: Any) -> list[str]:
    assert response.status_code == 200, response.content
    return [item["title"] for item in response.json()["results"]]


# --- the tenant's backend ---------------------------------------------------------------------


def test_the_backend_lists_a_recipients_feed_newest_first_with_badge_counts(personas: Personas) -> None:
    ana = new_recipient()
    add_item(ana, "oldest", age=30)
    add_item(ana, "read one", status=FeedStatus.READ, age=20)
    add_item(ana, "archived one", status=FeedStatus.ARCHIVED, age=15)
    add_item(ana, "newest", age=1)
    add_item(new_recipient(), "someone else's")

    response = personas.alpha.client().get(feed_url(ana))

    assert titles(response) == ["newest", "read one", "oldest"]
    assert response.json()["counts"] == {"unread": 2, "total": 3}
    item = response.json()["results"][0]
    assert set(item) == {"id", "title", "body", "url", "data", "status", "created_at", "read_at"}
    assert item["body"] == "body of newest"
    assert item["status"] == "unread"


def test_the_backend_filters_the_feed_by_status(personas: Personas) -> None:
    ana = new_recipient()
    add_item(ana, "unread", age=3)
    add_item(ana, "read", status=FeedStatus.READ, age=2)
    add_item(ana, "archived", status=FeedStatus.ARCHIVED, age=1)
    client = personas.alpha.client()

    assert titles(client.get(feed_url(ana), {"status": "unread"})) == ["unread"]
    assert titles(client.get(feed_url(ana), {"status": "read"})) == ["read"]
    assert titles(client.get(feed_url(ana), {"status": "archived"})) == ["archived"]


def test_an_unknown_status_filter_is_a_400_naming_the_field(personas: Personas) -> None:
    response = personas.alpha.client().get(feed_url(new_recipient()), {"status": "seen"})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "validation_failed"
    assert "unread" in error["fields"]["status"][0]


def test_the_feed_pages_with_a_cursor_without_repeating_or_skipping_items(personas: Personas) -> None:
    ana = new_recipient()
    for n in range(25):
        add_item(ana, f"item {n:02}", age=n)
    client = personas.alpha.client()

    seen: list[str] = []
    response = client.get(feed_url(ana), {"limit": 10})
    while True:
        seen += titles(response)
        assert response.json()["counts"] == {"unread": 25, "total": 25}
        next_url = response.json()["next"]
        if not next_url:
            break
        response = client.get(next_url)

    assert seen == [f"item {n:02}" for n in range(25)]


def test_the_backend_marks_an_item_read_unread_and_archived(personas: Personas) -> None:
    ana = new_recipient()
    item = add_item(ana, "hello")
    other = add_item(ana, "other")
    client = personas.alpha.client()
    url = f"{feed_url(ana)}/{item.id}"

    read = patch(client, url, {"status": "read"})
    assert read.status_code == 200, read.content
    assert read.json()["status"] == "read"
    assert read.json()["read_at"] is not None
    assert client.get(feed_url(ana)).json()["counts"] == {"unread": 1, "total": 2}

    unread = patch(client, url, {"status": "unread"}).json()
    assert unread["status"] == "unread"
    assert unread["read_at"] is None

    assert patch(client, url, {"status": "archived"}).status_code == 200
    assert titles(client.get(feed_url(ana))) == ["other"]
    assert client.get(feed_url(ana)).json()["counts"] == {"unread": 1, "total": 1}
    with schema_context("alpha"):
        assert InAppMessage.objects.get(id=other.id).status == FeedStatus.UNREAD


def test_a_bad_status_in_an_update_is_a_400_naming_the_field(personas: Personas) -> None:
    ana = new_recipient()
    item = add_item(ana, "hello")
    response = patch(personas.alpha.client(), f"{feed_url(ana)}/{item.id}", {"status": "deleted"})
    assert response.status_code == 400
    assert "status" in response.json()["error"]["fields"]


def test_mark_all_read_marks_every_unread_item_and_leaves_archived_ones(personas: Personas) -> None:
    ana = new_recipient()
    add_item(ana, "one")
    add_item(ana, "two")
    archived = add_item(ana, "archived", status=FeedStatus.ARCHIVED)
    bob = new_recipient()
    bobs = add_item(bob, "bob's")

    response = personas.alpha.client().post(f"{feed_url(ana)}/mark-all-read")

    assert response.status_code == 200, response.content
    assert response.json() == {"updated": 2, "counts": {"unread": 0, "total": 2}}
    with schema_context("alpha"):
        assert InAppMessage.objects.get(id=archived.id).status == FeedStatus.ARCHIVED
        assert InAppMessage.objects.get(id=bobs.id).status == FeedStatus.UNREAD
        assert not InAppMessage.objects.filter(recipient=ana, status=FeedStatus.READ, read_at=None).exists()


def test_the_backend_cannot_touch_one_recipients_item_through_another(personas: Personas) -> None:
    ana, bob = new_recipient(), new_recipient()
    bobs = add_item(bob, "bob's")
    response = patch(personas.alpha.client(), f"{feed_url(ana)}/{bobs.id}", {"status": "read"})
    assert response.status_code == 404
    with schema_context("alpha"):
        assert InAppMessage.objects.get(id=bobs.id).status == FeedStatus.UNREAD


def test_an_unknown_recipient_is_a_404_that_names_it(personas: Personas) -> None:
    client = personas.alpha.client()
    for response in (
        client.get("/api/v1/recipients/nobody-here/feed"),
        client.post("/api/v1/recipients/nobody-here/token"),
        client.post("/api/v1/recipients/nobody-here/feed/mark-all-read"),
    ):
        assert response.status_code == 404
        assert "nobody-here" in response.json()["error"]["message"]


def test_another_tenants_key_does_not_find_this_tenants_recipients(personas: Personas) -> None:
    ana = new_recipient("alpha")
    add_item(ana, "alpha's secret")
    response = personas.beta.client().get(feed_url(ana))
    assert response.status_code == 404
    assert b"alpha's secret" not in response.content


def test_the_backend_feed_needs_an_api_key(personas: Personas) -> None:
    ana = new_recipient()
    response = Client(HTTP_HOST=personas.alpha.domain).get(feed_url(ana))
    assert response.status_code == 401
    # A recipient token is no API key.
    assert end_user(personas.alpha, token_for(ana)).get(feed_url(ana)).status_code == 401


def test_the_token_endpoint_mints_a_token_for_that_recipients_feed(personas: Personas) -> None:
    ana = new_recipient()
    add_item(ana, "for ana")
    add_item(new_recipient(), "for someone else")

    response = personas.alpha.client().post(f"/api/v1/recipients/{ana.external_id}/token")

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["expires_in"] == links.FEED_TOKEN_MAX_AGE == 7 * 24 * 3600
    assert titles(end_user(personas.alpha, body["token"]).get("/u/feed/")) == ["for ana"]


# --- the end user -----------------------------------------------------------------------------


def test_an_end_user_sees_only_their_own_items_and_their_badge(personas: Personas) -> None:
    ana, bob = new_recipient(), new_recipient()
    add_item(ana, "ana 1", age=2)
    add_item(ana, "ana 2", status=FeedStatus.READ, age=1)
    add_item(bob, "bob 1")
    client = end_user(personas.alpha, token_for(ana))

    response = client.get("/u/feed/")
    assert titles(response) == ["ana 2", "ana 1"]
    assert response.json()["counts"] == {"unread": 1, "total": 2}
    assert client.get("/u/feed/badge").json() == {"unread": 1}
    assert titles(client.get("/u/feed/", {"status": "read"})) == ["ana 2"]


def test_an_end_user_gets_a_404_for_another_recipients_item(personas: Personas) -> None:
    ana, bob = new_recipient(), new_recipient()
    bobs = add_item(bob, "bob's")
    response = patch(end_user(personas.alpha, token_for(ana)), f"/u/feed/{bobs.id}", {"status": "read"})
    assert response.status_code == 404
    assert b"bob's" not in response.content
    with schema_context("alpha"):
        assert InAppMessage.objects.get(id=bobs.id).status == FeedStatus.UNREAD


def test_an_end_user_marks_an_item_read_and_then_all_read(personas: Personas) -> None:
    ana = new_recipient()
    first = add_item(ana, "first")
    add_item(ana, "second")
    add_item(ana, "third")
    client = end_user(personas.alpha, token_for(ana))

    response = patch(client, f"/u/feed/{first.id}", {"status": "read"})
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "read"
    assert client.get("/u/feed/badge").json() == {"unread": 2}

    response = client.post("/u/feed/mark-all-read")
    assert response.json() == {"updated": 2, "counts": {"unread": 0, "total": 3}}
    assert client.get("/u/feed/badge").json() == {"unread": 0}


def test_a_token_may_come_as_a_query_parameter(personas: Personas) -> None:
    ana = new_recipient()
    add_item(ana, "hello")
    client = Client(HTTP_HOST=personas.alpha.domain)
    assert titles(client.get("/u/feed/", {"token": token_for(ana)})) == ["hello"]


def test_a_token_of_another_tenant_is_refused_on_this_domain(personas: Personas) -> None:
    bob_of_beta = new_recipient("beta")
    add_item(bob_of_beta, "beta's item", schema="beta")
    token = token_for(bob_of_beta, "beta")
    assert end_user(personas.beta, token).get("/u/feed/").status_code == 200  # fine at home

    response = end_user(personas.alpha, token).get("/u/feed/")

    assert response.status_code == 401
    assert "another tenant" in response.json()["error"]["message"]
    assert b"beta's item" not in response.content


def test_a_token_is_refused_on_the_api_host(personas: Personas) -> None:
    response = end_user(personas.alpha, token_for(new_recipient()), host="localhost").get("/u/feed/")
    assert response.status_code == 401


def test_a_forged_token_is_refused(personas: Personas) -> None:
    ana, bob = new_recipient(), new_recipient()
    add_item(bob, "bob's")
    genuine = token_for(ana)
    # The same claim signed with a key that is not the server's.
    forged = signing.TimestampSigner(key="not-the-server-key", salt="herald.recipient-token").sign_object(
        {"t": "alpha", "r": str(bob.id)}
    )
    tampered = genuine[:-2] + ("AA" if not genuine.endswith("AA") else "BB")
    for token in (forged, tampered, "garbage"):
        response = end_user(personas.alpha, token).get("/u/feed/")
        assert response.status_code == 401, token
        assert response.json()["error"]["code"] == "invalid_recipient_token"


def test_an_expired_token_is_refused(personas: Personas) -> None:
    ana = new_recipient()

    class SignedLongAgo(signing.TimestampSigner):
        def timestamp(self) -> str:
            return signing.b62_encode(int(time.time()) - links.FEED_TOKEN_MAX_AGE - 60)

    expired = SignedLongAgo(salt="herald.recipient-token").sign_object({"t": "alpha", "r": str(ana.id)})
    response = end_user(personas.alpha, expired).get("/u/feed/")
    assert response.status_code == 401
    assert "expired" in response.json()["error"]["message"]


def test_without_a_token_the_answer_says_what_to_send(personas: Personas) -> None:
    response = Client(HTTP_HOST=personas.alpha.domain).get("/u/feed/")
    assert response.status_code == 401
    assert "Recipient <token>" in response.json()["error"]["message"]
    assert response["WWW-Authenticate"].startswith("Recipient")
    # An API key is no end-user token either.
    assert personas.alpha.client().get("/u/feed/").status_code == 401


def test_the_end_user_endpoints_answer_cross_origin_requests(personas: Personas) -> None:
    client = Client(HTTP_HOST=personas.alpha.domain)
    preflight = client.options(
        "/u/feed/badge",
        HTTP_ORIGIN="https://app.example.com",
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="GET",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="authorization",
    )
    assert preflight.status_code == 204
    assert preflight["Access-Control-Allow-Origin"] == "*"
    assert "Authorization" in preflight["Access-Control-Allow-Headers"]
    assert "PATCH" in preflight["Access-Control-Allow-Methods"]

    answer = end_user(personas.alpha, token_for(new_recipient())).get(
        "/u/feed/badge", HTTP_ORIGIN="https://app.example.com"
    )
    assert answer["Access-Control-Allow-Origin"] == "*"


def test_the_demo_page_mounts_the_widget_with_the_token(personas: Personas) -> None:
    token = token_for(new_recipient())
    client = Client(HTTP_HOST=personas.alpha.domain)

    page = client.get("/u/feed/demo/", {"token": token})

    assert page.status_code == 200
    html = page.content.decode()
    assert "/static/herald/feed-widget.js" in html
    assert "HeraldFeed.mount" in html
    assert json.dumps(token) in html
    script = client.get("/static/herald/feed-widget.js")
    assert script.status_code == 200
    assert b"HeraldFeed" in b"".join(script.streaming_content)  # type: ignore[attr-defined]


def test_the_demo_page_refuses_a_bad_token_and_says_where_to_get_one(personas: Personas) -> None:
    page = Client(HTTP_HOST=personas.alpha.domain).get("/u/feed/demo/", {"token": "<script>x</script>"})
    assert page.status_code == 401
    assert b"/api/v1/recipients/" in page.content
    assert b"<script>x" not in page.content


def test_the_openapi_schema_describes_the_feed_endpoints() -> None:
    schema = json.loads(
        Client(HTTP_HOST="localhost").get("/api/schema/", HTTP_ACCEPT="application/json").content
    )
    assert "get" in schema["paths"]["/api/v1/recipients/{external_id}/feed"]
    assert "patch" in schema["paths"]["/api/v1/recipients/{external_id}/feed/{item_id}"]
    assert "post" in schema["paths"]["/api/v1/recipients/{external_id}/token"]


# --- the provider -----------------------------------------------------------------------------


def in_app_delivery(recipient: Recipient, schema: str = "alpha") -> Delivery:
    with schema_context(schema):
        notification = Notification.objects.create(
            recipient=recipient, channels=[Channel.IN_APP], subject="Order shipped", body="On its way"
        )
        return Delivery.objects.create(
            notification=notification, channel=Channel.IN_APP, address=recipient.external_id
        )


def message_for(delivery: Delivery, recipient: Recipient, **data: Any) -> OutgoingMessage:
    return OutgoingMessage(
        delivery_id=str(delivery.id),
        channel=Channel.IN_APP,
        to=str(recipient.id),
        subject="Order shipped",
        text="Your order #42 is on its way",
        data=data,
    )


def test_the_provider_adds_one_item_per_delivery_however_often_it_is_sent(personas: Personas) -> None:
    ana = new_recipient()
    delivery = in_app_delivery(ana)
    message = message_for(delivery, ana, url="https://shop.example.com/orders/42", order=42)

    with schema_context("alpha"):
        (first,) = InAppFeedProvider().send_batch([message])
        (again,) = InAppFeedProvider().send_batch([message])
        items = list(InAppMessage.objects.filter(recipient=ana))

    assert first.ok, first.error
    assert again.ok, again.error
    assert first.provider == "inapp"
    assert first.provider_message_id == again.provider_message_id
    (item,) = items
    assert str(item.id) == first.provider_message_id
    assert item.delivery_id == delivery.id
    assert item.title == "Order shipped"
    assert item.body == "Your order #42 is on its way"
    assert item.url == "https://shop.example.com/orders/42"
    assert item.data == {"url": "https://shop.example.com/orders/42", "order": 42}
    assert item.status == FeedStatus.UNREAD
    feed = personas.alpha.client().get(feed_url(ana)).json()
    assert [i["id"] for i in feed["results"]] == [first.provider_message_id]


def test_the_provider_refuses_a_link_that_is_not_http_permanently(personas: Personas) -> None:
    ana = new_recipient()
    delivery = in_app_delivery(ana)
    with schema_context("alpha"):
        (outcome,) = InAppFeedProvider().send_batch([message_for(delivery, ana, url="javascript:alert(1)")])
        assert not InAppMessage.objects.filter(recipient=ana).exists()
    assert outcome.error is not None
    assert outcome.error.permanent
    assert "data.url" in outcome.error.reason


def test_the_provider_accepts_a_path_on_the_tenants_own_site(personas: Personas) -> None:
    ana = new_recipient()
    delivery = in_app_delivery(ana)
    with schema_context("alpha"):
        (outcome,) = InAppFeedProvider().send_batch([message_for(delivery, ana, url="/orders/42")])
        assert outcome.ok, outcome.error
        assert InAppMessage.objects.get(recipient=ana).url == "/orders/42"


def test_the_provider_fails_only_the_message_of_an_unknown_recipient(personas: Personas) -> None:
    ana, bob = new_recipient(), new_recipient()
    good, bad = in_app_delivery(ana), in_app_delivery(bob)
    stray = OutgoingMessage(
        delivery_id=str(bad.id), channel=Channel.IN_APP, to=str(uuid.uuid4()), subject="x", text="y"
    )
    with schema_context("alpha"):
        ok, failed = InAppFeedProvider().send_batch([message_for(good, ana), stray])
        assert InAppMessage.objects.filter(recipient=ana).count() == 1
    assert ok.ok
    assert failed.error is not None
    assert failed.error.permanent
    assert "no recipient" in failed.error.reason
