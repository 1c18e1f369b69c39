"""Fairness within a priority: one tenant's backlog does not hold another's work of that priority.

The fair dispatcher (started with the test worker) releases bulk batches, and critical, high and
normal ones while their queue is contended, round-robin across tenants into a short broker queue,
so beta's one batch goes out while alpha's twenty wait.
"""

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from django.conf import settings
from django_tenants.utils import schema_context

from notifications import dispatch, ratelimit
from notifications.fanout import SEND_BATCH
from notifications.tasks import send_deliveries
from tenants.schemas import use_public
from tests.conftest import Personas, Process, wait_until
from tests.fakes.smtp_server import FakeSmtpServer

pytestmark = [pytest.mark.worker, pytest.mark.usefixtures("live_db")]


def broadcast(persona: Any, tag: str, n: int) -> str:
    recipients = [{"external_id": f"{tag}-{i}", "email": f"{tag}-{i}@example.com"} for i in range(n)]
    body = {"channels": ["email"], "subject": "S", "body": "B", "recipients": recipients}
    response = persona.client().post("/api/v1/broadcasts", json.dumps(body), content_type="application/json")
    assert response.status_code == 202, response.content
    return str(response.json()["url"])


def send_one(persona: Any, priority: str, subject: str) -> str:
    """POST one email notification to a new address; the address."""
    address = f"one-{uuid.uuid4().hex[:8]}@example.com"
    body = {
        "recipient": {"external_id": f"u-{uuid.uuid4()}", "email": address},
        "channels": ["email"],
        "subject": subject,
        "body": "B",
        "priority": priority,
    }
    path, data = "/api/v1/notifications", json.dumps(body)
    response = persona.client().post(path, data, content_type="application/json")
    assert response.status_code == 202, response.content
    return address


BIG = 20 * SEND_BATCH  # a broadcast of 20 send batches
HELD = 8  # batches in alpha's list once its backlog is held (the broker has room for 4)


def sent_to(smtp_server: FakeSmtpServer, tag: str) -> int:
    return sum(1 for m in list(smtp_server.handler.messages) if m.rcpt_tos[0].startswith(f"{tag}-"))


def test_a_small_bulk_send_is_not_stuck_behind_another_tenants_big_one(
    worker: Process, smtp_server: FakeSmtpServer, personas: Personas
) -> None:
    big, small = f"big{uuid.uuid4().hex[:6]}", f"small{uuid.uuid4().hex[:6]}"
    broadcast(personas.alpha, big, BIG)
    backlog = redis.Redis.from_url(settings.REDIS_URL)
    wait_until(lambda: backlog.llen("herald:fair:bulk:alpha") >= HELD, timeout=60)  # alpha's backlog is held
    broadcast(personas.beta, small, 50)
    wait_until(lambda: sent_to(smtp_server, small) == 50, timeout=60)
    big_done_when_small_done = sent_to(smtp_server, big)
    # First in, first out would have sent all of alpha's first.
    assert big_done_when_small_done < 0.6 * BIG, big_done_when_small_done
    wait_until(lambda: sent_to(smtp_server, big) == BIG, timeout=120)  # and alpha's all go, once
    assert (
        len({m.rcpt_tos[0] for m in smtp_server.handler.messages if m.rcpt_tos[0].startswith(f"{big}-")})
        == BIG
    )


NORMAL_BIG = 3000  # three 1,000-item batch requests: 30 send batches of 100


def post_backlog(persona: Any, tag: str, n: int, priority: str) -> None:
    """POST `n` email notifications of `priority` through the batch API, 1,000 a request."""
    for start in range(0, n, 1000):
        items = [
            {
                "recipient": {"external_id": f"{tag}-{i}", "email": f"{tag}-{i}@example.com"},
                "channels": ["email"],
                "subject": "S",
                "body": "B",
                "priority": priority,
            }
            for i in range(start, start + 1000)
        ]
        batch = json.dumps({"notifications": items})
        response = persona.client().post(
            "/api/v1/notifications/batch", batch, content_type="application/json"
        )
        assert response.status_code == 202, response.content


def test_a_normal_notification_is_not_stuck_behind_another_tenants_normal_backlog(
    worker: Process, smtp_server: FakeSmtpServer, personas: Personas
) -> None:
    big = f"nbig{uuid.uuid4().hex[:6]}"
    post_backlog(personas.alpha, big, NORMAL_BIG, "normal")
    backlog = redis.Redis.from_url(settings.REDIS_URL)
    # alpha's backlog is held
    wait_until(lambda: backlog.llen("herald:fair:normal:alpha") >= HELD, timeout=60)
    one = send_one(personas.beta, "normal", "Your order shipped")
    # First in, first out would have sent all of alpha's first (measured: all 3,000); in turn,
    # beta's batch waits for the few of alpha's already released.
    goes_out_while_the_backlog_is_still_going(smtp_server, one, big)


def goes_out_while_the_backlog_is_still_going(smtp_server: FakeSmtpServer, one: str, backlog: str) -> None:
    """`one` is sent while under half of the NORMAL_BIG notifications tagged `backlog` are; then
    all of those go, each to its own address."""
    wait_until(lambda: smtp_server.messages_to(one), timeout=30)
    backlog_sent_by_then = sent_to(smtp_server, backlog)
    assert backlog_sent_by_then < 0.5 * NORMAL_BIG, backlog_sent_by_then
    wait_until(lambda: sent_to(smtp_server, backlog) == NORMAL_BIG, timeout=120)
    addresses = {
        m.rcpt_tos[0] for m in list(smtp_server.handler.messages) if m.rcpt_tos[0].startswith(f"{backlog}-")
    }
    assert len(addresses) == NORMAL_BIG


@pytest.fixture
def alpha_without_an_email_limit(personas: Personas) -> Iterator[None]:
    """Alpha may send as fast as the worker can: what a test measures is then the order in which
    the tenants' work is released, not alpha's limit (a batch that meets it is published again for
    later, and another tenant's queued behind it goes meanwhile)."""
    tenant = personas.alpha.tenant
    ratelimit.reset("send:alpha:email")
    tenant.rate_limits = {"email": {"rate": 1_000_000, "burst": 1_000_000}}
    tenant.save()
    yield
    use_public()  # the test's requests may have left the connection in a tenant's schema
    tenant.rate_limits = {}
    tenant.save()
    ratelimit.reset("send:alpha:email")


@pytest.mark.parametrize("priority", ["critical", "high"])
def test_an_urgent_notification_is_not_stuck_behind_another_tenants_backlog_of_its_priority(
    priority: str,
    worker: Process,
    smtp_server: FakeSmtpServer,
    personas: Personas,
    alpha_without_an_email_limit: None,
) -> None:
    """Alpha floods critical (or high) through the batch API; beta's one notification of that
    priority goes out while alpha's are still going. First in, first out, beta's waited behind all
    of alpha's, which were all in the broker before it (measured: 2,900 to 3,000 of them sent)."""
    big = f"{priority[0]}big{uuid.uuid4().hex[:6]}"
    post_backlog(personas.alpha, big, NORMAL_BIG, priority)
    one = send_one(personas.beta, priority, "Your sign-in code")
    goes_out_while_the_backlog_is_still_going(smtp_server, one, big)


def test_a_critical_notification_overtakes_a_bulk_backlog(
    worker: Process, smtp_server: FakeSmtpServer, personas: Personas
) -> None:
    big = f"bulk{uuid.uuid4().hex[:6]}"
    broadcast(personas.alpha, big, BIG)
    backlog = redis.Redis.from_url(settings.REDIS_URL)
    wait_until(lambda: backlog.llen("herald:fair:bulk:alpha") >= HELD, timeout=60)
    urgent = send_one(personas.alpha, "critical", "Your sign-in code")
    wait_until(lambda: smtp_server.messages_to(urgent), timeout=30)
    # The same tenant's bulk mails, queued first, are still going.
    assert sent_to(smtp_server, big) < 0.6 * BIG
    wait_until(lambda: sent_to(smtp_server, big) == BIG, timeout=120)


def test_the_dispatcher_counts_what_waits_in_a_broker_queue() -> None:
    """The dispatcher's count of a queue (one kept Redis client) matches what was published to it,
    across kombu's priority lists, and an unknown queue counts as empty."""
    from celery import current_app

    from notifications.dispatch import Dispatcher

    queue = f"test-count-{uuid.uuid4().hex[:8]}"
    dispatcher = Dispatcher()
    assert dispatcher.queued(queue) == 0
    with current_app.producer_or_acquire() as producer:
        for priority in (None, 0, 5, 9):
            current_app.send_task("test.nothing", queue=queue, priority=priority, producer=producer)
    try:
        assert dispatcher.queued(queue) == 4
        assert dispatcher._sizer is not None  # counted with the kept client, not queue_declare
        channel: Any = dispatcher.broker.default_channel
        assert dispatcher.queued(queue) == channel._size(queue)  # kombu's own count
    finally:
        channel = dispatcher.broker.default_channel
        lists = [channel._q_for_pri(queue, p) for p in channel.priority_steps]
        redis.Redis.from_url(settings.CELERY_BROKER_URL).delete(*lists)


def test_a_release_the_worker_rejects_for_a_deactivated_tenant_frees_its_place_at_once(
    worker: Process, personas: Personas
) -> None:
    """A released batch takes a place in the dispatcher's bound until its task ends. A task whose
    tenant was deactivated since is rejected before its body runs: the rejection frees the place
    (not its lease, 150 s later, while the others' work waits for it)."""
    task_id = str(uuid.uuid4())
    places = redis.Redis.from_url(settings.REDIS_URL)
    places.zadd(dispatch.RELEASED_KEY, {task_id: int(time.time() * 1000) + dispatch.RELEASE_LEASE_MS})
    with schema_context(personas.inactive.tenant.schema_name):
        send_deliveries.apply_async(args=([str(uuid.uuid4())],), queue="critical", task_id=task_id)
    line = next(line for line in worker.wait_for_log(f"id={task_id}").splitlines() if f"id={task_id}" in line)
    assert "unknown or inactive tenant" in line
    assert places.zscore(dispatch.RELEASED_KEY, task_id) is None


def test_a_release_whose_task_fails_before_sending_frees_its_place_at_once(
    worker: Process, personas: Personas
) -> None:
    """However a released batch's task ends, its place is freed when it ends: here its first query
    fails (an id that is no UUID), before the send and its own clean-up."""
    task_id = str(uuid.uuid4())
    places = redis.Redis.from_url(settings.REDIS_URL)
    places.zadd(dispatch.RELEASED_KEY, {task_id: int(time.time() * 1000) + dispatch.RELEASE_LEASE_MS})
    with schema_context(personas.alpha.tenant.schema_name):
        send_deliveries.apply_async(args=(["not-a-uuid"],), queue="critical", task_id=task_id)
    log = worker.wait_for_log(f"{task_id}] raised")
    assert "DataError" in log or "invalid input syntax for type uuid" in log
    wait_until(lambda: places.zscore(dispatch.RELEASED_KEY, task_id) is None, timeout=10)
