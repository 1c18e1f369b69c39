"""The direct publisher (tenant_platform.broker.DirectPublisher) writes the message apply_async
writes, and a real worker runs it in the tenant that sent it."""

import base64
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from celery import Celery, _state
from celery.result import AsyncResult
from django.conf import settings
from django_tenants.utils import schema_context

from notifications.tasks import send_deliveries
from tenant_platform.broker import DirectPublisher
from tenant_platform.celery import app
from tenants.task_tenancy import SCHEMA_HEADER, SIGNATURE_HEADER, message_problem
from tests.conftest import Personas, Process
from tests.probe_tasks import record_schema
from tests.tenants.test_task_tenancy import RESULT_TIMEOUT, marker, schemas_holding

# Fields that differ from one message to the next whoever publishes it.
PER_MESSAGE = {"id", "root_id", SIGNATURE_HEADER, "correlation_id", "delivery_tag"}


@pytest.fixture
def scratch_queue() -> Iterator[tuple[str, redis.Redis]]:
    """A queue no worker reads, on the test broker."""
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    queue = f"herald-test-direct-{uuid.uuid4().hex[:8]}"
    yield queue, client
    client.delete(queue)


def _published(client: redis.Redis, queue: str) -> list[dict[str, Any]]:
    """The queue's messages, oldest first."""
    return [json.loads(raw) for raw in reversed(client.lrange(queue, 0, -1))]


def _without_per_message_fields(message: dict[str, Any]) -> dict[str, Any]:
    shape = {k: v for k, v in message.items() if k not in ("headers", "properties", "body")}
    shape["headers"] = {k: v for k, v in message["headers"].items() if k not in PER_MESSAGE}
    shape["properties"] = {k: v for k, v in message["properties"].items() if k not in PER_MESSAGE}
    shape["body"] = json.loads(base64.b64decode(message["body"]))
    return shape


def _direct() -> DirectPublisher:
    direct = DirectPublisher.for_app(app)
    assert direct is not None, "the test broker is Herald's Redis transport"
    return direct


def test_a_direct_message_is_the_message_apply_async_publishes(
    scratch_queue: tuple[str, redis.Redis],
) -> None:
    queue, client = scratch_queue
    ids = [str(uuid.uuid4()) for _ in range(3)]
    with schema_context("alpha"):
        send_deliveries.apply_async(args=(ids,), queue=queue)
    task_id = _direct().publish(send_deliveries, (ids,), queue, "alpha")
    by_celery, direct = _published(client, queue)
    assert _without_per_message_fields(direct) == _without_per_message_fields(by_celery)
    assert direct["headers"]["id"] == direct["headers"]["root_id"] == direct["properties"]["correlation_id"]
    assert direct["headers"]["id"] == task_id
    assert direct["headers"][SCHEMA_HEADER] == "alpha"
    assert direct["properties"]["delivery_tag"] != by_celery["properties"]["delivery_tag"]
    # The worker's gate accepts it: protocol 2, and the tenant signature matches.
    payload = json.loads(base64.b64decode(direct["body"]))
    assert message_problem(send_deliveries.name, direct["headers"], payload) is None
    # ...and only for the tenant it was signed for.
    forged = dict(direct["headers"], **{SCHEMA_HEADER: "beta"})
    assert message_problem(send_deliveries.name, forged, payload) == "bad tenant header signature"


def test_a_direct_message_with_the_callers_task_id_is_the_one_apply_async_publishes_with_it(
    scratch_queue: tuple[str, redis.Redis],
) -> None:
    """The fair dispatcher and `pipeline.enqueue` choose the id first (to note the work under it
    before it can run): with that id, the message is still apply_async's, field by field."""
    queue, client = scratch_queue
    ids = [str(uuid.uuid4())]
    chosen = str(uuid.uuid4())
    with schema_context("alpha"):
        send_deliveries.apply_async(args=(ids,), queue=queue, task_id=chosen)
    assert _direct().publish(send_deliveries, (ids,), queue, "alpha", chosen) == chosen
    by_celery, direct = _published(client, queue)
    assert _without_per_message_fields(direct) == _without_per_message_fields(by_celery)
    for name in ("id", "root_id", SIGNATURE_HEADER):
        assert direct["headers"][name] == by_celery["headers"][name], name
    assert direct["headers"]["id"] == direct["properties"]["correlation_id"] == chosen


def test_published_from_inside_a_task_it_names_that_task_as_parent_and_root(
    scratch_queue: tuple[str, redis.Redis],
) -> None:
    queue, client = scratch_queue
    parent: Any = record_schema._get_current_object()  # type: ignore[attr-defined]  # the task, not its proxy
    parent.push_request(id="parent-task-id", root_id="root-task-id", called_directly=False)
    _state._task_stack.push(parent)  # type: ignore[attr-defined]  # what a worker does around a task
    try:
        current = app.current_worker_task
        assert current is not None
        assert current.request.id == "parent-task-id"
        with schema_context("alpha"):
            send_deliveries.apply_async(args=(["d-1"],), queue=queue)
        _direct().publish(send_deliveries, (["d-1"],), queue, "alpha")
    finally:
        _state._task_stack.pop()  # type: ignore[attr-defined]
        parent.pop_request()
    by_celery, direct = _published(client, queue)
    assert _without_per_message_fields(direct) == _without_per_message_fields(by_celery)
    for message in (by_celery, direct):
        assert (message["headers"]["parent_id"], message["headers"]["root_id"]) == (
            "parent-task-id",
            "root-task-id",
        )


def test_only_a_broker_it_models_gets_a_direct_publisher() -> None:
    def app_with(**conf: Any) -> Celery:
        other = Celery("herald-direct-test", set_as_current=False)
        other.conf.update({"broker_url": "redis://127.0.0.1:6379/0", **conf})
        return other

    assert DirectPublisher.for_app(app_with(broker_transport="tenant_platform.broker:Transport")) is not None
    # Herald's own transport options (kombu's socket timeouts) leave the message as it is.
    assert settings.CELERY_BROKER_TRANSPORT_OPTIONS
    with_timeouts = app_with(
        broker_transport="tenant_platform.broker:Transport",
        broker_transport_options=settings.CELERY_BROKER_TRANSPORT_OPTIONS,
    )
    assert DirectPublisher.for_app(with_timeouts) is not None
    assert DirectPublisher.for_app(app_with()) is None  # kombu's own transport
    assert DirectPublisher.for_app(app_with(broker_url="amqp://guest:guest@127.0.0.1:5672//")) is None
    prefixed = app_with(
        broker_transport="tenant_platform.broker:Transport",
        broker_transport_options={"global_keyprefix": "h:"},
    )
    assert DirectPublisher.for_app(prefixed) is None
    eager = app_with(broker_transport="tenant_platform.broker:Transport", task_always_eager=True)
    assert DirectPublisher.for_app(eager) is None


@pytest.mark.worker
@pytest.mark.usefixtures("live_db")
def test_a_worker_runs_a_direct_message_in_the_tenant_it_was_signed_for(
    worker: Process, personas: Personas
) -> None:
    mark = marker()
    task_id = _direct().publish(record_schema, (mark,), "default", "beta")
    assert AsyncResult(task_id, app=app).get(timeout=RESULT_TIMEOUT) == "beta"
    assert schemas_holding(personas, mark) == {"beta"}


def test_the_send_path_publishes_directly_unless_something_else_listens_to_publishing() -> None:
    from celery import signals

    from notifications import pipeline

    direct = pipeline._direct_publisher()
    assert direct is not None
    assert direct.takes(send_deliveries)

    def listener(**_: Any) -> None:
        pass

    signals.before_task_publish.connect(listener, weak=False)
    try:
        assert not direct.takes(send_deliveries)  # it would be skipped: apply_async runs it
    finally:
        signals.before_task_publish.disconnect(listener)
    assert direct.takes(send_deliveries)


def test_a_broker_that_never_answers_fails_a_publish_within_seconds(silent_broker: str) -> None:
    import time

    other = Celery("herald-direct-silent", set_as_current=False)
    other.conf.update({"broker_url": silent_broker, "broker_transport": "tenant_platform.broker:Transport"})
    direct = DirectPublisher.for_app(other)
    assert direct is not None
    started = time.monotonic()
    with pytest.raises(redis.RedisError):
        direct.publish(send_deliveries, (["d-1"],), "critical", "alpha")
    assert time.monotonic() - started < 4


def test_with_the_broker_silent_the_other_batches_are_not_waited_for_again(
    silent_broker: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import time

    from notifications import pipeline

    other = Celery("herald-direct-silent", set_as_current=False)
    other.conf.update({"broker_url": silent_broker, "broker_transport": "tenant_platform.broker:Transport"})
    monkeypatch.setattr(pipeline, "_direct_publisher", lambda: DirectPublisher.for_app(other))
    ids = [str(uuid.uuid4()) for _ in range(300)]
    started = time.monotonic()
    pipeline.enqueue_all({"critical": ids}, schema="alpha")  # three batches of 100
    assert time.monotonic() - started < 4
    assert caplog.text.count("could not enqueue 100 deliveries") == 1
