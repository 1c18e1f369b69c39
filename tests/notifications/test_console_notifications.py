"""The console's notifications list (filters, search, pages, rows fetched live) and a
notification's page (deliveries, timeline of events and attempts)."""

import uuid
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone
from django_tenants.utils import schema_context

from notifications.models import DeliveryAttempt, Notification
from tests.conftest import Personas
from tests.notifications.console_support import make_notification, signed_in

pytestmark = pytest.mark.django_db


@pytest.fixture
def alpha(personas: Personas) -> Client:
    return signed_in(personas.alpha.domain, "owner@alpha.test")


def shown(client: Client, query: str) -> str:
    response = client.get(f"/console/notifications/?{query}")
    assert response.status_code == 200
    return response.content.decode()


def tag() -> str:
    return uuid.uuid4().hex[:10]


def test_it_filters_by_channel_and_delivery_status_together(alpha: Client) -> None:
    t = tag()
    failed_sms = make_notification("alpha", [("email", "sent"), ("sms", "failed")], subject=f"{t}-a")
    failed_email = make_notification("alpha", [("email", "failed"), ("sms", "sent")], subject=f"{t}-b")
    page = shown(alpha, f"q={t}&channel=sms&status=failed")
    assert str(failed_sms.id) in page
    assert str(failed_email.id) not in page
    page = shown(alpha, f"q={t}&status=failed")
    assert str(failed_sms.id) in page
    assert str(failed_email.id) in page


def test_it_filters_by_recipient_external_id_email_or_phone(alpha: Client) -> None:
    t = tag()
    ana = make_notification(
        "alpha", [("email", "sent")], external_id=f"ana-{t}", email=f"ana-{t}@example.com"
    )
    bo = make_notification("alpha", [("sms", "sent")], external_id=f"bo-{t}", phone="+14155550123")
    assert str(ana.id) in shown(alpha, f"recipient=ana-{t}")
    assert str(bo.id) not in shown(alpha, f"recipient=ana-{t}")
    assert str(ana.id) in shown(alpha, f"recipient=ANA-{t}@example.com")
    by_phone = shown(alpha, "recipient=%2B14155550123")
    assert str(bo.id) in by_phone
    assert str(ana.id) not in by_phone


def test_it_filters_by_date_range(alpha: Client) -> None:
    t = tag()
    old = make_notification(
        "alpha", [("email", "sent")], subject=t, created_at=timezone.now() - timedelta(days=10)
    )
    new = make_notification("alpha", [("email", "sent")], subject=t)
    since = (timezone.localdate() - timedelta(days=2)).isoformat()
    until = (timezone.localdate() - timedelta(days=5)).isoformat()
    recent = shown(alpha, f"q={t}&since={since}")
    assert str(new.id) in recent
    assert str(old.id) not in recent
    older = shown(alpha, f"q={t}&until={until}")
    assert str(old.id) in older
    assert str(new.id) not in older


def test_it_searches_subject_body_template_key_and_recipient(alpha: Client) -> None:
    t = tag()
    by_subject = make_notification("alpha", [("email", "sent")], subject=f"Invoice {t} ready")
    by_body = make_notification("alpha", [("email", "sent")], body=f"your code {t}")
    by_template = make_notification("alpha", [("email", "sent")], template_key=f"tpl-{t}")
    by_recipient = make_notification("alpha", [("email", "sent")], external_id=f"cust-{t}")
    other = make_notification("alpha", [("email", "sent")], subject="Something else")
    page = shown(alpha, f"q={t}")
    for n in (by_subject, by_body, by_template, by_recipient):
        assert str(n.id) in page
    assert str(other.id) not in page


def test_a_bad_filter_is_named_not_a_500(alpha: Client) -> None:
    page = shown(alpha, "since=yesterday&channel=fax")
    assert "since: a date like" in page
    assert "channel must be one of" in page


def test_the_list_pages_without_counting_the_table(alpha: Client) -> None:
    t = tag()
    made = [make_notification("alpha", [("email", "sent")], subject=f"{t} {i}") for i in range(52)]
    first = shown(alpha, f"q={t}")
    assert first.count("data-notification-id=") == 50
    assert "Older" in first
    second = shown(alpha, f"q={t}&page=2")
    assert second.count("data-notification-id=") == 2
    assert str(made[0].id) in second  # the oldest is on the last page
    assert "Newer" in second


def test_rows_carry_stable_ids_for_live_updates(alpha: Client) -> None:
    n = make_notification("alpha", [("email", "sending"), ("sms", "queued")], subject=tag())
    page = shown(alpha, f"q={n.subject}")
    with schema_context("alpha"):
        ids = [str(d.id) for d in Notification.objects.get(pk=n.pk).deliveries.all()]
    assert f'data-notification-id="{n.id}"' in page
    for delivery_id in ids:
        assert f'data-delivery-id="{delivery_id}"' in page
    assert 'class="status" data-status="sending"' in page
    assert 'id="notifications-table" data-live-new="true"' in page


def test_the_live_row_endpoint_answers_only_rows_that_match_the_filters(alpha: Client) -> None:
    email = make_notification("alpha", [("email", "queued")])
    sms = make_notification("alpha", [("sms", "queued")])
    both = alpha.get(f"/console/notifications/rows/?id={email.id}&id={sms.id}")
    assert both.status_code == 200
    assert str(email.id) in both.content.decode()
    assert str(sms.id) in both.content.decode()
    only_sms = alpha.get(f"/console/notifications/rows/?id={email.id}&id={sms.id}&channel=sms")
    assert str(sms.id) in only_sms.content.decode()
    assert str(email.id) not in only_sms.content.decode()
    assert alpha.get(f"/console/notifications/{email.id}/row/").status_code == 200
    assert alpha.get(f"/console/notifications/{email.id}/row/?channel=sms").status_code == 204


def test_a_filter_whose_range_has_ended_takes_no_live_rows(alpha: Client) -> None:
    page = shown(alpha, "until=2020-01-01")
    assert 'data-live-new="false"' in page
    assert 'data-live-new="false"' in shown(alpha, "page=2")


def test_another_tenants_rows_are_never_served(personas: Personas) -> None:
    n = make_notification("alpha", [("email", "queued")])
    beta = signed_in(personas.beta.domain, "owner@beta.test")
    assert beta.get(f"/console/notifications/rows/?id={n.id}").status_code == 204
    assert beta.get(f"/console/notifications/{n.id}/row/").status_code == 404
    assert beta.get(f"/console/notifications/{n.id}/deliveries/").status_code == 404
    assert beta.get(f"/console/notifications/{n.id}/").status_code == 404


def test_a_notification_page_shows_its_timeline_of_events_and_attempts(alpha: Client) -> None:
    n = make_notification(
        "alpha",
        [("email", "failed")],
        email="x@example.com",
        attempts=1,
        last_error="smtp: 550 No such user here",
    )
    with schema_context("alpha"):
        delivery = Notification.objects.get(pk=n.pk).deliveries.get()
        DeliveryAttempt.objects.create(
            delivery=delivery,
            number=1,
            provider="smtp",
            outcome="permanent_error",
            response="550 No such user here",
            duration_ms=42,
        )
    page = alpha.get(f"/console/notifications/{n.id}/").content.decode()
    assert f'id="delivery-{delivery.id}"' in page
    assert "attempt 1 via <strong>smtp</strong>" in page
    assert "in 42 ms" in page
    assert "550 No such user here" in page
    assert 'id="notification-status" data-status="failed"' in page
    partial = alpha.get(f"/console/notifications/{n.id}/deliveries/").content.decode()
    assert "550 No such user here" in partial
    assert "<html" not in partial
