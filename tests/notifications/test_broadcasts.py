"""Topics, broadcasts (fan-out in chunks by a chord) and batches, through a real worker."""

import asyncio
import json
import uuid
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django_tenants.utils import schema_context

from notifications import compose, fanout
from notifications.models import Broadcast, BroadcastChunk, Delivery, Notification
from notifications.pipeline import recipient_links
from notifications.preferences import service as categories
from notifications.recipients import spec_of
from tests.conftest import Personas, Process, wait_until
from tests.fakes.smtp_server import FakeSmtpServer

pytestmark = pytest.mark.usefixtures("live_db")


def call(personas: Personas, method: str, path: str, body: Any = None, persona: str = "alpha") -> Any:
    client = getattr(personas, persona).client()
    payload = json.dumps(body) if body is not None else None
    return getattr(client, method)(path, data=payload, content_type="application/json")


def people(n: int, tag: str) -> list[dict[str, Any]]:
    return [{"external_id": f"{tag}-{i}", "email": f"{tag}-{i}@example.com"} for i in range(n)]


MESSAGE = {
    "channels": ["email"],
    "subject": "News for {{ name }}",
    "body": "Hi {{ name }}",
    "data": {"name": "you"},
}


def settled(personas: Personas, url: str, timeout: float = 90) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        shown: dict[str, Any] = call(personas, "get", url).json()
        return shown if shown["status"] == "fanned_out" and shown["percent_settled"] == 100.0 else None

    result: dict[str, Any] = wait_until(done, timeout=timeout, interval=0.5)
    return result


# --- topics -----------------------------------------------------------------------------------


def test_topics_are_managed_over_the_api_and_stay_per_tenant(personas: Personas) -> None:
    key = f"t-{uuid.uuid4().hex[:8]}"
    assert (
        call(personas, "post", "/api/v1/topics", {"key": key, "name": "Product updates"}).status_code == 201
    )
    added = call(personas, "post", f"/api/v1/topics/{key}/subscribers", {"recipients": people(3, key)})
    assert added.json() == {"added": 3, "subscribers": 3}
    again = call(personas, "post", f"/api/v1/topics/{key}/subscribers", {"recipients": people(3, key)})
    assert again.json() == {"added": 0, "subscribers": 3}
    removed = call(personas, "delete", f"/api/v1/topics/{key}/subscribers", {"external_ids": [f"{key}-0"]})
    assert removed.json() == {"removed": 1, "subscribers": 2}
    listed = call(personas, "get", f"/api/v1/topics/{key}/subscribers").json()["results"]
    assert sorted(r["external_id"] for r in listed) == [f"{key}-1", f"{key}-2"]
    assert call(personas, "get", f"/api/v1/topics/{key}", persona="beta").status_code == 404
    bad = call(
        personas,
        "post",
        f"/api/v1/topics/{key}/subscribers",
        {"recipients": [{"external_id": "x", "email": "no"}]},
    )
    assert bad.status_code == 400
    assert "recipients[0].email" in bad.json()["error"]["fields"]


# --- broadcasts -------------------------------------------------------------------------------


@pytest.mark.worker
def test_a_broadcast_to_an_inline_list_reaches_everyone_once(
    worker: Process, smtp_server: FakeSmtpServer, personas: Personas
) -> None:
    tag = f"b{uuid.uuid4().hex[:6]}"
    response = call(personas, "post", "/api/v1/broadcasts", {**MESSAGE, "recipients": people(2300, tag)})
    assert response.status_code == 202, response.content
    assert response.json()["recipients"] == 2300
    shown = settled(personas, response.json()["url"])
    chunks = -(-2300 // fanout.CHUNK_SIZE)  # rounded up
    assert shown["chunks"] == {"done": chunks, "total": chunks}
    assert shown["deliveries"] == {"expected": 2300, "by_status": {"sent": 2300}}
    received = [m for m in smtp_server.handler.messages if m.rcpt_tos[0].startswith(f"{tag}-")]
    assert len(received) == 2300
    assert len({m.rcpt_tos[0] for m in received}) == 2300
    assert received[0].message["Subject"] == "News for you"


@pytest.mark.worker
def test_a_broadcast_rendered_once_sends_each_recipient_their_own_links_and_shows_what_was_sent(
    worker: Process, smtp_server: FakeSmtpServer, personas: Personas
) -> None:
    """Its deliveries store only a mark (compose.shared_mark); the send and the API rebuild it."""
    tag = f"s{uuid.uuid4().hex[:6]}"
    body = {**MESSAGE, "body": "Hi {{ name }}. Leave: {{ unsubscribe_url }}", "category": "digest"}
    response = call(personas, "post", "/api/v1/broadcasts", {**body, "recipients": people(3, tag)})
    assert response.status_code == 202, response.content
    settled(personas, response.json()["url"])
    with schema_context("alpha"):
        deliveries = list(
            Delivery.objects.filter(notification__broadcast_id=response.json()["id"]).select_related(
                "notification__recipient"
            )
        )
        assert len(deliveries) == 3
        assert all(d.content == {compose.SHARED_KEY: {"required": False}} for d in deliveries)
        links = set()
        for d in deliveries:
            recipient = d.notification.recipient
            own = recipient_links(recipient, categories.category("digest"))["unsubscribe_url"]
            [mail] = smtp_server.messages_to(recipient.email)
            plain = mail.get_body(("plain",))
            assert plain is not None
            assert plain.get_content().strip() == f"Hi you. Leave: {own}"
            assert mail["List-Unsubscribe"] == f"<{own}>"
            shown = call(personas, "get", f"/api/v1/notifications/{d.notification_id}").json()
            content = shown["deliveries"][0]["content"]
            assert content["text"] == f"Hi you. Leave: {own}"
            assert content["list_unsubscribe"] == own
            links.add(own)
        assert len(links) == 3


@pytest.mark.worker
def test_a_broadcast_with_more_chunks_than_lanes_fans_out_every_chunk_and_finishes(
    worker: Process, smtp_server: FakeSmtpServer, personas: Personas
) -> None:
    n = fanout.CHUNK_SIZE * fanout.FAN_OUT_LANES + 10  # one lane runs two chunks in a row
    tag = f"l{uuid.uuid4().hex[:6]}"
    response = call(personas, "post", "/api/v1/broadcasts", {**MESSAGE, "recipients": people(n, tag)})
    assert response.status_code == 202, response.content
    shown = settled(personas, response.json()["url"], timeout=180)
    assert shown["chunks"] == {"done": fanout.FAN_OUT_LANES + 1, "total": fanout.FAN_OUT_LANES + 1}
    assert shown["deliveries"] == {"expected": n, "by_status": {"sent": n}}
    received = {m.rcpt_tos[0] for m in smtp_server.handler.messages if m.rcpt_tos[0].startswith(f"{tag}-")}
    assert len(received) == n


@pytest.mark.worker
def test_a_broadcast_to_a_topic_honours_preferences(
    worker: Process, smtp_server: FakeSmtpServer, personas: Personas
) -> None:
    key = f"t-{uuid.uuid4().hex[:8]}"
    call(personas, "post", "/api/v1/topics", {"key": key})
    call(personas, "post", f"/api/v1/topics/{key}/subscribers", {"recipients": people(5, key)})
    call(
        personas,
        "put",
        f"/api/v1/recipients/{key}-0/preferences",
        {"preferences": [{"category": "digest", "channel": "email", "enabled": False}]},
    )
    response = call(personas, "post", "/api/v1/broadcasts", {**MESSAGE, "topic": key, "category": "digest"})
    shown = settled(personas, response.json()["url"])
    assert shown["recipients"] == 5
    assert shown["deliveries"]["by_status"] == {"sent": 4, "suppressed": 1}


@pytest.mark.worker
def test_broadcast_progress_is_pushed_to_the_tenants_group(
    worker: Process, smtp_server: FakeSmtpServer, personas: Personas
) -> None:
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)("tenant.alpha", channel)
    response = call(
        personas, "post", "/api/v1/broadcasts", {**MESSAGE, "recipients": people(10, uuid.uuid4().hex[:6])}
    )
    broadcast_id = response.json()["id"]

    async def until_fanned_out() -> dict[str, Any]:
        while True:
            event = await asyncio.wait_for(layer.receive(channel), timeout=30)
            body: dict[str, Any] = event.get("broadcast", {})
            if (
                event["type"] == "broadcast.progress"
                and body.get("id") == broadcast_id
                and body["status"] == "fanned_out"
            ):
                return body

    last = async_to_sync(until_fanned_out)()
    assert last["chunks"] == {"done": 1, "total": 1}


def test_a_chunk_is_fanned_out_once_however_often_its_task_runs(personas: Personas) -> None:
    with schema_context("alpha"):
        tag = uuid.uuid4().hex[:6]
        from notifications.api.broadcasts_api import BroadcastCreate

        data = BroadcastCreate(data={**MESSAGE, "recipients": people(5, tag)})
        assert data.is_valid(), data.errors
        from django.db import transaction

        with transaction.atomic():  # keep the on_commit start from publishing: roll back nothing, just skip
            broadcast = Broadcast.objects.create(
                message=fanout.message_of(data.spec_for(spec_of({"external_id": "-"})))
            )
            BroadcastChunk.objects.create(
                broadcast=broadcast, index=0, recipients=data.validated_data["recipient_items"]
            )
        assert fanout.fan_out_chunk(str(broadcast.id), 0) == 5
        assert fanout.fan_out_chunk(str(broadcast.id), 0) == 0
        assert Notification.objects.filter(broadcast=broadcast).count() == 5
        assert Delivery.objects.filter(notification__broadcast=broadcast).count() == 5


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**MESSAGE}, "topic"),
        ({**MESSAGE, "topic": "x", "recipients": [{"external_id": "a"}]}, "topic"),
        ({**MESSAGE, "topic": "no-such-topic"}, "topic"),
        ({**MESSAGE, "recipients": []}, "recipients"),
        (
            {**MESSAGE, "recipients": [{"external_id": "a"}, {"email": "b@example.com"}]},
            "recipients[1].external_id",
        ),
        ({**MESSAGE, "recipients": [{"external_id": "a", "phone": "12345"}]}, "recipients[0].phone"),
        ({**MESSAGE, "body": "Hi {{ nobody }}", "recipients": [{"external_id": "a"}]}, "body"),
    ],
)
def test_a_bad_broadcast_is_a_400_naming_the_field(personas: Personas, body: Any, field: str) -> None:
    response = call(personas, "post", "/api/v1/broadcasts", body)
    assert response.status_code == 400, response.content
    assert field in response.json()["error"]["fields"]


def test_a_broadcast_over_100000_recipients_is_refused(personas: Personas) -> None:
    recipients = [{"external_id": str(i)} for i in range(100_001)]
    response = call(personas, "post", "/api/v1/broadcasts", {**MESSAGE, "recipients": recipients})
    assert response.status_code == 400
    assert "at most 100000" in response.json()["error"]["fields"]["recipients"][0]


# --- batches ----------------------------------------------------------------------------------


def test_a_batch_accepts_the_valid_items_and_names_what_is_wrong_with_the_others(personas: Personas) -> None:
    good = {
        "recipient": {"external_id": "u-1", "email": "a@example.com"},
        "channels": ["email"],
        "subject": "S",
        "body": "B",
    }
    items = [good, {**good, "priority": "urgent"}, good, {**good, "recipient": {"external_id": "u-2"}}]
    response = call(personas, "post", "/api/v1/notifications/batch", {"notifications": items})
    assert response.status_code == 202
    body = response.json()
    assert (body["accepted"], body["failed"]) == (2, 2)
    results = body["results"]
    assert [r["index"] for r in results] == [0, 1, 2, 3]
    assert results[0]["status"] == "queued"
    assert "priority" in results[1]["error"]["fields"]
    assert "recipient.email" in results[3]["error"]["fields"]
    detail = call(personas, "get", results[2]["url"])
    assert detail.status_code == 200
    assert detail.json()["id"] == results[2]["id"]
    assert results[2]["url"] == f"/api/v1/notifications/{results[2]['id']}"


def test_a_batch_with_nothing_valid_is_a_400_and_over_1000_is_refused(personas: Personas) -> None:
    assert (
        call(personas, "post", "/api/v1/notifications/batch", {"notifications": [{"x": 1}]}).status_code
        == 400
    )
    response = call(personas, "post", "/api/v1/notifications/batch", {"notifications": [{}] * 1001})
    assert response.status_code == 400
    assert "at most 1000" in response.json()["error"]["fields"]["notifications"][0]
