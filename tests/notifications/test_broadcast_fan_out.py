"""A broadcast chunk's rows: rendered once when only the links differ, per recipient otherwise,
each recipient with their own signed links; and the cheap signer makes Django's tokens."""

import time
import uuid
from email import message_from_bytes, policy
from typing import Any

import pytest
from django.db import transaction
from django_tenants.utils import schema_context

from notifications import compose, fanout, links, pipeline, rendering
from notifications.links import RecipientLinks, read_recipient_token, read_unsubscribe_token
from notifications.models import Broadcast, Delivery, DeliveryEvent, Notification, Recipient
from notifications.pipeline import recipient_links
from notifications.preferences import service as categories
from notifications.providers.base import OutgoingMessage
from notifications.providers.smtp import plain_email
from notifications.rendering import prints_only
from tests.conftest import Personas
from tests.notifications.console_support import signed_in

pytestmark = pytest.mark.usefixtures("live_db")


@pytest.fixture(autouse=True)
def nothing_published(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests fan out by hand and send by hand: no send or progress count is published, so
    a worker (one started by an earlier test may still run) never moves or counts their
    deliveries behind their back."""
    from notifications import live

    monkeypatch.setattr(fanout, "enqueue_all", lambda *a, **k: None)
    monkeypatch.setattr(live, "broadcast_progress_soon", lambda *a, **k: None)


@pytest.fixture
def render_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every source text compose renders, in order (a spy: the real render still runs)."""
    calls: list[str] = []

    def counted(source: str, data: dict[str, Any]) -> str:
        calls.append(source)
        return rendering.render(source, data)

    monkeypatch.setattr("notifications.compose.render", counted)
    return calls


def fan_out(items: list[dict[str, Any]], calls: list[str] | None = None, **message: Any) -> list[Delivery]:
    """Write a broadcast of these recipients and fan its one chunk out in this process
    (`calls`, the render spy, is emptied first: the request's validation renders too)."""
    body = {"channels": ["email"], "subject": "News", "body": "Hi", "data": {}, **message}
    from notifications.api.broadcasts_api import BroadcastCreate
    from notifications.recipients import spec_of

    # The request is validated without the recipients' own data, which the API checks too: this
    # lets a test give a recipient data that fails only at fan-out.
    bare = [{k: v for k, v in item.items() if k != "data"} for item in items]
    data = BroadcastCreate(data={**body, "recipients": bare})
    assert data.is_valid(), data.errors
    with transaction.atomic():  # no on_commit start: the chunk is fanned out by hand below
        broadcast = Broadcast.objects.create(
            message=fanout.message_of(data.spec_for(spec_of({"external_id": "-"}))),
            recipient_count=len(items),
        )
    if calls is not None:
        calls.clear()
    assert fanout.write_chunk(broadcast, items) == len(items)
    return list(
        Delivery.objects.filter(notification__broadcast=broadcast)
        .select_related("notification__recipient")
        .order_by("notification__recipient__external_id")
    )


def people(n: int, **extra: Any) -> list[dict[str, Any]]:
    tag = uuid.uuid4().hex[:6]
    return [{"external_id": f"{tag}-{i}", "email": f"{tag}-{i}@example.com", **extra} for i in range(n)]


def test_a_broadcast_using_only_links_renders_once_and_each_recipient_has_their_own_links(
    personas: Personas, render_calls: list[str]
) -> None:
    with schema_context("alpha"):
        deliveries = fan_out(
            people(5),
            render_calls,
            subject="News for {{ name }}",
            body="Hi {{ name }}. Leave: {{ unsubscribe_url }} Settings: {{ preferences_url }}",
            html="<p>{{ name }}</p><a href='{{ unsubscribe_url }}'>leave</a>",
            data={"name": "Ana"},
            category="digest",
        )
        assert len(render_calls) == 3  # subject, text and html, once for all five recipients
        category = categories.category("digest")
        seen_links = set()
        for d in deliveries:
            recipient = d.notification.recipient
            own = recipient_links(recipient, category)
            assert d.status == "queued"
            assert d.rendered_content["subject"] == "News for Ana"
            assert d.rendered_content["text"].startswith(
                f"Hi Ana. Leave: {own['unsubscribe_url']} Settings: http"
            )
            assert own["unsubscribe_url"] in d.rendered_content["html"]
            assert d.rendered_content["list_unsubscribe"] == own["unsubscribe_url"]
            token = own["unsubscribe_url"].rstrip("/").rsplit("/", 1)[1]
            claim = read_unsubscribe_token(token)
            assert (claim.recipient_id, claim.category) == (str(recipient.id), "digest")
            prefs_token = d.rendered_content["text"].split("?token=")[1]
            assert read_recipient_token(prefs_token).recipient_id == str(recipient.id)
            seen_links.add(own["unsubscribe_url"])
        assert len(seen_links) == 5


def test_a_broadcast_with_per_recipient_data_renders_per_recipient(
    personas: Personas, render_calls: list[str]
) -> None:
    with schema_context("alpha"):
        items = [{**item, "data": {"name": f"N{i}"}} for i, item in enumerate(people(4))]
        deliveries = fan_out(
            items, render_calls, subject="For {{ name }}", body="Hi {{ name }}", data={"name": "all"}
        )
        assert len(render_calls) == 4 * 2
        assert sorted(d.rendered_content["subject"] for d in deliveries) == [
            "For N0",
            "For N1",
            "For N2",
            "For N3",
        ]
        assert {d.notification.data["name"] for d in deliveries} == {"N0", "N1", "N2", "N3"}


def test_a_template_that_does_more_than_print_a_link_renders_per_recipient(
    personas: Personas, render_calls: list[str]
) -> None:
    with schema_context("alpha"):
        deliveries = fan_out(
            people(3), render_calls, body="Leave: {{ unsubscribe_url|upper }}", category="digest"
        )
        assert len(render_calls) == 3 * 2
        for d in deliveries:
            assert d.rendered_content["text"] == "Leave: " + d.rendered_content["list_unsubscribe"].upper()


def test_a_broadcast_that_cannot_be_rendered_for_a_recipient_fails_that_delivery_with_the_reason(
    personas: Personas,
) -> None:
    with schema_context("alpha"):
        items = people(2)
        items[0]["data"] = {"n": 0}
        deliveries = fan_out(items, body="Share: {{ 10 // n }}", data={"n": 5})
        by_id = {d.notification.recipient.external_id: d for d in deliveries}
        failed, queued = by_id[items[0]["external_id"]], by_id[items[1]["external_id"]]
        assert failed.status == "failed"
        assert failed.last_error.startswith("body: cannot render with the given data")
        assert queued.status == "queued"
        assert queued.rendered_content["text"] == "Share: 2"


def test_a_shared_render_is_stored_as_a_mark_and_rebuilt_exactly_as_a_render_per_recipient(
    personas: Personas,
) -> None:
    with schema_context("alpha"):
        subject = "News for {{ name }}"
        body = "Leave: {{ unsubscribe_url }} Settings: {{ preferences_url }}"
        deliveries = fan_out(people(2), subject=subject, body=body, data={"name": "Ana"}, category="digest")
        source = compose.Source(subject=subject, text=body)
        for d in deliveries:
            assert d.content == {compose.SHARED_KEY: {"required": False}}
            links = recipient_links(d.notification.recipient, categories.category("digest"))
            expected = compose.render_content("email", source, {"name": "Ana"}, links)
            rebuilt = d.rendered_content
            # The preferences token carries the time it was signed: compare without it.
            assert rebuilt["text"].split("?token=")[0] == expected["text"].split("?token=")[0]
            assert rebuilt["subject"] == expected["subject"]
            assert rebuilt["list_unsubscribe"] == links["unsubscribe_url"]


@pytest.mark.parametrize("tried_before", [0, 1])
def test_a_shared_delivery_whose_broadcast_was_deleted_fails_with_the_reason_and_is_not_retried(
    personas: Personas, tried_before: int
) -> None:
    """Deleted before it was sent, on its first try or after a provider already failed once:
    it fails saying why, and neither the console nor pipeline.retry offers a retry, which
    could only fail the same way."""
    from notifications import tasks

    with schema_context("alpha"):
        [delivery] = fan_out(people(1), body="Leave: {{ unsubscribe_url }}", category="digest")
        assert compose.SHARED_KEY in delivery.content
        Delivery.objects.filter(pk=delivery.pk).update(attempts=tried_before)
        broadcast_id = delivery.notification.broadcast_id
        assert broadcast_id is not None
        assert not delivery.content_gone
        Broadcast.objects.filter(pk=broadcast_id).delete()
        compose._shared_cache.clear()  # as a process that never saw it
        tasks._send([str(delivery.id)])
        delivery = Delivery.objects.select_related("notification").get(pk=delivery.pk)
        assert delivery.status == "failed"
        assert delivery.last_error == "cannot build its content: its broadcast was deleted before it was sent"
        assert delivery.attempts == tried_before + 1  # the claim counts its try
        assert delivery.rendered_content == {}
        assert delivery.content_gone
        assert not delivery.retriable
        assert pipeline.retry([delivery.id], by="owner@alpha.test") == []
        notification_id = delivery.notification_id
    console = signed_in(personas.alpha.domain, "owner@alpha.test")
    page = console.get(f"/console/notifications/{notification_id}/").content.decode()
    assert "Its broadcast was deleted before it was sent" in page
    assert "data-retry=" not in page
    assert 'id="retry-all"' not in page
    answer = console.post(f"/console/notifications/{notification_id}/retry/", {"all": "1"}, follow=True)
    assert "Nothing to retry" in answer.content.decode()
    with schema_context("alpha"):
        assert Delivery.objects.get(pk=delivery.pk).status == "failed"


def test_a_delivery_whose_content_lacks_what_its_channel_needs_fails_instead_of_sending_it_empty(
    personas: Personas,
) -> None:
    """E.g. a mark read by a worker that cannot rebuild it: fail it, never send a blank mail."""
    from notifications import tasks

    with schema_context("alpha"):
        [delivery] = fan_out(people(1), body="Hello")
        Delivery.objects.filter(pk=delivery.pk).update(content={"html": "<p>only html</p>"})
        tasks._send([str(delivery.id)])
        delivery.refresh_from_db()
        assert delivery.status == "failed"
        assert delivery.last_error == "its content has no subject, text"
        assert not delivery.attempt_log.exists()  # no provider was called


def test_every_delivery_of_a_chunk_starts_with_its_queued_event(personas: Personas) -> None:
    with schema_context("alpha"):
        deliveries = fan_out(people(3))
        events = DeliveryEvent.objects.filter(delivery__in=deliveries)
        assert sorted((e.delivery_id, e.status) for e in events) == sorted(
            (d.id, "queued") for d in deliveries
        )
        assert all(e.created_at == d.created_at for d in deliveries for e in events if e.delivery_id == d.id)
        assert Notification.objects.filter(deliveries__in=deliveries).count() == 3
        assert Recipient.objects.filter(notifications__deliveries__in=deliveries).count() == 3


def test_the_batch_signer_makes_the_tokens_djangos_signer_makes(
    personas: Personas, monkeypatch: pytest.MonkeyPatch
) -> None:
    with schema_context("alpha"):
        rid = str(uuid.uuid4())
        signer = RecipientLinks()
        assert signer.unsubscribe_token(rid, "digest") == links.unsubscribe_token(rid, "digest")
        now = time.time()
        monkeypatch.setattr(time, "time", lambda: now)
        assert signer.recipient_token(rid) == links.recipient_token(rid)
        assert signer.url("/x") == links.tenant_url("/x")
        # and a forged one is still refused
        with pytest.raises(links.BadToken):
            read_unsubscribe_token(signer.unsubscribe_token(rid, "digest")[:-2] + "xx")
    with schema_context("beta"), pytest.raises(links.BadToken):
        read_unsubscribe_token(signer.unsubscribe_token(rid, "digest"))


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("Hi {{ name }} {{ unsubscribe_url }}", True),
        ("{% for x in xs %}{{ preferences_url }}{% endfor %}", True),
        ("{{ unsubscribe_url|upper }}", False),
        ("{% if unsubscribe_url %}x{% endif %}", False),
        ("{% set unsubscribe_url = 'a' %}{{ unsubscribe_url }}", False),
        ("{{ unsubscribe_url ~ 'x' }}", False),
        ("{{ unsubscribe_url[0] }}", False),
        ("{% macro m(unsubscribe_url) %}{{ unsubscribe_url }}{% endmacro %}", False),
        ("{{ [1, 2]|random }} {{ unsubscribe_url }}", False),
        ("{{ unclosed", False),
    ],
)
def test_only_templates_that_print_links_as_they_are_share_one_render(source: str, expected: bool) -> None:
    assert prints_only(source, frozenset(compose.LINK_VARIABLES)) is expected


@pytest.mark.parametrize(
    "message",
    [
        OutgoingMessage("d-1", "email", "a@example.com", subject="Hi", text="Hello\n.dot\nbye"),
        OutgoingMessage("d-2", "email", "a@example.com", subject="Hi", text="Olá " + "x" * 1200),
        OutgoingMessage(
            "d-3",
            "email",
            "a@example.com",
            subject="Hi",
            text="Hello",
            html="<p>Olá</p>",
            headers={"List-Unsubscribe": "<https://alpha.localhost/u/unsubscribe/t/>"},
        ),
    ],
)
def test_a_hand_formatted_email_reads_as_djangos_would(message: OutgoingMessage) -> None:
    from django.core.mail import EmailMultiAlternatives

    headers = {"Message-ID": f"<{message.delivery_id}@herald.test>", **message.headers}
    plain = plain_email("Herald <notifications@herald.test>", message, headers)
    assert plain is not None
    assert plain.envelope_from == "notifications@herald.test"
    ours = message_from_bytes(plain.data, policy=policy.default)
    reference = EmailMultiAlternatives(
        message.subject, message.text, "Herald <notifications@herald.test>", [message.to], headers=headers
    )
    if message.html:
        reference.attach_alternative(message.html, "text/html")
    theirs = message_from_bytes(reference.message().as_bytes(), policy=policy.default)
    for name in ("Subject", "From", "To", "Message-ID", "MIME-Version", "List-Unsubscribe"):
        assert ours[name] == theirs[name], name
    assert ours.get_content_type() == theirs.get_content_type()
    for kind in ("plain", "html"):
        mine, reference_part = ours.get_body((kind,)), theirs.get_body((kind,))
        assert (mine is None) == (reference_part is None)
        if mine is not None and reference_part is not None:
            assert mine.get_content().replace("\r\n", "\n").rstrip() == reference_part.get_content().rstrip()


def test_an_email_with_a_non_ascii_subject_or_a_display_name_recipient_is_left_to_django() -> None:
    headers = {"Message-ID": "<d@herald.test>"}
    assert (
        plain_email("n@herald.test", OutgoingMessage("d", "email", "a@example.com", subject="Olá"), headers)
        is None
    )
    assert (
        plain_email(
            "n@herald.test", OutgoingMessage("d", "email", "Ana <a@example.com>", subject="Hi"), headers
        )
        is None
    )
    assert (
        plain_email(
            "n@herald.test", OutgoingMessage("d", "email", "a@example.com", subject="a\nBcc: x"), headers
        )
        is None
    )


def test_a_chunk_whose_write_fails_once_is_retried_and_written_once(
    personas: Personas, monkeypatch: pytest.MonkeyPatch
) -> None:
    from django.db import OperationalError

    from notifications.models import BroadcastChunk

    with schema_context("alpha"):
        items = people(3)
        with transaction.atomic():  # no on_commit start: the chunk task is run below
            broadcast = Broadcast.objects.create(
                message={
                    "channels": ["email"],
                    "sources": {"email": {"subject": "S", "text": "T", "html": "", "url": "", "origin": ""}},
                    "data": {},
                    "category": "general",
                    "template_key": "",
                    "locale": "",
                    "subject": "S",
                    "body": "T",
                },
                recipient_count=3,
            )
            BroadcastChunk.objects.create(broadcast=broadcast, index=0, recipients=items)
        real = fanout.write_chunk
        failures = [OperationalError("server closed the connection unexpectedly")]

        def flaky(broadcast: Broadcast, chunk_items: list[dict[str, Any]]) -> int:
            if failures:
                raise failures.pop()
            return real(broadcast, chunk_items)

        monkeypatch.setattr(fanout, "write_chunk", flaky)
        result = fanout.fan_out_chunk.apply(args=(str(broadcast.id), 0))
        assert result.get() == 3
        assert failures == []
        assert Delivery.objects.filter(notification__broadcast=broadcast).count() == 3
        assert BroadcastChunk.objects.get(broadcast=broadcast, index=0).done


def test_a_count_of_a_broadcasts_deliveries_is_reused_while_young_and_the_live_task_counts_anew(
    personas: Personas, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GET /broadcasts/<id> (and the console's polling) reuse a count made less than
    live.progress_interval ago, whoever made it; the live progress task always counts."""
    from notifications import live

    monkeypatch.setattr(live, "PROGRESS_INTERVAL_MS", 60_000)  # young for the whole test, however slow
    client = personas.alpha.client()
    with schema_context("alpha"):
        deliveries = fan_out(people(3))
        broadcast = Broadcast.objects.get(notifications__id=deliveries[0].notification_id)
    first = client.get(f"/api/v1/broadcasts/{broadcast.id}").json()
    assert first["deliveries"]["by_status"] == {"queued": 3}
    with schema_context("alpha"):
        Delivery.objects.filter(pk=deliveries[0].pk).update(status="sent")
    again = client.get(f"/api/v1/broadcasts/{broadcast.id}").json()
    assert again["deliveries"]["by_status"] == {"queued": 3}  # the count of a moment ago
    assert again["counted_at"] == first["counted_at"]
    with schema_context("alpha"):
        live_body = fanout.progress(broadcast, fresh=True)  # as the live progress task does
    assert live_body["deliveries"]["by_status"] == {"queued": 2, "sent": 1}
    assert live_body["counted_at"] > first["counted_at"]
    after = client.get(f"/api/v1/broadcasts/{broadcast.id}").json()
    assert after["deliveries"]["by_status"] == {"queued": 2, "sent": 1}  # the live task's count
    assert after["counted_at"] == live_body["counted_at"]


def test_a_kept_count_older_than_its_max_age_is_not_reused(personas: Personas) -> None:
    with schema_context("alpha"):
        deliveries = fan_out(people(2))
        broadcast = Broadcast.objects.get(notifications__id=deliveries[0].notification_id)
        counts, at = fanout.delivery_counts(broadcast, max_age=5)
        assert counts == {"queued": 2}
        Delivery.objects.filter(pk=deliveries[0].pk).update(status="sent")
        assert fanout.delivery_counts(broadcast, max_age=5) == (counts, at)
        time.sleep(0.3)
        recounted, later = fanout.delivery_counts(broadcast, max_age=0.2)
        assert recounted == {"queued": 1, "sent": 1}
        assert later > at
