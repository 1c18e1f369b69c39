"""Herald's push snippet and service worker in headless Chromium, on a tenant's domain.

A real push subscription cannot be made offline (pushManager.subscribe talks to the browser
vendor's push service), so the page's pushManager.subscribe is replaced by one returning a
subscription of our own making, and the push itself is fired into the service worker through
the DevTools protocol (ServiceWorker.deliverPushMessage), as the browser does when a push
service delivers a message.
"""

import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import BrowserContext, CDPSession, Page

from notifications.links import recipient_token
from notifications.models import PushSubscription, Recipient
from tenants.schemas import use_public, use_tenant
from tests.conftest import Persona, Personas
from tests.e2e.conftest import HeraldServer
from tests.fakes.webpush_server import FakePushService

pytestmark = pytest.mark.usefixtures("live_db")

# What the page's PushManager answers instead of the browser vendor's push service.
FAKE_SUBSCRIBE = """
(subscription) => {
  const made = {
    endpoint: subscription.endpoint,
    options: { applicationServerKey: null },
    toJSON: () => subscription,
    unsubscribe: async () => true,
  };
  let current = null;
  PushManager.prototype.subscribe = async function (options) {
    window.__subscribeOptions = {
      userVisibleOnly: options.userVisibleOnly,
      keyLength: options.applicationServerKey.byteLength,
    };
    current = made;
    return made;
  };
  PushManager.prototype.getSubscription = async function () { return current; };
}
"""

NOTIFICATIONS = """
async () => {
  const registration = await navigator.serviceWorker.getRegistration("/u/push/");
  const shown = await registration.getNotifications();
  return shown.map((n) => ({ title: n.title, body: n.body, tag: n.tag, data: n.data }));
}
"""


def alpha_end_user(persona: Persona) -> tuple[Recipient, str]:
    use_tenant(persona.tenant)
    recipient = Recipient.objects.create(external_id=f"browser-{uuid.uuid4()}")
    token = recipient_token(str(recipient.id))
    use_public()
    return recipient, token


def registration_id(page: Page, cdp: CDPSession, scope: str) -> str:
    """The service worker registration's id for `scope`, as DevTools knows it."""
    registrations: dict[str, str] = {}

    def updated(event: dict[str, Any]) -> None:
        for registration in event["registrations"]:
            if not registration.get("isDeleted"):
                registrations[registration["scopeURL"]] = registration["registrationId"]

    cdp.on("ServiceWorker.workerRegistrationUpdated", updated)
    cdp.send("ServiceWorker.enable")
    for _ in range(100):  # Playwright hands events over only while it is called: wait through it
        if scope in registrations:
            return registrations[scope]
        page.wait_for_timeout(100)
    raise AssertionError(f"no service worker registration for {scope}; DevTools knows {registrations}")


def wait_for_notifications(page: Page, timeout_ms: int = 10000) -> list[dict[str, Any]]:
    for _ in range(timeout_ms // 100):
        shown = shown_notifications(page)
        if shown:
            return shown
        page.wait_for_timeout(100)
    raise AssertionError("the service worker showed no notification")


def push_until_shown(page: Page, cdp: CDPSession, push: dict[str, str]) -> list[dict[str, Any]]:
    """Fire `push` into the worker and wait until it shows something.

    DevTools can hand a push to a worker version that is still starting, and the event is then
    lost (seen on loaded CI machines, in both tests here), so it is fired once more after a quiet
    spell. Both tests' pushes carry a delivery_id, which the worker makes the notification's tag,
    so if the first push arrives late after all, the second replaces it instead of doubling it
    and the callers' exact checks still hold.
    """
    cdp.send("ServiceWorker.deliverPushMessage", push)
    try:
        return wait_for_notifications(page, timeout_ms=8000)
    except AssertionError:
        cdp.send("ServiceWorker.deliverPushMessage", push)
        return wait_for_notifications(page, timeout_ms=15000)


def shown_notifications(page: Page) -> list[dict[str, Any]]:
    shown: list[dict[str, Any]] = page.evaluate(NOTIFICATIONS)
    return shown


def test_the_demo_page_registers_the_worker_posts_the_subscription_and_shows_a_push(
    personas: Personas,
    herald_server: HeraldServer,
    browser_context: BrowserContext,
    push_service_for_browser: FakePushService,
    screenshot: Callable[[Page, str], Path],
) -> None:
    alpha = personas.alpha
    origin = herald_server.url(alpha)
    recipient, token = alpha_end_user(alpha)
    # Keys of a real key pair (the endpoint must be https: the live server runs test settings).
    subscription = push_service_for_browser.new_subscription().as_json()
    subscription["endpoint"] = f"https://push.example.test/{uuid.uuid4().hex}"
    browser_context.grant_permissions(["notifications"], origin=origin)
    browser_context.add_init_script(f"({FAKE_SUBSCRIBE})({json.dumps(subscription)})")
    page = browser_context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))

    page.goto(f"{origin}/u/push/demo/?token={token}")

    # The snippet registered Herald's service worker and it became active.
    page.wait_for_selector("html[data-worker='active']", timeout=15000)
    assert page.evaluate("window.isSecureContext")
    assert page.text_content("#key") == page.evaluate("HeraldPush.publicKey()")

    # Subscribing sends the browser's subscription to Herald for this recipient.
    page.click("#subscribe")
    page.wait_for_selector("html[data-subscription]", timeout=15000)
    stored_id = page.get_attribute("html", "data-subscription")
    assert stored_id is not None
    assert stored_id != "failed", page.text_content("#status")
    assert page.evaluate("window.__subscribeOptions") == {"userVisibleOnly": True, "keyLength": 65}
    use_tenant(alpha.tenant)
    stored = PushSubscription.objects.get(id=stored_id)
    assert (stored.recipient_id, stored.endpoint) == (recipient.id, subscription["endpoint"])
    assert (stored.p256dh, stored.auth) == (subscription["keys"]["p256dh"], subscription["keys"]["auth"])
    assert "Chrome" in stored.user_agent
    use_public()

    # A push arrives: the worker shows it with the payload's title, body and url.
    cdp = browser_context.new_cdp_session(page)
    delivery_id = str(uuid.uuid4())
    payload = {
        "title": "Your order shipped",
        "body": "It arrives on Tuesday.",
        "url": f"{origin}/orders/42",
        "data": {"order": 42},
        "delivery_id": delivery_id,
    }
    push = {
        "origin": origin,
        "registrationId": registration_id(page, cdp, f"{origin}/u/push/"),
        "data": json.dumps(payload),
    }
    shown = push_until_shown(page, cdp, push)
    assert shown == [
        {
            "title": "Your order shipped",
            "body": "It arrives on Tuesday.",
            "tag": f"herald-{delivery_id}",
            "data": {"order": 42, "url": f"{origin}/orders/42", "delivery_id": delivery_id},
        }
    ]
    assert errors == []

    page.evaluate(
        """(shown) => {
          const pre = document.createElement("pre");
          pre.id = "shown";
          pre.textContent = "Notifications shown by the service worker:\\n" + JSON.stringify(shown, null, 2);
          document.body.appendChild(pre);
        }""",
        shown,
    )
    assert screenshot(page, "notification-shown").stat().st_size > 0


def test_the_worker_never_offers_a_script_url_to_open(
    personas: Personas, herald_server: HeraldServer, browser_context: BrowserContext
) -> None:
    alpha = personas.alpha
    origin = herald_server.url(alpha)
    _, token = alpha_end_user(alpha)
    browser_context.grant_permissions(["notifications"], origin=origin)
    page = browser_context.new_page()
    page.goto(f"{origin}/u/push/demo/?token={token}")
    page.wait_for_selector("html[data-worker='active']", timeout=15000)

    cdp = browser_context.new_cdp_session(page)
    push = {
        "origin": origin,
        "registrationId": registration_id(page, cdp, f"{origin}/u/push/"),
        "data": json.dumps(
            {"title": "Hi", "body": "there", "url": "javascript:alert(1)", "delivery_id": str(uuid.uuid4())}
        ),
    }
    (shown,) = push_until_shown(page, cdp, push)
    assert shown["title"] == "Hi"
    assert shown["data"]["url"] == ""


@pytest.fixture(scope="module")
def push_service_for_browser() -> Any:
    service = FakePushService().start()
    yield service
    service.stop()
