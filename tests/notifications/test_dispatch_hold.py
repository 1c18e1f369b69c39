"""Which batches the fair dispatcher holds (`dispatch.hold`), and its round-robin per priority.

A priority of the test's own (not one the test worker's dispatcher serves) keeps these keys out
of that dispatcher's way; it is held only while contended, as `normal` is.
"""

import json
import signal
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from notifications import dispatch, pipeline, urgency
from tenants import registry
from tenants.redis_client import get_redis
from tests.conftest import Broker, Process, service_env, wait_until

BATCHES = [[f"d{i}"] for i in range(10)]


@pytest.fixture
def priority(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    name = f"test-{uuid.uuid4().hex[:8]}"
    monkeypatch.setattr(dispatch, "FAIR_PRIORITIES", dispatch.FAIR_PRIORITIES | {name})
    get_redis().set(dispatch._heartbeat_key(name), "1", ex=60)  # a dispatcher serving it is alive
    monkeypatch.setattr(dispatch, "SEEN_FOR", 0.0)  # each call looks (the tests change what it sees)
    yield name
    keys = list(get_redis().scan_iter(f"herald:fair:{name}:*"))
    get_redis().delete(*keys, dispatch._heartbeat_key(name))


def held(priority: str, schema: str) -> list[list[str]]:
    return [json.loads(raw) for raw in get_redis().lrange(dispatch._list_key(priority, schema), 0, -1)]


def test_a_quiet_queue_takes_a_requests_first_batches_and_the_rest_wait(priority: str) -> None:
    assert dispatch.hold("t1", priority, BATCHES[:1]) == BATCHES[:1]  # one notification: straight on
    assert held(priority, "t1") == []
    assert dispatch.hold("t1", priority, BATCHES) == BATCHES[: dispatch.BOUND]
    assert held(priority, "t1") == BATCHES[dispatch.BOUND :]


def test_while_anyone_waits_everyone_waits_their_turn(priority: str) -> None:
    dispatch.hold("t1", priority, BATCHES)
    assert dispatch.hold("t2", priority, BATCHES[:1]) == []
    assert held(priority, "t2") == BATCHES[:1]


def test_a_contended_queue_holds_everything(priority: str) -> None:
    get_redis().set(dispatch._contended_key(priority), "1", px=5000)
    assert dispatch.hold("t1", priority, BATCHES[:2]) == []
    assert held(priority, "t1") == BATCHES[:2]


def test_without_a_dispatcher_serving_the_priority_nothing_is_held(priority: str) -> None:
    """Also an older dispatcher that serves bulk only, during a deploy: its heartbeat is not this
    priority's, so nothing would ever release what was held."""
    get_redis().delete(dispatch._heartbeat_key(priority))
    get_redis().set(dispatch._contended_key(priority), "1", px=5000)
    assert dispatch.hold("t1", priority, BATCHES) == BATCHES
    assert held(priority, "t1") == []


def test_what_a_process_saw_is_reused_briefly(priority: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A request does not ask Redis whether the queue is contended if this process asked within
    SEEN_FOR, and a process that has just held batches knows the queue is crowded."""
    monkeypatch.setattr(dispatch, "SEEN_FOR", 60.0)
    assert dispatch.hold("t1", priority, BATCHES[:1]) == BATCHES[:1]  # looked: quiet
    get_redis().set(dispatch._contended_key(priority), "1", px=5000)
    assert dispatch.hold("t1", priority, BATCHES[:1]) == BATCHES[:1]  # what it saw, reused
    assert dispatch.hold("t1", priority, BATCHES) == BATCHES[: dispatch.BOUND]
    assert dispatch.hold("t2", priority, BATCHES[:1]) == []  # it has just held some: crowded


def test_a_release_takes_a_place_until_its_task_ends(priority: str) -> None:
    """Released normal work counts against the bound until its task ends (`release_ended`, which
    send_deliveries calls) or its lease runs out, however long it waits in a queue shared with
    other tasks, and not by that queue's length."""
    dispatcher = dispatch.Dispatcher(priorities=[priority])
    running, lapsed = f"task-{uuid.uuid4().hex}", f"task-{uuid.uuid4().hex}"
    now_ms = int(time.time() * 1000)
    get_redis().zadd(dispatch.RELEASED_KEY, {running: now_ms + 60_000, lapsed: now_ms - 1})
    dispatcher.released[priority] = [running, lapsed]
    queue = f"test-empty-{uuid.uuid4().hex[:8]}"
    assert dispatcher.room(priority, queue) == dispatch.BOUND - 1
    dispatch.release_ended(running)
    assert dispatcher.room(priority, queue) == dispatch.BOUND


def test_each_priority_takes_its_own_round_robin_turns() -> None:
    """Bulk and normal released alternately still each go round every tenant (a cursor shared
    between them moved two steps per turn, and with two tenants always landed on the same one)."""
    dispatcher = dispatch.Dispatcher(priorities=["bulk", "normal"])
    firsts: dict[str, list[str]] = {"bulk": [], "normal": []}
    for _ in range(4):
        for priority in ("bulk", "normal"):
            firsts[priority].append(dispatcher.turn(priority, ["alpha", "beta"])[0])
    assert firsts == {"bulk": ["alpha", "beta"] * 2, "normal": ["alpha", "beta"] * 2}


@pytest.fixture
def queue(priority: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A broker queue of the test's own for `priority` (no worker consumes it)."""
    from celery import current_app

    name = f"test-fair-{uuid.uuid4().hex[:8]}"
    monkeypatch.setitem(pipeline.QUEUE_FOR_PRIORITY, priority, name)
    yield name
    with current_app.connection_for_write() as connection:
        channel: Any = connection.default_channel
        get_redis().delete(*[channel._q_for_pri(name, p) for p in channel.priority_steps])


def test_a_tenant_waiting_for_its_turn_is_skipped_and_the_others_are_released(
    priority: str, queue: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tenant over its send rate limit (its next turn noted by a send task) keeps its held
    batches until then; another tenant's are released meanwhile, and the first's once its turn
    has come."""
    get_redis().set(dispatch._contended_key(priority), "1", px=5000)  # so that hold holds them all
    dispatch.hold("limited", priority, BATCHES[:2])
    dispatch.hold("other", priority, BATCHES[2:4])
    dispatch.next_turn_in("limited", priority, 0.5)
    monkeypatch.setattr(registry, "get_active_tenant", lambda schema: object())  # both are tenants
    dispatcher = dispatch.Dispatcher(priorities=[priority])
    try:
        assert dispatcher.once() == 2
        assert held(priority, "other") == []
        assert held(priority, "limited") == BATCHES[:2]
        assert dispatcher.once() == 0  # nothing to release: no spinning through its list
        time.sleep(0.6)
        assert dispatcher.once() == 2
        assert held(priority, "limited") == []
    finally:
        for task_id in dispatcher.released.get(priority, []):
            dispatch.release_ended(task_id)
            urgency.done(task_id)


def test_the_latest_next_turn_noted_wins_and_none_lasts_longer_than_the_cap(priority: str) -> None:
    dispatch.next_turn_in("t1", priority, 0.5)
    dispatch.next_turn_in("t1", priority, 0.1)  # a batch reserved earlier, whose task ran later
    time.sleep(0.2)
    assert dispatch._looked_up(priority)[2] == {"t1"}
    dispatch.next_turn_in("t2", priority, 10 * dispatch.NEXT_TURN_MAX_MS / 1000)
    seconds, micros = get_redis().time()
    later = float(get_redis().zscore(dispatch._next_turn_key(priority), "t2") or 0)
    assert later - (seconds * 1000 + micros / 1000) <= dispatch.NEXT_TURN_MAX_MS
    assert 0 < get_redis().pttl(dispatch._next_turn_key(priority)) <= dispatch.NEXT_TURN_MAX_MS
    time.sleep(0.4)
    assert dispatch._looked_up(priority)[2] == {"t2"}  # t1's turn has come


def test_a_waiting_tenants_batches_are_held_and_crowd_no_one_else(priority: str) -> None:
    """Sent to a quiet queue, a rate-limited tenant's batches would only be published again for
    later: they are held for its turn. Held so, they do not make the others' wait their turn."""
    dispatch.next_turn_in("limited", priority, 30)
    assert dispatch.hold("limited", priority, BATCHES[:1]) == []
    assert held(priority, "limited") == BATCHES[:1]
    assert dispatch.hold("other", priority, BATCHES[:1]) == BATCHES[:1]
    assert held(priority, "other") == []


def test_a_tenant_whose_turn_has_come_still_makes_the_others_wait_theirs(priority: str) -> None:
    """However many tenants wait for their turn, one whose turn has come and that holds batches
    still has the others' batches held, as before."""
    dispatch.next_turn_in("limited", priority, 30)
    dispatch.next_turn_in("idle", priority, 30)  # waits, holding nothing
    dispatch.hold("limited", priority, BATCHES[:1])
    get_redis().set(dispatch._contended_key(priority), "1", px=5000)
    dispatch.hold("ready", priority, BATCHES[:1])
    get_redis().delete(dispatch._contended_key(priority))
    assert dispatch.hold("third", priority, BATCHES[:1]) == []
    assert held(priority, "third") == BATCHES[:1]


def test_no_tenant_can_be_named_like_one_of_the_dispatchers_own_keys() -> None:
    """A tenant's held list is `herald:fair:<priority>:<schema>`: no schema may be the last part
    of one of the dispatcher's other keys there (a tenant named `tenants` would have had its
    list in the set of tenants' key)."""
    from tenants.naming import InvalidSlug, is_valid_schema_name, schema_for_slug

    for priority in dispatch.FAIR_PRIORITIES:
        prefix = dispatch._list_key(priority, "")
        own = [
            dispatch._tenants_key(priority),
            dispatch._contended_key(priority),
            dispatch._next_turn_key(priority),
        ]
        for key in own:
            assert key.startswith(prefix)
            word = key[len(prefix) :]
            if is_valid_schema_name(word):  # some slug would give this schema: it must be refused
                with pytest.raises(InvalidSlug):
                    schema_for_slug(word.replace("_", "-"))


@pytest.fixture
def own_keys(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The dispatcher's Redis keys under a prefix of the test's own, with a dispatcher serving
    critical, high and normal alive there: the real priorities can be held without the test
    worker's dispatcher (if one runs) releasing what the test holds."""
    own = f"herald:test-{uuid.uuid4().hex[:8]}:"
    for name in ("_list_key", "_tenants_key", "_contended_key", "_next_turn_key", "_heartbeat_key"):
        key = getattr(dispatch, name)
        monkeypatch.setattr(dispatch, name, lambda *args, key=key: key(*args).replace("herald:fair:", own, 1))
    monkeypatch.setattr(dispatch, "_seen", {})  # nothing this process saw of the real keys, nor left for it
    monkeypatch.setattr(dispatch, "SEEN_FOR", 0.0)
    for priority in ("critical", "high", "normal"):
        get_redis().set(dispatch._heartbeat_key(priority), "1", ex=60)
    yield
    get_redis().delete(*get_redis().scan_iter(f"{own}*"))


@pytest.fixture(params=["critical", "high"])
def urgent(request: pytest.FixtureRequest, own_keys: None) -> str:
    priority: str = request.param
    return priority


def test_a_quiet_urgent_queue_takes_a_notification_straight_and_a_contended_one_holds_it(urgent: str) -> None:
    """Critical and high are held as normal is: never on a quiet queue (no extra step for the
    notification), and while their queue is contended, in the tenant's list for its turn."""
    assert dispatch.hold("t1", urgent, BATCHES[:1]) == BATCHES[:1]
    assert held(urgent, "t1") == []
    assert dispatch.hold("t1", urgent, BATCHES) == BATCHES[: dispatch.BOUND]
    assert held(urgent, "t1") == BATCHES[dispatch.BOUND :]
    assert dispatch.hold("t2", urgent, BATCHES[:1]) == []  # t1's wait: so does t2's, for its turn
    assert held(urgent, "t2") == BATCHES[:1]
    get_redis().set(dispatch._contended_key(urgent), "1", px=5000)
    assert dispatch.hold("t3", urgent, BATCHES[:1]) == []
    assert held(urgent, "t3") == BATCHES[:1]


def test_a_contended_urgent_queue_holds_nothing_without_a_dispatcher_serving_it(urgent: str) -> None:
    """An older dispatcher (bulk and normal only) during a deploy has no heartbeat for critical
    and high: nothing would release what was held, so it goes straight to the broker."""
    get_redis().delete(dispatch._heartbeat_key(urgent))
    get_redis().set(dispatch._contended_key(urgent), "1", px=5000)
    assert dispatch.hold("t1", urgent, BATCHES) == BATCHES
    assert held(urgent, "t1") == []


def test_a_rate_limited_tenants_urgent_work_is_not_held_for_its_next_turn(urgent: str) -> None:
    """The turn is per priority, not per channel: held for it, a tenant's one critical email (a
    sign-in code) waited behind its own critical SMS for its SMS limit. Its over-limit critical and
    high batches wait in the broker instead (the send task publishes them again for later)."""
    dispatch.next_turn_in("limited", urgent, 30)
    assert get_redis().exists(dispatch._next_turn_key(urgent)) == 0  # not noted
    dispatch.next_turn_in("limited", "normal", 30)
    get_redis().zadd(dispatch._next_turn_key(urgent), {"limited": (time.time() + 30) * 1000})  # noted anyway
    assert dispatch.hold("limited", urgent, BATCHES[:1]) == BATCHES[:1]  # straight on
    assert held(urgent, "limited") == []
    assert dispatch.hold("limited", "normal", BATCHES[:1]) == []  # normal work still waits for its turn


def test_one_look_tells_a_process_about_every_priority_held_only_when_contended(
    own_keys: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A process that has just looked for a normal request asks Redis nothing more for a critical
    one: the look covers critical, high and normal in one round trip."""
    monkeypatch.setattr(dispatch, "SEEN_FOR", 60.0)
    assert dispatch.hold("t1", "normal", BATCHES[:1]) == BATCHES[:1]

    def no_look() -> Any:
        raise AssertionError("looked in Redis again")

    monkeypatch.setattr(dispatch, "_look", no_look)
    assert dispatch.hold("t1", "critical", BATCHES[:1]) == BATCHES[:1]
    assert dispatch.hold("t1", "high", BATCHES[:1]) == BATCHES[:1]


def test_the_dispatcher_serves_critical_then_high_then_normal_then_bulk() -> None:
    assert dispatch.Dispatcher().priorities == ["critical", "high", "normal", "bulk"]
    assert dispatch.Dispatcher(priorities=["bulk", "test-x", "high"]).priorities == ["high", "bulk", "test-x"]


@pytest.fixture
def critical_queue(own_keys: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A broker queue of the test's own for `critical` (no worker consumes it)."""
    from celery import current_app

    name = f"test-critical-{uuid.uuid4().hex[:8]}"
    monkeypatch.setitem(pipeline.QUEUE_FOR_PRIORITY, "critical", name)
    yield name
    with current_app.connection_for_write() as connection:
        channel: Any = connection.default_channel
        get_redis().delete(*[channel._q_for_pri(name, p) for p in channel.priority_steps])


@pytest.mark.usefixtures("live_db")
def test_held_batches_of_a_deactivated_or_unknown_tenant_are_dropped_not_released(
    critical_queue: str, personas: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Released, they would be rejected by the worker before their task could free its place in the
    bound, and held, they would keep the queue contended: everyone's new work held behind them."""
    gone = personas.inactive.tenant.schema_name
    get_redis().set(dispatch._contended_key("critical"), "1", px=5000)
    for schema in (gone, "nosuchtenant", "alpha"):
        dispatch.hold(schema, "critical", BATCHES[:3])
    get_redis().delete(dispatch._contended_key("critical"))
    dispatcher = dispatch.Dispatcher(priorities=["critical"])
    try:
        assert dispatcher.once() == 3  # alpha's three, and nothing else
        assert held("critical", "alpha") == []
        assert held("critical", gone) == []
        assert held("critical", "nosuchtenant") == []
        assert get_redis().smembers(dispatch._tenants_key("critical")) == set()
        assert f"dropped 3 held critical batches of '{gone}'" in caplog.text
        assert "dropped 3 held critical batches of 'nosuchtenant'" in caplog.text
        assert dispatch.hold("beta", "critical", BATCHES[:1]) == BATCHES[:1]  # not crowded: straight on
    finally:
        for task_id in dispatcher.released.get("critical", []):
            dispatch.release_ended(task_id)
            urgency.done(task_id)


@pytest.mark.usefixtures("live_db")
def test_an_active_tenant_the_tenant_cache_still_calls_unknown_keeps_its_held_batches(
    critical_queue: str, personas: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A process's tenant cache may say "no such tenant" for up to TENANT_CACHE_CHECK_INTERVAL
    after the tenant is (re)activated: the dispatcher reads the database before it drops anything."""
    alpha = personas.alpha.tenant.schema_name
    registry.get_active_tenant(alpha)  # the cache is current
    monkeypatch.setitem(registry._tenants, alpha, None)  # ... and then says, stale, there is none
    assert registry.get_active_tenant(alpha) is None
    get_redis().set(dispatch._contended_key("critical"), "1", px=5000)
    dispatch.hold(alpha, "critical", BATCHES[:3])
    get_redis().delete(dispatch._contended_key("critical"))
    dispatcher = dispatch.Dispatcher(priorities=["critical"])
    try:
        assert dispatcher.once() == 3
        assert held("critical", alpha) == []
        assert "dropped" not in caplog.text
    finally:
        for task_id in dispatcher.released.get("critical", []):
            dispatch.release_ended(task_id)
            urgency.done(task_id)


def test_while_the_database_fails_held_work_is_released_and_it_is_asked_again_only_after_a_pause(
    critical_queue: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Whether a tenant is active cannot be told then: its work is released (the worker's gate
    decides), and the dispatcher does not reconnect, nor warn, for every tenant on every loop."""
    from django.db import InterfaceError

    looks: list[str] = []

    def failing(schema: str) -> None:
        looks.append(schema)
        raise InterfaceError("connection already closed")

    monkeypatch.setattr(registry, "get_active_tenant", failing)
    monkeypatch.setattr(dispatch, "DB_BACKOFF_S", 0.5)
    get_redis().set(dispatch._contended_key("critical"), "1", px=5000)
    dispatch.hold("t1", "critical", BATCHES[:2])
    dispatch.hold("t2", "critical", BATCHES[2:4])
    get_redis().delete(dispatch._contended_key("critical"))
    dispatcher = dispatch.Dispatcher(priorities=["critical"])
    sent: list[str] = []

    def another_held(schema: str) -> None:
        get_redis().set(dispatch._contended_key("critical"), "1", px=5000)
        dispatch.hold(schema, "critical", BATCHES[4:5])
        get_redis().delete(dispatch._contended_key("critical"))
        sent.extend(dispatcher.released.pop("critical", []))  # room for it (their tasks never run here)

    try:
        assert dispatcher.once() == 4  # neither tenant's dropped
        assert looks == ["t1"]
        another_held("t2")
        assert dispatcher.once() == 1  # without asking the database again
        assert looks == ["t1"]
        assert caplog.text.count("could not look up tenant") == 1
        time.sleep(0.6)
        another_held("t1")
        assert dispatcher.once() == 1
        assert looks == ["t1", "t1"]  # asked again once the pause was over
    finally:
        for task_id in sent + dispatcher.released.get("critical", []):
            dispatch.release_ended(task_id)
            urgency.done(task_id)


def test_an_idle_dispatcher_wakes_as_soon_as_one_of_its_releases_ends(
    priority: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Asleep 50 ms after a loop that released nothing, the dispatcher released held work at most
    BOUND per 50 ms however fast the worker freed places. It waits for a place instead; the end of
    a task it did not release (a direct send's) wakes it for nothing."""
    monkeypatch.setattr(dispatch, "WAKE_KEY", f"herald:test-wake-{uuid.uuid4().hex[:8]}")
    dispatcher = dispatch.Dispatcher(priorities=[priority])
    released = f"task-{uuid.uuid4().hex}"
    get_redis().zadd(dispatch.RELEASED_KEY, {released: int(time.time() * 1000) + 60_000})
    dispatch.release_ended(f"task-{uuid.uuid4().hex}")  # not a release
    started = time.monotonic()
    dispatcher.idle(0.3)
    assert time.monotonic() - started >= 0.25
    threading.Timer(0.1, dispatch.release_ended, [released]).start()
    started = time.monotonic()
    dispatcher.idle(2.0)
    assert time.monotonic() - started < 1.0
    get_redis().delete(dispatch.WAKE_KEY)


def test_a_retiring_dispatcher_leaves_the_heartbeats_of_one_started_since_and_takes_its_own_down(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """In a rolling deploy the new dispatcher runs before the old one stops: the old one's clean
    stop took the new one's heartbeats down, and `hold` published directly until its next beat."""
    monkeypatch.setattr(dispatch, "HEARTBEAT_KEY", f"herald:test-{uuid.uuid4().hex[:8]}:heartbeat")
    priority = "normal"  # under the test's own HEARTBEAT_KEY: not the test worker's dispatcher's
    heartbeats = [dispatch.HEARTBEAT_KEY, dispatch._heartbeat_key(priority)]
    old, new = dispatch.Dispatcher(priorities=[priority]), dispatch.Dispatcher(priorities=[priority])
    try:
        old.heartbeat()
        new.heartbeat()
        old.retire()
        assert get_redis().exists(*heartbeats) == 2
        assert dispatch.dispatcher_alive(priority)
        new.retire()
        assert get_redis().exists(*heartbeats) == 0
        assert not dispatch.dispatcher_alive(priority)
    finally:
        get_redis().delete(*heartbeats)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_dispatcher_stopped_cleanly_takes_its_heartbeats_down_at_once(broker: Broker, signum: int) -> None:
    """Left to lapse (10 s), they had `hold` hold critical work that no dispatcher would release.
    The contention flags it set go too (BOUND messages wait in `critical`, no worker reading it)."""
    env = service_env("smtp://127.0.0.1:1", TEST_REDIS_URL=broker.url, TEST_CELERY_BROKER_URL=broker.url)
    own = redis.Redis.from_url(broker.url)
    own.lpush(pipeline.QUEUE_FOR_PRIORITY["critical"], *["waiting"] * dispatch.BOUND)
    proc = Process("dispatcher-stopped", [sys.executable, "manage.py", "dispatch"], env)
    try:
        wait_until(lambda: own.exists(dispatch._heartbeat_key("critical")), timeout=30)
        wait_until(lambda: own.exists(dispatch._contended_key("critical")), timeout=10)
        proc.proc.send_signal(signum)
        assert proc.proc.wait(timeout=10) == 0
        assert own.keys("herald:fair:heartbeat*") == []
        assert own.keys("herald:fair:*:contended") == []
    finally:
        proc.stop()


def test_the_contended_flag_alone_has_a_quiet_urgent_queue_hold_everything(urgent: str) -> None:
    """Nothing held, no tenant waiting its turn: only the dispatcher's flag makes `hold` hold."""
    assert dispatch.hold("t1", urgent, BATCHES[:2]) == BATCHES[:2]
    get_redis().set(dispatch._contended_key(urgent), "1", px=5000)
    assert dispatch.hold("t1", urgent, BATCHES[:2]) == []
    assert held(urgent, "t1") == BATCHES[:2]


@pytest.mark.parametrize("urgent_queue", ["critical", "high"])
def test_the_dispatcher_flags_an_urgent_queue_contended_while_bound_messages_wait_in_it(
    own_keys: None, urgent_queue: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from celery import current_app

    name = f"test-{urgent_queue}-{uuid.uuid4().hex[:8]}"
    monkeypatch.setitem(pipeline.QUEUE_FOR_PRIORITY, urgent_queue, name)
    dispatcher = dispatch.Dispatcher(priorities=[urgent_queue])
    with current_app.connection_for_write() as connection:
        channel: Any = connection.default_channel
        try:
            channel.client.lpush(name, *["waiting"] * (dispatch.BOUND - 1))
            dispatcher.once()
            assert not get_redis().exists(dispatch._contended_key(urgent_queue))
            channel.client.lpush(name, "waiting")
            dispatcher._looked_at.clear()  # it counts each such queue every CONTENDED_LOOK_S
            dispatcher.once()
            assert get_redis().exists(dispatch._contended_key(urgent_queue))
        finally:
            get_redis().delete(*[channel._q_for_pri(name, p) for p in channel.priority_steps])


@pytest.mark.usefixtures("live_db")
def test_a_release_takes_its_place_and_its_urgent_note_before_it_is_published(
    critical_queue: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Taken after the publish, a task that ran and ended first (the dispatcher descheduled in
    between, on a busy machine) would find no place to free, and the dispatcher would then take
    one that nothing frees before the 150 s lease. A publish that fails gives both back."""
    get_redis().set(dispatch._contended_key("critical"), "1", px=5000)
    dispatch.hold("alpha", "critical", BATCHES[:2])
    get_redis().delete(dispatch._contended_key("critical"))
    seen: list[tuple[str, float | None, float | None]] = []
    publish = pipeline.publish_send

    def observed(ids: list[str], queue: str, schema: str, task_id: str | None = None) -> str:
        assert task_id is not None
        client = get_redis()
        seen.append(
            (
                task_id,
                client.zscore(dispatch.RELEASED_KEY, task_id),
                client.zscore(urgency.URGENT_KEY, task_id),
            )
        )
        if len(seen) == 2:
            raise redis.ConnectionError("the broker went away")
        return publish(ids, queue, schema, task_id)

    monkeypatch.setattr(pipeline, "publish_send", observed)
    dispatcher = dispatch.Dispatcher(priorities=["critical"])
    try:
        with pytest.raises(redis.ConnectionError):
            dispatcher.once()
        (first, first_place, first_note), (failed, failed_place, failed_note) = seen
        # Both taken before each publish, the failed one's too.
        assert None not in (first_place, first_note, failed_place, failed_note)
        assert dispatcher.released["critical"] == [first]
        assert get_redis().zscore(dispatch.RELEASED_KEY, failed) is None  # given back
        assert get_redis().zscore(urgency.URGENT_KEY, failed) is None
        assert held("critical", "alpha") == BATCHES[1:2]  # and its batch is back at the head of the list
    finally:
        for task_id in (entry[0] for entry in seen):
            dispatch.release_ended(task_id)
            urgency.done(task_id)
