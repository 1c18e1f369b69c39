"""Nothing lost, nothing twice: a broker outage during a POST and a worker killed mid-send.

Both end with the delivery sent exactly once. The database is the truth: the API writes rows
before it publishes, the sweeper re-enqueues what no worker took (or what a dead worker held),
and a send claims its delivery first, so a redelivered message sends nothing.
"""

import json
import os
import signal
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import psutil
import pytest
import redis
import requests
from django.utils import timezone
from django_tenants.utils import schema_context
from kombu import Connection

from notifications.fanout import sweep_broadcasts
from notifications.models import Broadcast, BroadcastStatus, Delivery, DeliveryStatus, Notification, Recipient
from notifications.tasks import send_deliveries, sweep_stuck_deliveries
from tests.conftest import Broker, Personas, Process, celery_bin, port_open, service_env, wait_until
from tests.fakes.smtp_server import FakeSmtpServer, free_port
from tests.test_broker_timeouts import PUBLISH_GIVES_UP_WITHIN

pytestmark = [pytest.mark.worker, pytest.mark.usefixtures("live_db")]


def delivered(personas: Personas, delivery_id: str) -> Delivery:
    def sent() -> Delivery | None:
        with schema_context("alpha"):
            d = Delivery.objects.get(id=delivery_id)
        return d if d.status == DeliveryStatus.SENT else None

    result: Delivery = wait_until(sent, timeout=40, interval=0.3)
    return result


@contextmanager
def web_process(smtp_server: FakeSmtpServer, broker_url: str, name: str) -> Iterator[tuple[int, Process]]:
    """A web process of its own publishing to `broker_url`: (its port, the process)."""
    port = free_port()
    web = Process(
        name,
        [
            str(Path(sys.executable).parent / "uvicorn"),
            "tenant_platform.asgi:application",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        service_env(smtp_server.url, TEST_CELERY_BROKER_URL=broker_url),
    )
    try:
        wait_until(lambda: port_open(port), timeout=30)
        yield port, web
    finally:
        web.stop()


def post_as_alpha(personas: Personas, port: int, path: str, body: dict[str, Any]) -> requests.Response:
    return requests.post(
        f"http://127.0.0.1:{port}{path}",
        data=json.dumps(body),
        timeout=30,
        headers={
            "Host": "alpha.localhost",
            "Authorization": f"Bearer {personas.alpha.api_key}",
            "Content-Type": "application/json",
        },
    )


def post_while_the_broker_is_down(
    smtp_server: FakeSmtpServer, personas: Personas, broker: Broker, path: str, body: dict[str, Any]
) -> tuple[dict[str, Any], str]:
    """POST to a web process of its own whose broker is then stopped; (answer, its log)."""
    with web_process(smtp_server, broker.url, "web-broker-outage") as (port, web):
        broker.stop()  # the web process's broker goes away
        response = post_as_alpha(personas, port, path, body)
        assert response.status_code == 202, response.text
        answer: dict[str, Any] = response.json()
        return answer, web.log()


def test_a_post_during_a_broker_outage_is_accepted_and_delivered_once_afterwards(
    worker: Process, smtp_server: FakeSmtpServer, personas: Personas, broker: Broker, settings: Any
) -> None:
    address = f"outage-{uuid.uuid4().hex[:8]}@example.com"
    body = {
        "recipient": {"external_id": f"u-{uuid.uuid4()}", "email": address},
        "channels": ["email"],
        "subject": "Still here",
        "body": "Hi",
    }
    answer, log = post_while_the_broker_is_down(smtp_server, personas, broker, "/api/v1/notifications", body)
    assert "could not enqueue" in log
    notification_id = answer["id"]
    with schema_context("alpha"):
        (delivery,) = Delivery.objects.filter(notification_id=notification_id)
        assert delivery.status == DeliveryStatus.QUEUED  # written, waiting, not lost
        # The broker is back (beat runs the sweeper every 30 s; here it runs now, with no grace).
        settings.SWEEP_QUEUED_AFTER = 0
        assert sweep_stuck_deliveries()["enqueued"] >= 1
    delivered(personas, str(delivery.id))
    assert len(smtp_server.messages_to(address)) == 1


def test_a_web_process_that_published_before_an_outage_accepts_during_it_and_publishes_after_it(
    smtp_server: FakeSmtpServer, personas: Personas, broker: Broker
) -> None:
    """The web process keeps its broker channel (and its Redis client) from one POST to the next:
    an outage still answers 202 at once, and once the broker is back the same process publishes
    to it again."""
    port = free_port()
    web = Process(
        "web-broker-flap",
        [
            str(Path(sys.executable).parent / "uvicorn"),
            "tenant_platform.asgi:application",
            "--port",
            str(port),
        ],
        service_env(smtp_server.url, TEST_CELERY_BROKER_URL=broker.url),
    )

    def post() -> requests.Response:
        body = {
            "recipient": {"external_id": f"u-{uuid.uuid4()}", "email": "flap@example.com"},
            "channels": ["email"],
            "subject": "Still here",
            "body": "Hi",
            "priority": "high",
        }
        return requests.post(
            f"http://127.0.0.1:{port}/api/v1/notifications",
            data=json.dumps(body),
            timeout=30,
            headers={"Authorization": f"Bearer {personas.alpha.api_key}", "Content-Type": "application/json"},
        )

    def waiting() -> int:
        return int(redis.Redis.from_url(broker.url).llen("high"))

    try:
        wait_until(lambda: port_open(port), timeout=30)
        assert post().status_code == 202
        assert waiting() == 1
        broker.stop()
        started = time.monotonic()
        assert post().status_code == 202  # written, left queued for the sweeper
        assert time.monotonic() - started < 5
        assert "could not enqueue" in web.log()
        broker.start()  # a new, empty server on the same port
        assert post().status_code == 202
        assert waiting() == 1
    finally:
        web.stop()


def test_a_worker_killed_mid_send_leaves_the_delivery_to_be_sent_once(
    worker: Process, smtp_server: FakeSmtpServer, personas: Personas, broker: Broker, settings: Any
) -> None:
    address = f"killed-{uuid.uuid4().hex[:8]}@example.com"
    with schema_context("alpha"):
        recipient = Recipient.objects.create(external_id=f"u-{uuid.uuid4()}", email=address)
        notification = Notification.objects.create(
            recipient=recipient, channels=["email"], subject="S", body="B"
        )
        delivery = Delivery.objects.create(
            notification=notification, channel="email", address=address, content={"subject": "S", "text": "B"}
        )
    smtp_server.stall(address, seconds=60)  # the first conversation hangs at RCPT TO
    doomed = Process(
        "worker-doomed",
        [
            celery_bin(),
            "-A",
            "tenant_platform",
            "worker",
            "-Q",
            "default",
            "-c",
            "1",
            "-l",
            "info",
            "-n",
            f"doomed-{os.getpid()}@%h",
            "--without-gossip",
            "--without-mingle",
        ],
        service_env(smtp_server.url, TEST_CELERY_BROKER_URL=broker.url),
    )
    try:
        doomed.wait_for_log("ready.", timeout=60)
        with Connection(broker.url) as conn, schema_context("alpha"):
            # celery-types lacks apply_async's `connection` option, which Celery accepts.
            send_deliveries.apply_async(args=([str(delivery.id)],), connection=conn, queue="default")  # type: ignore[call-arg]
        wait_until(lambda: smtp_server.attempts_for(address) == 1, timeout=30)
        (child,) = psutil.Process(doomed.proc.pid).children()
        child.send_signal(signal.SIGKILL)  # mid-send: the mail was never completed
        doomed.wait_for_log("SIGKILL", timeout=30)
        # The message comes back (acks_late + reject_on_worker_lost) and finds nothing to claim.
        doomed.wait_for_log("succeeded", timeout=30)
    finally:
        doomed.stop()
    with schema_context("alpha"):
        assert Delivery.objects.get(id=delivery.id).status == DeliveryStatus.SENDING
        settings.SWEEP_SENDING_AFTER = 0
        Delivery.objects.filter(id=delivery.id).update(updated_at=timezone.now() - timedelta(seconds=1))
        assert sweep_stuck_deliveries()["revived_from_sending"] >= 1
    sent = delivered(personas, str(delivery.id))
    assert sent.attempts == 2
    assert len(smtp_server.messages_to(address)) == 1


def test_a_broadcast_accepted_during_a_broker_outage_is_fanned_out_by_the_sweeper_and_sent_once(
    worker: Process, smtp_server: FakeSmtpServer, personas: Personas, broker: Broker, settings: Any
) -> None:
    tag = uuid.uuid4().hex[:8]
    addresses = [f"bc-outage-{tag}-{i}@example.com" for i in range(30)]
    body = {
        "recipients": [{"external_id": f"bc-{tag}-{i}", "email": a} for i, a in enumerate(addresses)],
        "channels": ["email"],
        "subject": "Still here",
        "body": "Hi all",
    }
    answer, log = post_while_the_broker_is_down(smtp_server, personas, broker, "/api/v1/broadcasts", body)
    assert "could not start broadcast" in log
    broadcast_id = answer["id"]
    with schema_context("alpha"):
        assert Broadcast.objects.get(pk=broadcast_id).status == BroadcastStatus.ACCEPTED  # kept, not lost
        settings.SWEEP_BROADCAST_AFTER = 0  # beat runs the sweep every minute; here, now
        assert sweep_broadcasts() >= 1

    def fanned_out_and_sent() -> bool:
        with schema_context("alpha"):
            broadcast = Broadcast.objects.get(pk=broadcast_id)
            sent = Delivery.objects.filter(
                notification__broadcast_id=broadcast_id, status=DeliveryStatus.SENT
            ).count()
        return broadcast.status == BroadcastStatus.FANNED_OUT and sent == len(addresses)

    wait_until(fanned_out_and_sent, timeout=60, interval=0.5)
    assert all(len(smtp_server.messages_to(a)) == 1 for a in addresses)


def test_posts_while_the_broker_never_answers_are_accepted_within_seconds_and_left_for_the_sweepers(
    smtp_server: FakeSmtpServer, personas: Personas, silent_broker: str
) -> None:
    """A broker that takes connections and never answers (frozen, or half-open after a failover):
    a notification (published directly) and a broadcast (its fan-out published by apply_async)
    are both answered 202 within seconds, and their work waits in the database for the sweepers."""
    tag = uuid.uuid4().hex[:8]
    notification = {
        "recipient": {"external_id": f"silent-{tag}", "email": f"silent-{tag}@example.com"},
        "channels": ["email"],
        "subject": "Still here",
        "body": "Hi",
    }
    broadcast = {
        "recipients": [
            {"external_id": f"bc-silent-{tag}-{i}", "email": f"bc-silent-{tag}-{i}@example.com"}
            for i in range(3)
        ],
        "channels": ["email"],
        "subject": "Still here",
        "body": "Hi all",
    }
    answers: list[tuple[requests.Response, float]] = []
    with web_process(smtp_server, silent_broker, "web-silent-broker") as (port, web):
        for path, body in (("/api/v1/notifications", notification), ("/api/v1/broadcasts", broadcast)):
            started = time.monotonic()
            answers.append((post_as_alpha(personas, port, path, body), time.monotonic() - started))
        log = web.log()
    for response, took in answers:
        assert response.status_code == 202, response.text
        assert took < PUBLISH_GIVES_UP_WITHIN, (response.request.url, took)
    assert "could not enqueue" in log
    assert "could not start broadcast" in log
    (notification_answer, _), (broadcast_answer, _) = answers
    with schema_context("alpha"):
        (delivery,) = Delivery.objects.filter(notification_id=notification_answer.json()["id"])
        assert delivery.status == DeliveryStatus.QUEUED  # for sweep_stuck_deliveries
        kept = Broadcast.objects.get(pk=broadcast_answer.json()["id"])
        assert kept.status == BroadcastStatus.ACCEPTED  # for sweep_broadcasts
