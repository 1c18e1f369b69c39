"""The console's live stream over a real WebSocket: uvicorn serving tenant_platform.asgi, a real
Celery worker sending through the local SMTP server, the Redis channel layer between them.

From Python, `*.localhost` does not resolve: we connect to 127.0.0.1 and name the tenant's domain
in the Host header (the URI's host), and send the session cookie the console's sign-in set.
"""

import json
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlencode

import pytest
from django.test import Client
from django_tenants.utils import schema_context
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from notifications.console.roles import VIEWER, set_role
from notifications.models import DeliveryEvent
from tests.conftest import Personas, Process, wait_until
from tests.fakes.smtp_server import FakeSmtpServer, free_port
from tests.notifications.test_feed_websocket import FeedSocket, Web, start_web

pytestmark = pytest.mark.usefixtures("live_db")


@pytest.fixture(scope="module")
def web(django_db_setup: Personas) -> Iterator[Web]:
    port = free_port()
    process = start_web(port, name="uvicorn-console")
    yield Web(port, process)
    process.stop()


def session_cookie(domain: str, email: str, password: str = "pw") -> str:
    client = Client(HTTP_HOST=domain)
    response = client.post("/console/login/", {"username": email, "password": password})
    assert response.status_code == 302, response.content
    return client.cookies["sessionid"].value


class ConsoleSocket(FeedSocket):
    """The feed test's socket reader (receive, closed_with), plus collecting event batches."""

    def events_until(self, done: Any, timeout: float = 30) -> tuple[list[dict[str, Any]], int]:
        """Collect events until `done(events)` holds; (events, how many messages carried them)."""
        events: list[dict[str, Any]] = []
        messages = 0
        while not done(events):
            message = self.receive(timeout)
            if message["type"] == "events":
                messages += 1
                events.extend(message["events"])
        return events, messages


@contextmanager
def console_socket(
    web: Web, host: str, cookie: str | None = None, origin: str | None = "same", **params: str
) -> Iterator[ConsoleSocket]:
    headers: dict[str, str] = {}
    if cookie:
        headers["Cookie"] = f"sessionid={cookie}"
    sock = socket.create_connection(("127.0.0.1", web.port), timeout=10)
    sock.settimeout(None)
    url = f"ws://{host}:{web.port}/ws/console/?{urlencode(params)}"
    with connect(
        url,
        sock=sock,
        proxy=None,
        open_timeout=10,
        additional_headers=headers,
        origin=(f"http://{host}:{web.port}" if origin == "same" else origin),  # type: ignore[arg-type]
    ) as ws:
        yield ConsoleSocket(ws)


def post(personas: Personas, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = personas.alpha.client().post(path, json.dumps(body), content_type="application/json")
    assert response.status_code == 202, response.content
    answer: dict[str, Any] = response.json()
    return answer


def email(external_id: str, subject: str) -> dict[str, Any]:
    return {
        "recipient": {"external_id": external_id, "email": f"{external_id}@example.com"},
        "channels": ["email"],
        "subject": subject,
        "body": "Hello",
    }


def statuses_of(events: list[dict[str, Any]], notification: str) -> list[str]:
    return [e["status"] for e in events if e["notification"] == notification]


# --- who may listen ---------------------------------------------------------------------------


def test_a_signed_in_admin_sees_a_notification_go_queued_sending_sent(
    web: Web, personas: Personas, worker: Process, smtp_server: FakeSmtpServer
) -> None:
    cookie = session_cookie(personas.alpha.domain, "owner@alpha.test")
    with console_socket(web, personas.alpha.domain, cookie) as ws:
        ready = ws.receive()
        assert ready["type"] == "ready"
        assert ready["missed"] == 0
        notification = post(personas, "/api/v1/notifications", email("live-1", "Live one"))["id"]
        events, _ = ws.events_until(lambda ev: "sent" in statuses_of(ev, notification))
    assert statuses_of(events, notification) == ["queued", "sending", "sent"]
    sent = next(e for e in events if e["notification"] == notification and e["status"] == "sent")
    assert sent["channel"] == "email"
    assert sent["broadcast"] is None
    assert sent["id"] > (ready["last"] or 0)


def test_a_socket_without_a_session_is_closed_with_the_policy_code(web: Web, personas: Personas) -> None:
    with console_socket(web, personas.alpha.domain) as ws:
        assert ws.closed_with() == (1008, "not signed in to this console")


def test_another_tenants_session_does_not_open_this_tenants_stream(web: Web, personas: Personas) -> None:
    betas = session_cookie(personas.beta.domain, "owner@beta.test")
    with console_socket(web, personas.alpha.domain, betas) as ws:
        code, _ = ws.closed_with()
    assert code == 1008
    # ...while on its own domain the same session is let in.
    with console_socket(web, personas.beta.domain, betas) as ws:
        assert ws.receive()["type"] == "ready"


def test_a_page_of_another_site_cannot_open_the_stream_with_the_users_cookie(
    web: Web, personas: Personas
) -> None:
    cookie = session_cookie(personas.alpha.domain, "owner@alpha.test")
    with console_socket(web, personas.alpha.domain, cookie, origin="http://evil.example") as ws:
        assert ws.closed_with() == (1008, "cross-origin connection refused")


def test_a_user_without_a_console_role_is_refused(web: Web, personas: Personas) -> None:
    from django.contrib.auth import get_user_model

    with schema_context(personas.alpha.tenant.schema_name):
        user = get_user_model().objects.create_user("norole@alpha.test", "norole@alpha.test", "pw")
    cookie = session_cookie(personas.alpha.domain, "norole@alpha.test")
    with console_socket(web, personas.alpha.domain, cookie) as ws:
        assert ws.closed_with() == (1008, "this user has no console role here")
    with schema_context(personas.alpha.tenant.schema_name):
        set_role(user, VIEWER)
    with console_socket(web, personas.alpha.domain, cookie) as ws:
        assert ws.receive()["type"] == "ready"


def test_an_unknown_host_is_refused_during_the_handshake(web: Web) -> None:
    with pytest.raises(InvalidStatus) as refused, console_socket(web, "nobody.localhost"):
        pass
    assert refused.value.response.status_code == 403


def test_a_bad_after_is_refused_with_a_reason(web: Web, personas: Personas) -> None:
    cookie = session_cookie(personas.alpha.domain, "owner@alpha.test")
    with console_socket(web, personas.alpha.domain, cookie, after="yesterday") as ws:
        assert ws.closed_with() == (4400, "after must be an event id (a whole number)")


# --- batching and catching up -----------------------------------------------------------------


def test_a_batch_of_deliveries_reaches_the_page_in_a_few_messages_not_one_per_event(
    web: Web, personas: Personas, worker: Process
) -> None:
    cookie = session_cookie(personas.alpha.domain, "owner@alpha.test")
    with console_socket(web, personas.alpha.domain, cookie) as ws:
        ws.receive()  # ready
        answer = post(
            personas,
            "/api/v1/notifications/batch",
            {"notifications": [email(f"batch-{i}", f"Batch {i}") for i in range(60)]},
        )
        ids = {item["id"] for item in answer["results"] if "id" in item}
        assert len(ids) == 60

        def all_sent(events: list[dict[str, Any]]) -> bool:
            return len({e["notification"] for e in events if e["status"] == "sent"} & ids) == 60

        events, messages = ws.events_until(all_sent)
    ours = [e for e in events if e["notification"] in ids]
    assert len(ours) == 180  # queued, sending and sent for each
    assert messages <= 12, f"{messages} messages for {len(ours)} events"


def test_after_a_reconnect_the_page_gets_what_it_missed(
    web: Web, personas: Personas, worker: Process
) -> None:
    cookie = session_cookie(personas.alpha.domain, "owner@alpha.test")
    with console_socket(web, personas.alpha.domain, cookie) as ws:
        last_seen = ws.receive()["last"] or 0
    # Offline: a notification is sent and delivered meanwhile.
    notification = post(personas, "/api/v1/notifications", email("offline-1", "While away"))["id"]
    with schema_context(personas.alpha.tenant.schema_name):
        wait_until(
            lambda: DeliveryEvent.objects.filter(
                delivery__notification_id=notification, status="sent"
            ).exists()
        )
    with console_socket(web, personas.alpha.domain, cookie, after=str(last_seen)) as ws:
        messages = [ws.receive()]
        while messages[-1]["type"] != "ready":
            messages.append(ws.receive())
    replayed = [e for m in messages if m["type"] == "events" for e in m["events"]]
    assert statuses_of(replayed, notification) == ["queued", "sending", "sent"]
    ready = messages[-1]
    assert ready["missed"] >= 3
    assert ready["more"] is False
    assert ready["last"] >= max(e["id"] for e in replayed)


def test_broadcast_progress_is_pushed_until_every_delivery_is_settled(
    web: Web, personas: Personas, worker: Process
) -> None:
    cookie = session_cookie(personas.alpha.domain, "owner@alpha.test")
    recipients = [{"external_id": f"bc-live-{i}", "email": f"bc-live-{i}@example.com"} for i in range(40)]
    with console_socket(web, personas.alpha.domain, cookie) as ws:
        ws.receive()  # ready
        broadcast = post(
            personas,
            "/api/v1/broadcasts",
            {"recipients": recipients, "channels": ["email"], "subject": "Hi all", "body": "News"},
        )["id"]
        seen: list[dict[str, Any]] = []
        while not (seen and seen[-1]["percent_settled"] == 100.0):
            message = ws.receive(timeout=30)
            body = message.get("broadcast") or {}
            if message["type"] == "broadcast" and body["id"] == broadcast and "percent_settled" in body:
                seen.append(body)
    final = seen[-1]
    assert final["deliveries"]["by_status"] == {"sent": 40}
    assert final["deliveries"]["expected"] == 40
