"""The console's broadcasts: a list with progress bars and a page with counts per status."""

import pytest
from django.test import Client
from django_tenants.utils import schema_context

from notifications.models import Broadcast, Delivery, Notification, Recipient
from tests.conftest import Personas
from tests.notifications.console_support import signed_in, user_with_role

pytestmark = pytest.mark.django_db


@pytest.fixture
def alpha(personas: Personas) -> Client:
    return signed_in(personas.alpha.domain, "owner@alpha.test")


def broadcast_with(
    statuses: list[str], *, status: str = "fanned_out", recipients: int | None = None
) -> Broadcast:
    """A broadcast over email whose deliveries are in these states."""
    with schema_context("alpha"):
        broadcast = Broadcast.objects.create(
            status=status,
            message={"channels": ["email"], "subject": "Spring sale", "data": {}},
            recipient_count=len(statuses) if recipients is None else recipients,
        )
        for i, s in enumerate(statuses):
            r = Recipient.objects.create(external_id=f"b-{broadcast.id}-{i}", email=f"b{i}@example.com")
            n = Notification.objects.create(recipient=r, channels=["email"], body="x", broadcast=broadcast)
            Delivery.objects.create(notification=n, channel="email", address=r.email, status=s)
        return broadcast


def test_the_list_shows_each_broadcasts_progress_of_settled_deliveries(alpha: Client) -> None:
    half = broadcast_with(["sent", "delivered", "queued", "sending"])
    done = broadcast_with(["sent", "failed"])
    page = alpha.get("/console/broadcasts/").content.decode()
    assert f'data-broadcast-id="{half.id}" data-percent="50.0" data-settled="2" data-expected="4"' in page
    assert f'data-broadcast-id="{done.id}" data-percent="100.0" data-settled="2" data-expected="2"' in page
    assert 'data-status="complete"' in page


def test_a_broadcasts_page_counts_deliveries_per_status(alpha: Client) -> None:
    broadcast = broadcast_with(["sent", "sent", "failed", "queued"], recipients=5)
    response = alpha.get(f"/console/broadcasts/{broadcast.id}/")
    assert response.status_code == 200
    page = response.content.decode()
    assert 'id="broadcast-progress"' in page
    assert 'data-percent="60.0" data-settled="3" data-expected="5"' in page
    assert 'id="broadcast-count-sent"><div class="label">sent</div><div class="value" data-value="2">' in page
    assert (
        'id="broadcast-count-failed"><div class="label">failed</div><div class="value" data-value="1">'
        in page
    )
    assert "herald/console/broadcasts.js" in page


def test_the_progress_endpoint_is_fanouts_own_progress(alpha: Client) -> None:
    broadcast = broadcast_with(["delivered", "queued"])
    body = alpha.get(f"/console/broadcasts/{broadcast.id}/progress/").json()
    assert body["id"] == str(broadcast.id)
    assert body["deliveries"] == {"expected": 2, "by_status": {"delivered": 1, "queued": 1}}
    assert body["percent_settled"] == 50.0


def test_a_broadcast_still_fanning_out_is_not_complete(alpha: Client) -> None:
    broadcast = broadcast_with(["sent"], status="fanning_out", recipients=1)
    page = alpha.get(f"/console/broadcasts/{broadcast.id}/").content.decode()
    assert 'id="broadcast-status" data-status="fanning_out"' in page
    assert 'data-complete="false"' in page


def test_a_viewer_sees_broadcasts(personas: Personas) -> None:
    broadcast = broadcast_with(["sent"])
    viewer = user_with_role("alpha", personas.alpha.domain, "viewer")
    assert viewer.get("/console/broadcasts/").status_code == 200
    assert viewer.get(f"/console/broadcasts/{broadcast.id}/").status_code == 200


def test_another_tenants_broadcast_is_not_found(personas: Personas) -> None:
    broadcast = broadcast_with(["sent"])
    beta = signed_in(personas.beta.domain, "owner@beta.test")
    assert beta.get(f"/console/broadcasts/{broadcast.id}/").status_code == 404
    assert beta.get(f"/console/broadcasts/{broadcast.id}/progress/").status_code == 404
    assert str(broadcast.id) not in beta.get("/console/broadcasts/").content.decode()


def test_no_broadcasts_yet_tells_how_to_send_one(personas: Personas) -> None:
    with schema_context("beta"):
        Broadcast.objects.all().delete()  # rolled back after the test
    page = signed_in(personas.beta.domain, "owner@beta.test").get("/console/broadcasts/").content.decode()
    assert "No broadcasts yet" in page
    assert "/api/v1/broadcasts" in page


def test_a_finished_broadcasts_counts_are_reused_by_the_list_but_not_by_its_page(alpha: Client) -> None:
    done = broadcast_with(["sent", "sent"])
    running = broadcast_with(["sent", "queued"])
    alpha.get("/console/broadcasts/")
    with schema_context("alpha"):  # after the list was read: one is retried, the other settles
        for b, was, now in ((done, "sent", "queued"), (running, "queued", "failed")):
            d = Delivery.objects.filter(notification__broadcast=b, status=was).first()
            assert d is not None
            Delivery.objects.filter(pk=d.pk).update(status=now)
    page = alpha.get("/console/broadcasts/").content.decode()
    assert f'data-broadcast-id="{done.id}" data-percent="100.0" data-settled="2"' in page
    assert f'data-broadcast-id="{running.id}" data-percent="100.0" data-settled="2"' in page
    detail = alpha.get(f"/console/broadcasts/{done.id}/").content.decode()
    assert 'data-percent="50.0" data-settled="1" data-expected="2"' in detail
