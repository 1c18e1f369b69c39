"""Publishing through kombu (apply_async: countdowns, retries, fan-outs, webhook sends, beat) gives
up within seconds on a Redis broker that takes connections and never answers, and consumers still
wait on an empty queue as long as they like (tenant_platform.settings.base: BROKER_SOCKET_TIMEOUT,
BROKER_CONNECT_TIMEOUT, CELERY_TASK_PUBLISH_RETRY_POLICY)."""

import threading
import time
import uuid
from collections.abc import Callable
from contextlib import suppress
from typing import Any

import redis
from celery.backends.redis import RedisBackend
from django.conf import settings
from django_tenants.utils import schema_context
from kombu import Consumer, Producer, Queue
from kombu.exceptions import OperationalError
from kombu.transport.redis import Transport as KombuRedisTransport

from notifications.dispatch import Dispatcher
from notifications.fanout import plan_broadcast
from notifications.tasks import send_deliveries
from tenant_platform.celery import app
from tests.conftest import Broker

# Measured about 3 s on a new connection (2 answers missed, 1.5 s each) and 4.5 s on one that was
# working when the broker froze (3 missed); without the timeouts a publish never returned (still
# waiting after 500 s).
PUBLISH_GIVES_UP_WITHIN = 6.0


def timed(publish: Callable[[], object]) -> tuple[float, BaseException | None]:
    """(seconds `publish` took, what it raised). It runs in a thread, so a call that never
    returns fails the test after PUBLISH_GIVES_UP_WITHIN instead of hanging it."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            publish()
        except BaseException as exc:  # handed to the test, which names it
            outcome.append(exc)
        else:
            outcome.append(None)

    started = time.monotonic()
    thread = threading.Thread(target=run, name="publish", daemon=True)
    thread.start()
    thread.join(PUBLISH_GIVES_UP_WITHIN)
    took = time.monotonic() - started
    assert not thread.is_alive(), f"still waiting after {took:.1f} s"
    return took, outcome[0]


def publish_later(connection: Any) -> None:
    """A send task for 30 s from now (a retry's backoff): apply_async's path, as the app's own
    settings configure it, on `connection` (one of the app's, to another broker)."""
    with schema_context("alpha"):
        # celery-types lacks apply_async's `connection` option, which Celery accepts.
        send_deliveries.apply_async(  # type: ignore[call-arg]
            args=([str(uuid.uuid4())],), countdown=30, queue="default", connection=connection
        )


def test_a_countdown_publish_to_a_broker_that_never_answers_gives_up_within_seconds(
    silent_broker: str,
) -> None:
    with app.connection_for_write(silent_broker) as connection:  # the app's transport and options
        took, raised = timed(lambda: publish_later(connection))
    assert isinstance(raised, OperationalError), raised  # what the callers catch and log
    assert took < PUBLISH_GIVES_UP_WITHIN


def test_a_publish_on_a_connection_whose_broker_then_froze_gives_up_within_seconds(broker: Broker) -> None:
    """The web process keeps its broker connection between requests; the broker then stops
    answering (frozen, or a failover left the connection half-open)."""
    with app.connection_for_write(broker.url) as connection:
        publish_later(connection)  # answered: the connection is up
        with broker.frozen():
            took, raised = timed(lambda: publish_later(connection))
    assert isinstance(raised, OperationalError), raised
    assert took < PUBLISH_GIVES_UP_WITHIN


def test_a_broadcasts_fan_out_is_published_without_waiting_on_the_result_store(
    broker: Broker, silent_broker: str
) -> None:
    """The API publishes a broadcast's plan (fanout.start). apply_async of a task whose result is
    kept first subscribes to that result on the result store, by default the broker's own Redis:
    a silent one held the request there 120 s per try, whatever the broker's timeouts."""

    def publish() -> None:
        # This thread's result store only (Celery keeps one per thread): one that never answers.
        app._backend = RedisBackend(app=app, url=silent_broker)  # type: ignore[attr-defined]
        with schema_context("alpha"):
            # celery-types lacks apply_async's `connection` option, which Celery accepts.
            plan_broadcast.apply_async(  # type: ignore[call-arg]
                args=(str(uuid.uuid4()),), queue="default", connection=connection
            )

    with app.connection_for_write(broker.url) as connection:
        _, raised = timed(publish)  # within PUBLISH_GIVES_UP_WITHIN: it never waited
    assert raised is None, raised


def test_the_fair_dispatcher_gives_up_counting_a_silent_brokers_queue_within_seconds(
    silent_broker: str, settings: Any
) -> None:
    """The dispatcher counts each queue on the broker 20 times a second; an error there is logged
    and it starts again a second later with a new connection, once the broker answers again."""
    settings.CELERY_BROKER_URL = silent_broker
    dispatcher = Dispatcher()
    took, raised = timed(lambda: dispatcher.queued("bulk"))
    assert isinstance(raised, (OperationalError, redis.RedisError)), raised
    assert took < PUBLISH_GIVES_UP_WITHIN


def test_a_consumer_waits_on_an_empty_queue_for_longer_than_the_socket_timeout(broker: Broker) -> None:
    """A worker's BRPOP is held by the server for kombu's brpop_timeout before it answers nil, and
    kombu reads that answer only once poll() finds it there: an idle consumer keeps its connection
    through many socket timeouts' worth of silence and gets what is published then."""
    options = settings.CELERY_BROKER_TRANSPORT_OPTIONS
    brpop_wait = options.get("polling_interval") or KombuRedisTransport.brpop_timeout
    assert options["socket_timeout"] > brpop_wait  # safe even for a read begun with the command
    queue = Queue(f"herald-test-idle-{uuid.uuid4().hex[:8]}")
    received: list[tuple[float, Any]] = []

    def on_message(body: Any, message: Any) -> None:
        received.append((time.monotonic(), body))
        message.ack()

    quiet_for = 3 * options["socket_timeout"]
    with (
        app.connection_for_read(broker.url) as reader,
        app.connection_for_write(broker.url) as writer,
        Consumer(reader, queues=[queue], callbacks=[on_message], accept=["json"]),
    ):
        started = time.monotonic()
        publisher = threading.Timer(
            quiet_for, lambda: Producer(writer).publish({"n": 1}, routing_key=queue.name, declare=[queue])
        )
        publisher.start()
        try:
            while not received and time.monotonic() - started < quiet_for + 10:
                with suppress(TimeoutError):  # drain_events' own: nothing arrived in that second
                    reader.drain_events(timeout=1)
        finally:
            publisher.cancel()
    assert [body for _, body in received] == [{"n": 1}]
    assert received[0][0] - started >= quiet_for
