"""The live feed over a real WebSocket: uvicorn serving tenant_platform.asgi against the test database.

The test process adds items through the in-app provider, which publishes through the Redis
channel layer; the server process's consumer must push them to the right socket, and only there.
From Python, `*.localhost` does not resolve: we connect to 127.0.0.1 and name the tenant's
domain in the Host header (the URI's host).
"""

import json
import socket
import sys
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlencode

import pytest
from django.db import connections
from django.utils import timezone
from django_tenants.utils import schema_context
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from notifications import links
from notifications.models import Channel, Delivery, FeedStatus, InAppMessage, Notification, Recipient
from notifications.providers.base import Outcome, OutgoingMessage
from notifications.providers.inapp import InAppFeedProvider
from tests.browser import CHROMIUM, CHROMIUM_ARGS, require_chromium
from tests.conftest import Personas, Process, service_env, wait_until
from tests.fakes.smtp_server import free_port

pytestmark = pytest.mark.usefixtures("live_db")


@dataclass
class Web:
    port: int
    process: Process

    def url(self, host: str, path: str) -> str:
        return f"http://{host}:{self.port}{path}"


def start_web(port: int, name: str = "uvicorn-feed") -> Process:
    """uvicorn serving the ASGI application (HTTP and WebSockets), as in production."""
    env = service_env("smtp://127.0.0.1:1", WEB_THREADS="4")
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)  # the server under test keeps Django's guard
    process = Process(
        name,
        [
            sys.executable,
            "-m",
            "uvicorn",
            "tenant_platform.asgi:application",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--lifespan",
            "off",
        ],
        env,
    )
    try:
        process.wait_for_log("Uvicorn running on", timeout=30)
    except AssertionError:
        process.stop()
        raise
    return process


@pytest.fixture(scope="module")
def web(django_db_setup: Personas) -> Iterator[Web]:
    port = free_port()
    process = start_web(port)
    yield Web(port, process)
    process.stop()


# --- helpers ----------------------------------------------------------------------------------


class FeedSocket:
    def __init__(self, connection: ClientConnection) -> None:
        self.connection = connection

    def receive(self, timeout: float = 10) -> dict[str, Any]:
        message: dict[str, Any] = json.loads(self.connection.recv(timeout=timeout))
        return message

    def receive_until(self, kind: str, timeout: float = 10) -> list[dict[str, Any]]:
        """Every message up to and including the first of type `kind`."""
        messages = [self.receive(timeout)]
        while messages[-1]["type"] != kind:
            messages.append(self.receive(timeout))
        return messages

    def nothing_within(self, seconds: float) -> bool:
        try:
            message = self.connection.recv(timeout=seconds)
        except TimeoutError:
            return True
        raise AssertionError(f"expected nothing, got {message!r}")

    def closed_with(self, timeout: float = 10) -> tuple[int, str]:
        """Read until the server closes; (code, reason)."""
        with pytest.raises(ConnectionClosed) as closed:  # noqa: PT012 (read until the close frame)
            while True:
                self.connection.recv(timeout=timeout)
        frame = closed.value.rcvd
        assert frame is not None, "closed without a close frame"
        return frame.code, frame.reason


@contextmanager
def feed_socket(web: Web, host: str, **params: str) -> Iterator[FeedSocket]:
    sock = socket.create_connection(("127.0.0.1", web.port), timeout=10)
    sock.settimeout(None)  # websockets keeps its own timeouts; a socket timeout would read as EOF
    query = urlencode(params)
    with connect(f"ws://{host}:{web.port}/ws/feed/?{query}", sock=sock, proxy=None, open_timeout=10) as ws:
        yield FeedSocket(ws)


def new_recipient(schema: str = "alpha") -> Recipient:
    with schema_context(schema):
        return Recipient.objects.create(external_id=f"ws-{uuid.uuid4()}")


def token_for(recipient: Recipient, schema: str = "alpha") -> str:
    with schema_context(schema):
        return links.recipient_token(str(recipient.id))


def send_in_app(recipient: Recipient, title: str, schema: str = "alpha", **data: Any) -> Outcome:
    """What the send task does for one in-app delivery: the provider, in the tenant's schema."""
    with schema_context(schema):
        notification = Notification.objects.create(
            recipient=recipient, channels=[Channel.IN_APP], subject=title, body=f"{title}: body"
        )
        delivery = Delivery.objects.create(
            notification=notification, channel=Channel.IN_APP, address=recipient.external_id
        )
        (outcome,) = InAppFeedProvider().send_batch(
            [
                OutgoingMessage(
                    delivery_id=str(delivery.id),
                    channel=Channel.IN_APP,
                    to=str(recipient.id),
                    subject=title,
                    text=f"{title}: body",
                    data=data,
                )
            ]
        )
    assert outcome.ok, outcome.error
    return outcome


# --- live items -------------------------------------------------------------------------------


def test_a_new_item_arrives_live_on_the_recipients_socket_and_nowhere_else(
    web: Web, personas: Personas
) -> None:
    ana, bob = new_recipient(), new_recipient()
    anas_token = token_for(ana)
    with (
        feed_socket(web, personas.alpha.domain, token=anas_token) as anas,
        feed_socket(web, personas.alpha.domain, token=token_for(bob)) as bobs,
    ):
        assert anas.receive() == {"type": "feed.ready", "unread": 0, "missed": 0, "more": False}
        assert bobs.receive()["type"] == "feed.ready"

        outcome = send_in_app(ana, "Order shipped", url="https://shop.example.com/orders/42")

        message = anas.receive()
        assert message["type"] == "feed.item"
        assert message["unread"] == 1
        item = message["item"]
        assert item["id"] == outcome.provider_message_id
        assert item["title"] == "Order shipped"
        assert item["body"] == "Order shipped: body"
        assert item["url"] == "https://shop.example.com/orders/42"
        assert item["status"] == "unread"
        assert bobs.nothing_within(1.0)
    # The token rode in the query string; the server's log names the request but not the token.
    log = web.process.wait_for_log("/ws/feed/?token=[redacted]")
    assert anas_token.split(":")[-1] not in log


def test_an_idle_socket_stays_open_and_still_receives_items(personas: Personas) -> None:
    # The channel layer blocks on Redis for 5 s at a time; with a read timeout no longer than
    # that (redis-py 8's default) every consumer idle for 5 s died. A server of its own, so
    # that no other test's traffic wakes the layer up.
    port = free_port()
    web = Web(port, start_web(port, "uvicorn-feed-idle"))
    try:
        ana = new_recipient()
        with feed_socket(web, personas.alpha.domain, token=token_for(ana)) as anas:
            assert anas.receive()["type"] == "feed.ready"
            assert anas.nothing_within(8.0)
            outcome = send_in_app(ana, "after a quiet while")
            assert anas.receive()["item"]["id"] == outcome.provider_message_id
    finally:
        web.process.stop()


def test_the_same_recipient_id_in_another_tenant_hears_nothing(web: Web, personas: Personas) -> None:
    ana = new_recipient("alpha")
    with schema_context("beta"):  # a recipient of beta with the very same id
        twin = Recipient.objects.create(id=ana.id, external_id=ana.external_id)
    with feed_socket(web, personas.beta.domain, token=token_for(twin, "beta")) as twins:
        assert twins.receive()["type"] == "feed.ready"
        send_in_app(ana, "for alpha's ana only")
        assert twins.nothing_within(1.0)


def test_marking_read_over_rest_updates_the_badge_on_open_sockets(web: Web, personas: Personas) -> None:
    ana = new_recipient()
    first = send_in_app(ana, "one")
    send_in_app(ana, "two")
    with feed_socket(web, personas.alpha.domain, token=token_for(ana)) as anas:
        assert anas.receive()["unread"] == 2

        personas.alpha.client().patch(
            f"/api/v1/recipients/{ana.external_id}/feed/{first.provider_message_id}",
            data=json.dumps({"status": "read"}),
            content_type="application/json",
        )
        assert anas.receive() == {"type": "feed.counts", "unread": 1, "total": 2}

        personas.alpha.client().post(f"/api/v1/recipients/{ana.external_id}/feed/mark-all-read")
        assert anas.receive() == {"type": "feed.counts", "unread": 0, "total": 2}


# --- who may listen ---------------------------------------------------------------------------


def test_a_token_of_another_tenant_is_closed_with_4401(web: Web, personas: Personas) -> None:
    beta_token = token_for(new_recipient("beta"), "beta")
    with feed_socket(web, personas.alpha.domain, token=beta_token) as refused:
        code, reason = refused.closed_with()
    assert code == 4401
    assert "another tenant" in reason


def test_a_token_used_on_the_wrong_domain_is_closed_with_4401(web: Web, personas: Personas) -> None:
    alpha_token = token_for(new_recipient("alpha"))
    with feed_socket(web, personas.beta.domain, token=alpha_token) as refused:
        code, reason = refused.closed_with()
    assert code == 4401
    assert "another tenant" in reason


def test_a_missing_forged_or_expired_token_is_closed_with_4401(web: Web, personas: Personas) -> None:
    genuine = token_for(new_recipient())
    for params, why in (
        ({}, "token missing"),
        ({"token": genuine[:-3] + "xyz"}, "invalid or expired"),
        ({"token": "garbage"}, "invalid or expired"),
    ):
        with feed_socket(web, personas.alpha.domain, **params) as refused:
            code, reason = refused.closed_with()
        assert code == 4401, params
        assert why in reason


def test_a_host_that_is_no_active_tenants_is_refused_at_the_handshake(web: Web, personas: Personas) -> None:
    token = token_for(new_recipient())
    for host in ("nobody.localhost", "localhost", personas.inactive.domain):
        with pytest.raises(InvalidStatus) as refused, feed_socket(web, host, token=token):
            pass
        assert refused.value.response.status_code == 403, host


def test_a_bad_after_is_closed_with_4400(web: Web, personas: Personas) -> None:
    with feed_socket(web, personas.alpha.domain, token=token_for(new_recipient()), after="yesterday") as s:
        code, reason = s.closed_with()
    assert code == 4400
    assert "ISO 8601" in reason


# --- catching up ------------------------------------------------------------------------------


def test_reconnecting_with_after_an_item_id_sends_what_was_missed(web: Web, personas: Personas) -> None:
    ana = new_recipient()
    with feed_socket(web, personas.alpha.domain, token=token_for(ana)) as anas:
        anas.receive_until("feed.ready")
        seen = send_in_app(ana, "seen before the drop")
        assert anas.receive()["item"]["id"] == seen.provider_message_id
    # Offline: two more arrive, and one of them is archived by the backend before we come back.
    missed_1 = send_in_app(ana, "missed 1")
    missed_2 = send_in_app(ana, "missed 2")
    archived = send_in_app(ana, "archived meanwhile")
    with schema_context("alpha"):
        InAppMessage.objects.filter(id=archived.provider_message_id).update(status=FeedStatus.ARCHIVED)

    with feed_socket(
        web, personas.alpha.domain, token=token_for(ana), after=seen.provider_message_id
    ) as anas:
        messages = anas.receive_until("feed.ready")
        live = send_in_app(ana, "live again")
        after_ready = anas.receive()

    assert [m["item"]["id"] for m in messages[:-1]] == [
        missed_1.provider_message_id,
        missed_2.provider_message_id,
    ]
    assert messages[-1] == {"type": "feed.ready", "unread": 3, "missed": 2, "more": False}
    assert after_ready["item"]["id"] == live.provider_message_id


def test_reconnecting_with_after_a_time_sends_the_items_since(web: Web, personas: Personas) -> None:
    ana = new_recipient()
    with schema_context("alpha"):
        InAppMessage.objects.create(
            recipient=ana, title="old", body="old", created_at=timezone.now() - timedelta(hours=2)
        )
    since = (timezone.now() - timedelta(hours=1)).isoformat()
    recent = send_in_app(ana, "recent")

    with feed_socket(web, personas.alpha.domain, token=token_for(ana), after=since) as anas:
        messages = anas.receive_until("feed.ready")

    assert [m["item"]["title"] for m in messages[:-1]] == ["recent"]
    assert messages[0]["item"]["id"] == recent.provider_message_id
    assert messages[-1]["missed"] == 1


def test_a_long_absence_sends_the_newest_items_and_says_there_is_more(web: Web, personas: Personas) -> None:
    from notifications.realtime.consumers import CATCH_UP_LIMIT

    ana = new_recipient()
    anchor = send_in_app(ana, "anchor")
    now = timezone.now()
    with schema_context("alpha"):
        InAppMessage.objects.bulk_create(
            InAppMessage(recipient=ana, title=f"n{n:03}", body="x", created_at=now + timedelta(seconds=n))
            for n in range(CATCH_UP_LIMIT + 5)
        )
    with feed_socket(web, personas.alpha.domain, token=token_for(ana), after=anchor.provider_message_id) as s:
        messages = s.receive_until("feed.ready")

    titles = [m["item"]["title"] for m in messages[:-1]]
    assert titles == [f"n{n:03}" for n in range(5, CATCH_UP_LIMIT + 5)]
    assert messages[-1]["more"] is True


# --- end to end through a real worker ------------------------------------------------------------


@pytest.mark.worker
def test_an_in_app_notification_goes_through_the_worker_to_the_feed_and_the_open_socket(
    worker: Process, web: Web, personas: Personas
) -> None:
    backend = personas.alpha.client()
    external_id = f"e2e-{uuid.uuid4()}"
    with schema_context("alpha"):
        Recipient.objects.create(external_id=external_id)
    minted = backend.post(f"/api/v1/recipients/{external_id}/token")
    assert minted.status_code == 200, minted.content

    with feed_socket(web, personas.alpha.domain, token=minted.json()["token"]) as browser:
        assert browser.receive()["type"] == "feed.ready"
        accepted = backend.post(
            "/api/v1/notifications",
            json.dumps(
                {
                    "recipient": {"external_id": external_id},
                    "channels": ["in_app"],
                    "subject": "Welcome, {{ name }}",
                    "body": "Your account is ready.",
                    "url": "https://app.example.com/welcome",
                    "data": {"name": "Ana"},
                }
            ),
            content_type="application/json",
        )
        assert accepted.status_code == 202, accepted.content
        live = browser.receive(timeout=30)

    assert live["type"] == "feed.item"
    assert live["unread"] == 1
    assert live["item"]["title"] == "Welcome, Ana"
    assert live["item"]["body"] == "Your account is ready."
    assert live["item"]["url"] == "https://app.example.com/welcome"

    feed = backend.get(f"/api/v1/recipients/{external_id}/feed").json()
    assert [item["id"] for item in feed["results"]] == [live["item"]["id"]]
    assert feed["counts"] == {"unread": 1, "total": 1}

    def sent() -> dict[str, Any] | None:
        shown: dict[str, Any] = backend.get(accepted.json()["url"]).json()
        return shown if shown["status"] == "sent" else None

    shown = wait_until(sent, timeout=30, interval=0.2)
    (delivery,) = shown["deliveries"]
    assert delivery["channel"] == "in_app"
    assert delivery["provider"] == "inapp"
    assert delivery["provider_message_id"] == live["item"]["id"]


# --- the widget in a browser ------------------------------------------------------------------


@pytest.fixture
def browser_page() -> Iterator[Any]:
    require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser.new_page()
        finally:
            browser.close()


def unread_in_db(recipient: Recipient) -> int:
    with schema_context("alpha"):
        return InAppMessage.objects.filter(recipient=recipient, status=FeedStatus.UNREAD).count()


def test_the_widget_shows_items_live_marks_them_read_and_catches_up_after_a_drop(
    personas: Personas, browser_page: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Playwright's sync API keeps an event loop in this thread; our ORM calls here are plain sync.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    from playwright.sync_api import expect

    page = browser_page
    ana = new_recipient()
    send_in_app(ana, "Earlier")
    token = token_for(ana)
    port = free_port()
    server = start_web(port, "uvicorn-feed-widget")
    try:
        page.goto(f"http://{personas.alpha.domain}:{port}/u/feed/demo/?{urlencode({'token': token})}")
        widget = page.locator("[data-herald-feed]")
        badge = page.locator("[data-herald-feed] .badge")
        expect(widget).to_have_attribute("data-state", "live")
        expect(badge).to_have_text("1")

        send_in_app(ana, "Order shipped", url="/orders/42")
        expect(badge).to_have_text("2")
        page.locator("[data-herald-feed] .bell").click()
        items = page.locator("[data-herald-feed] .item")
        expect(items).to_have_count(2)
        expect(items.nth(0)).to_contain_text("Order shipped")
        expect(items.nth(0).locator("a")).to_have_attribute("href", "/orders/42")
        expect(items.nth(1)).to_contain_text("Earlier")

        items.nth(1).locator(".title").click()  # reading an item marks it read
        expect(badge).to_have_text("1")
        expect(items.nth(1)).not_to_have_class("item unread")
        wait_until(lambda: unread_in_db(ana) == 1, timeout=5)

        # The server goes away; two items arrive meanwhile; the widget reconnects and catches up.
        server.stop()
        logs = server.log()
        expect(widget).to_have_attribute("data-state", "offline")
        send_in_app(ana, "Missed one")
        send_in_app(ana, "Missed two")
        server = start_web(port, "uvicorn-feed-widget-again")
        expect(widget).to_have_attribute("data-state", "live", timeout=20_000)
        expect(items).to_have_count(4)
        expect(items.nth(0)).to_contain_text("Missed two")
        expect(items.nth(1)).to_contain_text("Missed one")
        expect(badge).to_have_text("3")

        page.locator("[data-herald-feed] .mark-all").click()
        expect(badge).to_be_hidden()
        wait_until(lambda: unread_in_db(ana) == 0, timeout=5)
        # The page's URL and the socket's carried the token; the servers' logs do not.
        logs += server.log()
        assert "/u/feed/demo/?token=[redacted]" in logs
        assert token.split(":")[-1] not in logs
    finally:
        server.stop()
        # Connections opened while Playwright's loop ran live in their own context: close them,
        # or the test database cannot be dropped at the end of the session.
        connections.close_all()


SHOP_PAGE = """<!doctype html><title>Shop</title>
<div id="bell"></div><div id="stale"></div>
<script src="{base}/static/herald/feed-widget.js"></script>
<script>
  window.feed = HeraldFeed.mount(document.getElementById("bell"), {{token: {token}, baseUrl: "{base}"}});
  window.expiredCalls = 0;
  HeraldFeed.mount(document.getElementById("stale"), {{
    token: "forged", baseUrl: "{base}", onAuthError: function () {{ window.expiredCalls += 1; }}
  }});
</script>"""


def test_the_widget_works_on_the_tenants_own_site_and_pages_to_older_items(
    web: Web, personas: Personas, browser_page: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    from playwright.sync_api import expect

    page = browser_page
    ana = new_recipient()
    now = timezone.now()
    with schema_context("alpha"):
        InAppMessage.objects.bulk_create(
            InAppMessage(recipient=ana, title=f"n{n:02}", body="x", created_at=now - timedelta(minutes=n))
            for n in range(25)
        )
    base = web.url(personas.alpha.domain, "")
    html = SHOP_PAGE.format(base=base, token=json.dumps(token_for(ana)))

    class ShopPage(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = html.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    shop = ThreadingHTTPServer(("127.0.0.1", 0), ShopPage)
    threading.Thread(target=shop.serve_forever, daemon=True).start()
    try:
        # The tenant's own site: another origin than Herald's, so CORS is exercised for real.
        page.goto(f"http://shop.localhost:{shop.server_address[1]}/")
        bell = page.locator("#bell [data-herald-feed]")
        expect(bell).to_have_attribute("data-state", "live")
        expect(bell.locator(".badge")).to_have_text("25")
        bell.locator(".bell").click()
        items = bell.locator(".item")
        expect(items).to_have_count(20)
        bell.locator(".more").click()
        expect(items).to_have_count(25)
        expect(items.nth(24)).to_contain_text("n24")
        expect(bell.locator(".more")).to_be_hidden()

        # A token Herald does not accept: the widget stops and tells the page.
        stale = page.locator("#stale [data-herald-feed]")
        expect(stale).to_have_attribute("data-state", "expired")
        assert page.evaluate("window.expiredCalls") >= 1
    finally:
        shop.shutdown()
        connections.close_all()
