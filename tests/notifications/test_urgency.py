"""Bulk work steps aside while urgent work is in flight (notifications/urgency.py)."""

import json
import threading
import time
import uuid

import pytest
from django.test import override_settings

from notifications import ratelimit, urgency
from tenants.redis_client import get_redis
from tests.conftest import Personas, Process, wait_until
from tests.fakes.smtp_server import FakeSmtpServer


@pytest.fixture(autouse=True)
def _no_notes() -> None:
    get_redis().delete(urgency.URGENT_KEY)
    urgency._budget.reset()  # each test starts with this process's waiting budget full


def test_bulk_goes_at_once_when_nothing_urgent_is_in_flight() -> None:
    assert urgency.yield_to_urgent() < 0.05


@override_settings(BULK_YIELD_MAX_MS=300)
def test_bulk_waits_while_urgent_work_is_in_flight_but_never_longer_than_the_cap() -> None:
    urgency.note("stuck")
    waited = urgency.yield_to_urgent()
    assert 0.29 <= waited < 0.6, waited
    urgency.done("stuck")


@override_settings(BULK_YIELD_MAX_MS=2000)
def test_bulk_goes_as_soon_as_the_urgent_work_is_done() -> None:
    noted = urgency.note()
    threading.Timer(0.15, urgency.done, args=(noted,)).start()
    waited = urgency.yield_to_urgent()
    assert 0.12 <= waited < 0.5, waited


@override_settings(BULK_YIELD_MAX_MS=2000)
def test_a_note_nobody_cleared_lapses() -> None:
    get_redis().zadd(urgency.URGENT_KEY, {"died": int(time.time() * 1000) - 1})
    assert urgency.yield_to_urgent() < 0.05
    assert get_redis().zcard(urgency.URGENT_KEY) == 0


@override_settings(BULK_YIELD_MAX_MS=100, BULK_YIELD_SHARE=0.5)
def test_under_urgent_work_that_never_stops_bulk_work_keeps_its_share_of_the_time() -> None:
    urgency.note("endless")  # a tenant that sends one urgent notification after another
    worked, waits = [], []
    with urgency.bulk_work():
        for _ in range(20):
            step = time.monotonic()
            time.sleep(0.02)  # a step of bulk work (a claim, a provider call)
            before = time.monotonic()
            urgency.checkpoint()
            worked.append(before - step)
            waits.append(time.monotonic() - before)
    urgency.done("endless")
    # It waited each time (the first wait spends the full bank)...
    assert waits[0] >= 0.09, waits
    assert all(w > 0.01 for w in waits), waits
    # ...but after that never longer than it had just worked (share 0.5: a second of waiting per
    # second of work; the tolerance is one Redis round trip), so it kept about half the time.
    slack = 0.01
    assert all(w <= work + slack for w, work in zip(waits[1:], worked[1:], strict=True)), (waits, worked)
    assert sum(waits) <= 0.1 + sum(worked) + slack * len(waits), (waits, worked)


@override_settings(BULK_YIELD_MAX_MS=100, BULK_YIELD_SHARE=0.5)
def test_a_bulk_process_that_was_idle_may_wait_the_full_cap_again() -> None:
    urgency.note("urgent")
    with urgency.bulk_work():
        assert urgency.yield_to_urgent() >= 0.09  # spends the bank
        assert urgency.yield_to_urgent() < 0.03  # nothing earned in between
        time.sleep(0.12)  # working (or idle) for a while earns it back, up to the cap
        assert 0.09 <= urgency.yield_to_urgent() < 0.2
    urgency.done("urgent")


@override_settings(BULK_YIELD_MAX_MS=100, BULK_YIELD_SHARE=0)
def test_a_share_of_zero_means_bulk_work_never_waits() -> None:
    urgency.note("urgent")
    assert urgency.yield_to_urgent() < 0.01
    urgency.done("urgent")


@override_settings(BULK_YIELD_MAX_MS=0)
def test_yielding_can_be_turned_off() -> None:
    urgency.note("on")
    assert urgency.yield_to_urgent() == 0.0


@override_settings(BULK_YIELD_MAX_MS=300)
def test_checkpoints_wait_only_inside_bulk_work() -> None:
    urgency.note("urgent")
    started = time.monotonic()
    urgency.checkpoint()  # not bulk work: goes at once
    assert time.monotonic() - started < 0.05
    with urgency.bulk_work():
        started = time.monotonic()
        urgency.checkpoint()
        assert time.monotonic() - started >= 0.29
    started = time.monotonic()
    urgency.checkpoint()  # out of it again
    assert time.monotonic() - started < 0.05
    urgency.done("urgent")


@pytest.mark.worker
@pytest.mark.usefixtures("live_db")
def test_an_urgent_send_is_noted_from_its_publish_and_cleared_when_its_task_ends(
    worker: Process, smtp_server: FakeSmtpServer, personas: Personas
) -> None:
    tag = f"urgent-{uuid.uuid4().hex[:6]}"
    client = personas.alpha.client()
    for i in range(3):
        body = {
            "recipient": {"external_id": f"{tag}-{i}", "email": f"{tag}-{i}@example.com"},
            "channels": ["email"],
            "subject": "S",
            "body": "B",
            "priority": "critical",
        }
        response = client.post("/api/v1/notifications", json.dumps(body), content_type="application/json")
        assert response.status_code == 202, response.content
    wait_until(
        lambda: sum(1 for m in list(smtp_server.handler.messages) if m.rcpt_tos[0].startswith(tag)) == 3,
        timeout=30,
    )
    # The publish and the task note the same id, and the task clears it when it ends: nothing is
    # left to hold bulk work back (a leaked note would stay for URGENT_LEASE_MS, 5 s).
    wait_until(lambda: urgency.in_flight() == 0, timeout=1.5)


@pytest.mark.worker
@pytest.mark.usefixtures("live_db")
def test_an_urgent_send_put_off_by_its_rate_limit_holds_no_bulk_work_back_meanwhile(
    worker: Process, smtp_server: FakeSmtpServer, personas: Personas
) -> None:
    key = "send:alpha:email"
    ratelimit.reset(key)
    ratelimit.reserve(key, 500.0, 500, cost=2500)  # the next email of alpha's is due in ~4 s
    address = f"later-{uuid.uuid4().hex[:6]}@example.com"
    body = {
        "recipient": {"external_id": address, "email": address},
        "channels": ["email"],
        "subject": "S",
        "body": "B",
        "priority": "critical",
    }
    client = personas.alpha.client()
    response = client.post("/api/v1/notifications", json.dumps(body), content_type="application/json")
    assert response.status_code == 202, response.content
    url = response.json()["url"]
    # Noted at publish; its task finds its turn ~4 s away, publishes itself again for then and
    # clears the note at once (left alone it would lapse only after URGENT_LEASE_MS, 5 s).
    wait_until(lambda: urgency.in_flight() == 0, timeout=2)
    assert client.get(url).json()["status"] == "queued"
    wait_until(lambda: smtp_server.messages_to(address), timeout=30)  # and it does go, once
    assert len(smtp_server.messages_to(address)) == 1
    ratelimit.reset(key)
