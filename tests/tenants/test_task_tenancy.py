"""Tenant-aware Celery, through a real Redis broker and a real worker.

A task must land in the schema of the tenant that sent it, whichever way it was sent; a message
without a valid signed tenant header must never run its body.
"""

import json
import time
import uuid
from typing import Any

import pytest
from celery import chain, chord, group
from django.conf import settings
from django_celery_beat.models import IntervalSchedule, PeriodicTask
from django_tenants.utils import schema_context
from kombu import Connection

from notifications.models import Recipient
from tenants.task_tenancy import SCHEMA_HEADER, SIGNATURE_HEADER, sign
from tests.conftest import Personas, Process, celery_bin, service_env, wait_until
from tests.probe_tasks import collect, record_after, record_after_one_retry, record_schema

pytestmark = [pytest.mark.worker, pytest.mark.usefixtures("live_db")]

RESULT_TIMEOUT = 30


def marker() -> str:
    return f"probe-{uuid.uuid4()}"


def schemas_holding(personas: Personas, mark: str) -> set[str]:
    found = set()
    for persona in (personas.alpha, personas.beta, personas.inactive):
        with schema_context(persona.tenant.schema_name):
            if Recipient.objects.filter(external_id=mark).exists():
                found.add(persona.tenant.schema_name)
    return found


def test_apply_async_runs_in_the_senders_schema(worker: Process, personas: Personas) -> None:
    mark = marker()
    with schema_context("alpha"):
        result = record_schema.apply_async(args=(mark,))
    assert result.get(timeout=RESULT_TIMEOUT) == "alpha"
    assert schemas_holding(personas, mark) == {"alpha"}


def test_two_tenants_tasks_stay_apart(worker: Process, personas: Personas) -> None:
    a, b = marker(), marker()
    with schema_context("alpha"):
        ra = record_schema.delay(a)
    with schema_context("beta"):
        rb = record_schema.delay(b)
    assert (ra.get(timeout=RESULT_TIMEOUT), rb.get(timeout=RESULT_TIMEOUT)) == ("alpha", "beta")
    assert schemas_holding(personas, a) == {"alpha"}
    assert schemas_holding(personas, b) == {"beta"}


def test_a_chain_keeps_its_tenant_across_links(worker: Process, personas: Personas) -> None:
    first, second = marker(), marker()
    with schema_context("beta"):
        result = chain(record_schema.s(first), record_after.s(second)).apply_async()
    assert result.get(timeout=RESULT_TIMEOUT) == ["beta", "beta"]
    assert schemas_holding(personas, first) == {"beta"}
    assert schemas_holding(personas, second) == {"beta"}


def test_a_group_runs_every_member_in_the_tenant(worker: Process, personas: Personas) -> None:
    marks = [marker() for _ in range(4)]
    with schema_context("alpha"):
        result = group(record_schema.s(m) for m in marks).apply_async()
    assert result.get(timeout=RESULT_TIMEOUT) == ["alpha"] * 4
    assert all(schemas_holding(personas, m) == {"alpha"} for m in marks)


def test_a_chord_callback_runs_in_the_tenant(worker: Process, personas: Personas) -> None:
    marks = [marker() for _ in range(3)]
    callback_mark = marker()
    with schema_context("beta"):
        result = chord(record_schema.s(m) for m in marks)(collect.s(callback_mark))
    assert result.get(timeout=RESULT_TIMEOUT) == {"header": ["beta"] * 3, "callback": "beta"}
    assert schemas_holding(personas, callback_mark) == {"beta"}


def test_a_retry_runs_again_in_the_tenant(worker: Process, personas: Personas) -> None:
    mark = marker()
    with schema_context("alpha"):
        result = record_after_one_retry.delay(mark)
    assert result.get(timeout=RESULT_TIMEOUT) == {"schema": "alpha", "retries": 1}
    assert schemas_holding(personas, mark) == {"alpha"}


def test_beat_fans_a_task_out_to_every_active_tenant(
    worker: Process, personas: Personas, smtp_server: Any, tmp_path: Any
) -> None:
    mark = marker()
    every_second, _ = IntervalSchedule.objects.get_or_create(every=1, period=IntervalSchedule.SECONDS)
    PeriodicTask.objects.create(
        name=f"fan-out {mark}",
        interval=every_second,
        task="tenants.for_each_tenant",
        args=json.dumps(["tests.record_schema", [mark]]),
        one_off=True,
    )
    beat = Process(
        "beat",
        [
            celery_bin(),
            "-A",
            "tenant_platform",
            "beat",
            "-l",
            "info",
            "--max-interval",
            "1",
            "-S",
            "django_celery_beat.schedulers:DatabaseScheduler",
            "--pidfile",
            str(tmp_path / "beat.pid"),
        ],
        service_env(smtp_server.url),
    )
    try:
        wait_until(lambda: schemas_holding(personas, mark) == {"alpha", "beta"}, timeout=40)
    finally:
        beat.stop()
    assert "Sending due task" in beat.log()
    # The inactive tenant got nothing.
    assert schemas_holding(personas, mark) == {"alpha", "beta"}


# --- raw messages published straight to the broker ------------------------------------------------


def publish_raw(
    task: str,
    args: list[Any],
    headers: dict[str, Any],
    task_id: str | None = None,
    serializer: str = "json",
    embed_extra: dict[str, Any] | None = None,
) -> str:
    """Publish a task protocol 2 message with kombu, bypassing Celery (and our signing)."""
    task_id = task_id or str(uuid.uuid4())
    base_headers = {
        "lang": "py",
        "task": task,
        "id": task_id,
        "shadow": None,
        "eta": None,
        "expires": None,
        "group": None,
        "group_index": None,
        "retries": 0,
        "timelimit": [None, None],
        "root_id": task_id,
        "parent_id": None,
        "argsrepr": repr(args),
        "kwargsrepr": "{}",
        "origin": "test@raw",
        "ignore_result": False,
    }
    body = [
        args,
        {},
        {"callbacks": None, "errbacks": None, "chain": None, "chord": None, **(embed_extra or {})},
    ]
    with Connection(settings.CELERY_BROKER_URL) as conn:
        conn.Producer().publish(
            body,
            exchange="",
            routing_key="default",
            serializer=serializer,
            headers={**base_headers, **headers},
        )
    return task_id


def signed_headers(task_id: str, task: str, schema: str, args: list[Any]) -> dict[str, str]:
    delivery = {"retries": 0, "eta": None, "expires": None}  # as publish_raw sends them
    return {SCHEMA_HEADER: schema, SIGNATURE_HEADER: sign(task_id, task, schema, args, {}, {}, delivery)}


def test_a_correctly_signed_raw_message_runs(worker: Process, personas: Personas) -> None:
    """The control for the rejections below: the raw path itself works."""
    mark, task_id = marker(), str(uuid.uuid4())
    publish_raw(
        "tests.record_schema", [mark], signed_headers(task_id, "tests.record_schema", "beta", [mark]), task_id
    )
    wait_until(lambda: schemas_holding(personas, mark) == {"beta"}, timeout=RESULT_TIMEOUT)


def _forged(personas: Personas, case: str, mark: str, task_id: str) -> dict[str, str]:
    name = "tests.record_schema"
    if case == "no header":
        return {}
    if case == "forged signature":
        return {SCHEMA_HEADER: "alpha", SIGNATURE_HEADER: "0" * 64}
    if case == "signature lifted from other arguments":
        return signed_headers(task_id, name, "alpha", ["something-else"])
    if case == "signature lifted from another schema":
        return {
            SCHEMA_HEADER: "beta",
            SIGNATURE_HEADER: signed_headers(task_id, name, "alpha", [mark])[SIGNATURE_HEADER],
        }
    if case == "unknown tenant":
        return signed_headers(task_id, name, "nosuchtenant", [mark])
    if case == "inactive tenant":
        return signed_headers(task_id, name, personas.inactive.tenant.schema_name, [mark])
    if case == "tenant task sent as public":
        return signed_headers(task_id, name, "public", [mark])
    raise AssertionError(case)


REJECTIONS = {
    "no header": "missing tenant header",
    "forged signature": "bad tenant header signature",
    "signature lifted from other arguments": "bad tenant header signature",
    "signature lifted from another schema": "bad tenant header signature",
    "unknown tenant": "unknown or inactive tenant",
    "inactive tenant": "unknown or inactive tenant",
    "tenant task sent as public": "tenant task sent without a tenant",
}


@pytest.mark.parametrize("case", list(REJECTIONS))
def test_it_rejects_a_message_without_a_valid_tenant_header(
    worker: Process, personas: Personas, case: str
) -> None:
    mark, task_id = marker(), str(uuid.uuid4())
    publish_raw("tests.record_schema", [mark], _forged(personas, case, mark, task_id), task_id)
    log = worker.wait_for_log(f"id={task_id}", timeout=RESULT_TIMEOUT)
    line = next(line for line in log.splitlines() if f"id={task_id}" in line)
    assert "security: rejected task message" in line
    assert REJECTIONS[case] in line
    # Give a (wrongly) running body time to write, then check it never did, anywhere.
    time.sleep(0.5)
    assert schemas_holding(personas, mark) == set()
    # Rejected, not retried: the security event was logged once for this message.
    time.sleep(1.0)
    assert worker.log().count(f"id={task_id}") == 1


@pytest.mark.parametrize(
    ("embed", "headers_extra"),
    [
        ({"is_eager": True}, {}),  # would make the task think it runs in-process
        ({"called_directly": True}, {}),
        ({"id": "another-id"}, {}),  # would replay a signature under a new task id
        ({}, {"called_directly": True}),
    ],
)
def test_it_rejects_a_message_that_smuggles_request_fields(
    worker: Process, personas: Personas, embed: dict[str, Any], headers_extra: dict[str, Any]
) -> None:
    """Celery merges body fields into the task's request; only canvas links may be there."""
    mark, task_id = marker(), str(uuid.uuid4())
    headers = {**signed_headers(task_id, "tests.record_schema", "alpha", [mark]), **headers_extra}
    if headers_extra:
        headers = headers_extra  # and no tenant header at all
    publish_raw("tests.record_schema", [mark], headers, task_id, embed_extra=embed)
    line = next(
        line
        for line in worker.wait_for_log(f"id={task_id}", timeout=RESULT_TIMEOUT).splitlines()
        if f"id={task_id}" in line
    )
    assert "security: rejected task message" in line
    time.sleep(0.5)
    assert schemas_holding(personas, mark) == set()


def test_a_platform_fan_out_cannot_be_smuggled_in_as_eager(worker: Process, personas: Personas) -> None:
    mark, task_id = marker(), str(uuid.uuid4())
    publish_raw(
        "tenants.for_each_tenant",
        ["tests.record_schema", [mark]],
        {},
        task_id,
        embed_extra={"is_eager": True},
    )
    worker.wait_for_log(f"id={task_id}", timeout=RESULT_TIMEOUT)
    time.sleep(1.0)
    assert schemas_holding(personas, mark) == set()


def test_a_tampered_retries_header_breaks_the_signature(worker: Process, personas: Personas) -> None:
    mark, task_id = marker(), str(uuid.uuid4())
    headers = {**signed_headers(task_id, "tests.record_schema", "alpha", [mark]), "retries": 5}
    publish_raw("tests.record_schema", [mark], headers, task_id)
    log = worker.wait_for_log(f"id={task_id}", timeout=RESULT_TIMEOUT)
    assert "bad tenant header signature" in next(line for line in log.splitlines() if f"id={task_id}" in line)


def test_apply_runs_in_process_and_leaves_the_callers_schema_alone(personas: Personas) -> None:
    mark = marker()
    with schema_context("alpha"):
        assert record_schema.apply(args=(mark,)).get() == "alpha"
        from tenants.schemas import current_schema

        assert current_schema() == "alpha"


def test_it_refuses_an_unregistered_task_name(worker: Process) -> None:
    task_id = str(uuid.uuid4())
    publish_raw("tests.no_such_task", [], signed_headers(task_id, "tests.no_such_task", "alpha", []), task_id)
    log = worker.wait_for_log("tests.no_such_task", timeout=RESULT_TIMEOUT)
    assert "unregistered task" in log.lower()


def test_it_refuses_a_pickled_message(worker: Process, personas: Personas) -> None:
    """JSON only: a pickle body (even with a valid tenant header) is never deserialized."""
    mark, task_id = marker(), str(uuid.uuid4())
    headers = signed_headers(task_id, "tests.record_schema", "alpha", [mark])
    publish_raw("tests.record_schema", [mark], headers, task_id, serializer="pickle")
    worker.wait_for_log("application/x-python-serialize", timeout=RESULT_TIMEOUT)
    time.sleep(0.5)
    assert schemas_holding(personas, mark) == set()


# --- tenant cache invalidation --------------------------------------------------------------------


def test_a_tenant_deactivated_after_its_tasks_ran_stops_running_tasks(
    worker: Process, personas: Personas
) -> None:
    """The worker caches tenants; a deactivation must still reach it (and a reactivation)."""
    tenant = personas.beta.tenant
    with schema_context("beta"):
        assert record_schema.delay(marker()).get(timeout=RESULT_TIMEOUT) == "beta"  # now cached
    tenant.is_active = False
    tenant.save()
    try:
        mark = marker()
        with schema_context("beta"):
            result = record_schema.delay(mark)
        worker.wait_for_log(f"id={result.id}", timeout=RESULT_TIMEOUT)
        assert "unknown or inactive tenant" in worker.log()
        assert schemas_holding(personas, mark) == set()
    finally:
        tenant.is_active = True
        tenant.save()
    with schema_context("beta"):
        assert record_schema.delay(marker()).get(timeout=RESULT_TIMEOUT) == "beta"


# --- RabbitMQ ----------------------------------------------------------------------------------------

AMQP_URL = "amqp://guest:guest@127.0.0.1:5672//"


@pytest.fixture(scope="module")
def amqp_worker(django_db_setup: Personas, smtp_server: Any) -> Any:
    proc = Process(
        "worker-amqp",
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
            "test-amqp@%h",
            "--without-gossip",
            "--without-mingle",
        ],
        service_env(smtp_server.url, TEST_CELERY_BROKER_URL=AMQP_URL),
    )
    proc.wait_for_log("ready.", timeout=60)
    yield proc
    proc.stop()


def test_rabbitmq_carries_signed_tasks_and_rejects_unsigned_ones(
    amqp_worker: Process, personas: Personas
) -> None:
    good, bad = marker(), marker()
    with Connection(AMQP_URL) as amqp, schema_context("alpha"):
        # celery-types lacks apply_async's `connection` option, which Celery accepts.
        result = record_schema.apply_async(args=(good,), connection=amqp, queue="default")  # type: ignore[call-arg]
    assert result.get(timeout=RESULT_TIMEOUT) == "alpha"
    assert schemas_holding(personas, good) == {"alpha"}

    task_id = str(uuid.uuid4())
    base = {"lang": "py", "task": "tests.record_schema", "id": task_id, "root_id": task_id, "retries": 0}
    with Connection(AMQP_URL) as amqp:
        amqp.Producer().publish(
            [[bad], {}, {"callbacks": None, "errbacks": None, "chain": None, "chord": None}],
            exchange="",
            routing_key="default",
            serializer="json",
            headers=base,
        )
    amqp_worker.wait_for_log(f"id={task_id}", timeout=RESULT_TIMEOUT)
    assert "missing tenant header" in amqp_worker.log()
    assert schemas_holding(personas, bad) == set()
