"""The tenant console in headless Chromium: signing in, live rows, live broadcast progress,
reconnect catch-up, and the walls between tenants.

Herald's ASGI server (HTTP and the /ws/console/ socket), a real Celery worker with the fair
dispatcher, the local SMTP server and Redis as the channel layer all run for real; the test
process sends through the REST API like a tenant's backend. To see a row *before* it is sent,
a test holds the tenant's sends back with its own rate limit (the real limiter, filled up in
Redis for a few seconds): the delivery then waits in `queued`, as it would for a busy tenant.
"""

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django_tenants.utils import schema_context
from playwright.sync_api import BrowserContext, Page, expect

from notifications import ratelimit
from notifications.models import Delivery
from tests.conftest import Persona, Personas, Process, wait_until
from tests.e2e.conftest import HeraldServer

pytestmark = pytest.mark.usefixtures("live_db", "worker")

PASSWORD = "pw"


@pytest.fixture
def hold_sends(personas: Personas) -> Iterator[Callable[[Persona, float], None]]:
    """Fill a tenant's email send limit so that its next sends wait about `seconds`."""
    held: list[str] = []

    def hold(persona: Persona, seconds: float) -> None:
        limit = settings.SEND_RATE_LIMITS["email"]
        rate, burst = float(limit["rate"]), int(limit["burst"])
        key = f"send:{persona.tenant.schema_name}:email"
        ratelimit.reserve(key, rate, burst, cost=int(rate * seconds) + burst)
        held.append(key)

    yield hold
    for key in held:
        ratelimit.reset(key)


def sign_in(page: Page, server: HeraldServer, persona: Persona, email: str) -> None:
    page.goto(server.url(persona, "/console/login/"))
    page.fill("input[name=username]", email)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/console/")


def wait_live(page: Page) -> None:
    page.wait_for_function("window.HeraldLive && window.HeraldLive.state === 'live'", timeout=15_000)


def send_email(persona: Persona, external_id: str, subject: str) -> str:
    body = {
        "recipient": {"external_id": external_id, "email": f"{external_id}@example.com"},
        "channels": ["email"],
        "subject": subject,
        "body": "Hello from the browser test",
    }
    response = persona.client().post(
        "/api/v1/notifications", json.dumps(body), content_type="application/json"
    )
    assert response.status_code == 202, response.content
    notification_id: str = response.json()["id"]
    return notification_id


def delivery_status(persona: Persona, notification_id: str) -> str:
    with schema_context(persona.tenant.schema_name):
        status: str = Delivery.objects.get(notification_id=notification_id).status
    return status


# Records every status a notification row's badge shows, so the test can tell what the page
# displayed over time, not only at the end.
WATCH_STATUSES = """
() => {
  window.__statuses = {};
  window.__pageLoads = (window.__pageLoads || 0) + 1;
  const note = (row) => {
    const id = row.dataset.notificationId;
    const badge = row.querySelector(".status");
    if (!id || !badge) return;
    const seen = (window.__statuses[id] = window.__statuses[id] || []);
    if (seen[seen.length - 1] !== badge.dataset.status) seen.push(badge.dataset.status);
  };
  new MutationObserver(() => document.querySelectorAll("tr[data-notification-id]").forEach(note))
    .observe(document.body, {
      subtree: true, childList: true, attributes: true, attributeFilter: ["data-status"],
    });
}
"""


def test_an_admin_signs_in_and_sees_a_new_notification_go_from_queued_to_sent_without_reloading(
    herald_server: HeraldServer,
    personas: Personas,
    browser_context: BrowserContext,
    hold_sends: Callable[[Persona, float], None],
    screenshot: Callable[[Page, str], Path],
) -> None:
    page = browser_context.new_page()
    sign_in(page, herald_server, personas.alpha, "owner@alpha.test")
    page.goto(herald_server.url(personas.alpha, "/console/notifications/"))
    wait_live(page)
    page.evaluate(WATCH_STATUSES)

    hold_sends(personas.alpha, 3.0)
    notification_id = send_email(personas.alpha, "browser-live-1", "Your invoice is ready")

    row = page.locator(f'tr[data-notification-id="{notification_id}"]')
    expect(row).to_be_visible(timeout=10_000)
    expect(row.locator(".status")).to_have_attribute("data-status", "queued")
    screenshot(page, "queued")
    expect(row.locator(".status")).to_have_attribute("data-status", "sent", timeout=20_000)
    screenshot(page, "sent")

    seen = page.evaluate(f"() => window.__statuses['{notification_id}']")
    assert seen[0] == "queued"
    assert seen[-1] == "sent"
    assert page.evaluate("() => window.__pageLoads") == 1  # the same page all along: no reload
    assert delivery_status(personas.alpha, notification_id) == "sent"


def test_a_broadcasts_progress_bar_fills_to_100_percent_on_its_own(
    herald_server: HeraldServer,
    personas: Personas,
    browser_context: BrowserContext,
    hold_sends: Callable[[Persona, float], None],
    screenshot: Callable[[Page, str], Path],
) -> None:
    page = browser_context.new_page()
    sign_in(page, herald_server, personas.alpha, "owner@alpha.test")
    hold_sends(personas.alpha, 3.0)
    recipients = [
        {"external_id": f"bc-browser-{i}", "email": f"bc-browser-{i}@example.com"} for i in range(60)
    ]
    body = {"recipients": recipients, "channels": ["email"], "subject": "Spring sale", "body": "20% off"}
    response = personas.alpha.client().post(
        "/api/v1/broadcasts", json.dumps(body), content_type="application/json"
    )
    assert response.status_code == 202, response.content
    broadcast_id = response.json()["id"]

    page.goto(herald_server.url(personas.alpha, f"/console/broadcasts/{broadcast_id}/"))
    wait_live(page)
    bar = page.locator("#broadcast-progress")
    first = float(bar.get_attribute("data-percent") or "0")
    assert first < 100.0, "the sends were held back: the page must open before they are done"
    screenshot(page, "filling")
    expect(bar).to_have_attribute("data-percent", "100.0", timeout=30_000)
    expect(page.locator("#broadcast-settled")).to_have_text("60")
    screenshot(page, "full")


def test_after_losing_its_connection_the_page_catches_up_on_what_it_missed(
    herald_server: HeraldServer, personas: Personas, browser_context: BrowserContext
) -> None:
    page = browser_context.new_page()
    sign_in(page, herald_server, personas.alpha, "owner@alpha.test")
    page.goto(herald_server.url(personas.alpha, "/console/notifications/"))
    wait_live(page)
    page.evaluate(WATCH_STATUSES)

    page.evaluate("() => HeraldLive.pause()")
    page.wait_for_function("HeraldLive.state === 'offline'")
    notification_id = send_email(personas.alpha, "browser-offline-1", "Sent while you were away")
    wait_until(lambda: delivery_status(personas.alpha, notification_id) == "sent", timeout=30)
    time.sleep(0.5)  # anything live would have arrived by now; the page is offline
    assert page.locator(f'tr[data-notification-id="{notification_id}"]').count() == 0

    page.evaluate("() => HeraldLive.resume()")
    wait_live(page)
    row = page.locator(f'tr[data-notification-id="{notification_id}"]')
    expect(row.locator(".status")).to_have_attribute("data-status", "sent", timeout=10_000)
    assert page.evaluate("() => window.__pageLoads") == 1


SOCKET_CLOSE = """
async (url) => await new Promise((resolve) => {
  const ws = new WebSocket(url);
  ws.onmessage = (m) => resolve({code: null, message: JSON.parse(m.data).type});
  ws.onclose = (e) => resolve({code: e.code, reason: e.reason});
})
"""


def test_a_user_of_another_tenant_can_open_neither_this_console_nor_its_socket(
    herald_server: HeraldServer, personas: Personas, browser_context: BrowserContext
) -> None:
    alphas = send_email(personas.alpha, "browser-private-1", "Alpha's private notice")
    page = browser_context.new_page()
    sign_in(page, herald_server, personas.beta, "owner@beta.test")

    # Alpha's notification, asked for on beta's console: not found.
    response = page.goto(herald_server.url(personas.beta, f"/console/notifications/{alphas}/"))
    assert response is not None
    assert response.status == 404

    # Beta's owner on alpha's console: not signed in there, and beta's password doesn't open it.
    page.goto(herald_server.url(personas.alpha, "/console/"))
    assert "/console/login/" in page.url
    page.fill("input[name=username]", "owner@beta.test")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    expect(page.locator("body")).to_contain_text("match an account of")
    assert "/console/login/" in page.url

    # Beta's session cookie carried over to alpha's domain by hand opens nothing either.
    beta_session = next(c for c in browser_context.cookies() if c["name"] == "sessionid")
    browser_context.add_cookies(
        [{"name": "sessionid", "value": beta_session["value"], "domain": personas.alpha.domain, "path": "/"}]
    )
    response = page.goto(herald_server.url(personas.alpha, "/console/notifications/"))
    assert response is not None
    assert "/console/login/" in page.url

    # Alpha's socket, from alpha's own page with beta's session: closed with the policy code.
    closed: dict[str, Any] = page.evaluate(
        SOCKET_CLOSE, f"ws://{personas.alpha.domain}:{herald_server.port}/ws/console/"
    )
    assert closed["code"] == 1008
    # ...and from beta's signed-in page, across origins: closed the same way.
    page.goto(herald_server.url(personas.beta, "/console/"))
    wait_live(page)
    closed = page.evaluate(SOCKET_CLOSE, f"ws://{personas.alpha.domain}:{herald_server.port}/ws/console/")
    assert closed["code"] == 1008
    # Beta's own socket, on beta's page, opens.
    opened = page.evaluate(SOCKET_CLOSE, f"ws://{personas.beta.domain}:{herald_server.port}/ws/console/")
    assert opened == {"code": None, "message": "ready"}


def test_the_dashboard_counts_sends_live_and_is_photographed_for_the_readme(
    herald_server: HeraldServer,
    personas: Personas,
    browser_context: BrowserContext,
    worker: Process,
    screenshot: Callable[[Page, str], Path],
) -> None:
    page = browser_context.new_page()
    page.set_viewport_size({"width": 1280, "height": 900})
    sign_in(page, herald_server, personas.alpha, "owner@alpha.test")
    wait_live(page)
    sent = page.locator("#counter-sent .value")
    before = int(sent.get_attribute("data-value") or "0")
    ids = [send_email(personas.alpha, f"browser-dash-{i}", f"Weekly digest {i}") for i in range(5)]
    wait_until(lambda: all(delivery_status(personas.alpha, i) == "sent" for i in ids), timeout=30)
    expect(sent).to_have_attribute("data-value", str(before + 5), timeout=10_000)
    screenshot(page, "dashboard")
