"""The console's dashboard: counters and sends per channel and state, from grouped queries."""

import random
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_tenants.utils import schema_context

from notifications.console import stats
from notifications.models import DeliveryEvent
from tests.conftest import Personas
from tests.notifications.console_support import make_notification, signed_in, user_with_role

pytestmark = pytest.mark.django_db


@pytest.fixture
def alpha(personas: Personas) -> Client:
    return signed_in(personas.alpha.domain, "owner@alpha.test")


def figures(client: Client) -> dict[str, Any]:
    response = client.get("/console/dashboard/data/")
    assert response.status_code == 200
    data: dict[str, Any] = response.json()
    return data


def far_future() -> datetime:
    """A moment after every real event, and different in every run (closed buckets are cached
    in Redis, which outlives a test's rolled-back rows)."""
    return timezone.now() + timedelta(
        days=random.randint(1_000, 1_000_000), seconds=random.randint(0, 86_400)
    )


def per(window: dict[str, Any], channel: str, status: str) -> int:
    return sum(n for _, c, s, n in window["rows"] if c == channel and s == status)


def test_console_home_is_the_dashboard_with_counters_and_a_chart(alpha: Client) -> None:
    response = alpha.get("/console/")
    assert response.status_code == 200
    page = response.content.decode()
    for element in ('id="counter-sent"', 'id="counter-failed"', 'id="counter-queued"', 'id="sends-chart"'):
        assert element in page
    assert 'id="dashboard-data"' in page
    assert "herald/console/dashboard.js" in page


def test_sends_are_counted_per_channel_and_state_in_the_last_hour_and_today(alpha: Client) -> None:
    before = figures(alpha)
    make_notification("alpha", [("email", "sent"), ("sms", "failed")])
    make_notification("alpha", [("email", "sent")])
    after = figures(alpha)
    for window in ("hour", "day"):
        assert per(after[window], "email", "sent") - per(before[window], "email", "sent") == 2
        assert per(after[window], "sms", "failed") - per(before[window], "sms", "failed") == 1
        assert per(after[window], "email", "queued") - per(before[window], "email", "queued") == 2
    assert after["counters"]["sent"]["hour"] - before["counters"]["sent"]["hour"] == 2
    assert after["counters"]["sent"]["today"] - before["counters"]["sent"]["today"] == 2
    assert after["counters"]["failed"]["hour"] - before["counters"]["failed"]["hour"] == 1
    assert after["gauges"]["notifications_today"] - before["gauges"]["notifications_today"] == 2


def test_the_gauges_count_what_is_queued_and_sending_now(alpha: Client) -> None:
    before = figures(alpha)["gauges"]
    make_notification("alpha", [("email", "queued"), ("sms", "sending"), ("push", "sent")])
    after = figures(alpha)["gauges"]
    assert after["queued"] - before["queued"] == 1
    assert after["sending"] - before["sending"] == 1


def test_events_older_than_the_window_are_left_out(personas: Personas) -> None:
    now = far_future()  # a window of our own, after every other event
    n = make_notification("alpha", [("email", "sent")])
    with schema_context("alpha"):
        delivery = n.deliveries.get()
        at = [now - timedelta(minutes=90), now - timedelta(minutes=30), now - timedelta(minutes=1)]
        for moment in at:
            DeliveryEvent.objects.create(delivery=delivery, status="delivered", created_at=moment)
        hour, day = stats.series("hour", now), stats.series("day", now)
    assert per(hour, "email", "delivered") == 2
    assert per(day, "email", "delivered") == 3
    assert hour["count"] == 60
    assert day["count"] == 24
    minute_buckets = sorted(index for index, _, status, _ in hour["rows"] if status == "delivered")
    assert minute_buckets == [29, 58]  # 30 and 1 minutes before `now`, in a 60-minute window


def test_the_first_event_of_a_window_is_found_by_its_id(personas: Personas) -> None:
    start = far_future()
    n = make_notification("alpha", [("email", "queued")])
    with schema_context("alpha"):
        delivery = n.deliveries.get()
        made = [
            DeliveryEvent.objects.create(
                delivery=delivery, status="sent", created_at=start + timedelta(seconds=i)
            )
            for i in range(37)
        ]
        assert stats.first_event_id_since(start + timedelta(seconds=20)) == made[20].id
        assert stats.first_event_id_since(start) == made[0].id
        assert stats.first_event_id_since(start + timedelta(seconds=99)) is None


def test_recent_failures_link_to_their_notification(alpha: Client) -> None:
    n = make_notification(
        "alpha", [("sms", "failed")], last_error="twilio: 21211 invalid 'To' number", attempts=1
    )
    page = alpha.get("/console/").content.decode()
    assert "21211 invalid" in page
    assert f"/console/notifications/{n.id}/" in page
    partial = alpha.get("/console/dashboard/failures/").content.decode()
    assert f'data-notification-id="{n.id}"' in partial
    with schema_context("alpha"):
        delivery_id = n.deliveries.get().id
    assert f'data-retry="{delivery_id}"' in partial  # an admin may retry it from here


def test_a_viewer_sees_the_dashboard(personas: Personas) -> None:
    make_notification("alpha", [("sms", "failed")], attempts=1)
    viewer = user_with_role("alpha", personas.alpha.domain, "viewer")
    page = viewer.get("/console/")
    assert page.status_code == 200
    assert "data-retry=" not in page.content.decode()
    assert viewer.get("/console/dashboard/data/").status_code == 200


def test_another_tenants_figures_are_not_counted(personas: Personas) -> None:
    beta = signed_in(personas.beta.domain, "owner@beta.test")
    before = figures(beta)
    make_notification("alpha", [("email", "sent")])
    after = figures(beta)
    assert per(after["hour"], "email", "sent") == per(before["hour"], "email", "sent")


def test_the_navigation_links_only_pages_that_exist(alpha: Client) -> None:
    page = alpha.get("/console/").content.decode()
    for name in ("console:notifications", "console:broadcasts", "console:templates", "console:topics"):
        assert f'data-nav="{name}"' in page
    assert 'data-nav="console:dashboard"' in page
    assert 'aria-current="page"' in page
    assert 'data-live-url="/ws/console/"' in page
    assert 'id="live-state"' in page
    assert "herald/console/live.js" in page


def test_a_navigation_link_to_a_page_that_does_not_exist_renders_nothing() -> None:
    from django.template import Context, Template

    rendered = Template(
        '{% load console_tags %}[{% console_link "console:no_such_page" "Nowhere" %}]'
        '{% console_link "console:topics" "Topics" as topics %}{{ topics }}'
    ).render(Context({}))
    assert rendered == '[]<a href="/console/topics/" class="nav-link" data-nav="console:topics">Topics</a>'


def test_a_closed_bucket_is_counted_once_and_then_read_from_the_cache(personas: Personas) -> None:
    now = far_future().replace(second=30)
    closed = now - timedelta(seconds=105)  # in a minute that ended more than CLOSED_AFTER ago
    n = make_notification("alpha", [("sms", "sent")])
    with schema_context("alpha"):
        delivery = n.deliveries.get()
        DeliveryEvent.objects.create(delivery=delivery, status="delivered", created_at=closed)
        DeliveryEvent.objects.create(delivery=delivery, status="delivered", created_at=now)
        with CaptureQueriesContext(connection) as first:
            hour = stats.series("hour", now)
        assert per(hour, "sms", "delivered") == 2
        # A row committed late into the closed minute is not counted again; the open minute is.
        DeliveryEvent.objects.create(delivery=delivery, status="delivered", created_at=closed)
        DeliveryEvent.objects.create(delivery=delivery, status="delivered", created_at=now)
        with CaptureQueriesContext(connection) as second:
            again = stats.series("hour", now)
    assert per(again, "sms", "delivered") == 3
    assert len([q for q in first.captured_queries if "GROUP BY" in q["sql"]]) == 2  # closed, then open
    assert len([q for q in second.captured_queries if "GROUP BY" in q["sql"]]) == 1  # open only


def test_the_days_current_hour_is_the_sum_of_the_hours_minutes(personas: Personas) -> None:
    now = far_future().replace(minute=20, second=30)
    this_hour = now.replace(minute=0, second=0, microsecond=0)
    n = make_notification("alpha", [("push", "sent")])
    with schema_context("alpha"):
        delivery = n.deliveries.get()
        for moment in (this_hour - timedelta(hours=3), this_hour - timedelta(minutes=5), this_hour, now):
            DeliveryEvent.objects.create(delivery=delivery, status="failed", created_at=moment)
        hour, day = stats.both_windows(now)
    last = day["count"] - 1
    assert [r for r in day["rows"] if r[0] == last and r[1] == "push"] == [[last, "push", "failed", 2]]
    assert per(day, "push", "failed") == 4
    assert per(hour, "push", "failed") == 3


def test_recent_failures_are_the_newest_failed_or_bounced_first(personas: Personas) -> None:
    later = far_future()
    failed = make_notification("alpha", [("email", "failed")], attempts=1)
    bounced = make_notification("alpha", [("email", "bounced")], attempts=1)
    with schema_context("alpha"):
        from notifications.models import Delivery

        Delivery.objects.filter(notification=failed).update(updated_at=later)
        Delivery.objects.filter(notification=bounced).update(updated_at=later + timedelta(seconds=1))
        shown = [d.notification_id for d in stats.recent_failures(limit=2)]
    assert shown == [bounced.id, failed.id]


def test_the_figures_say_up_to_which_event_they_count(alpha: Client) -> None:
    """The page skips live events up to this id: the stream replays some it already counted."""
    n = make_notification("alpha", [("email", "sent")])
    with schema_context("alpha"):
        newest = (
            DeliveryEvent.objects.filter(delivery__notification=n)
            .order_by("-id")
            .values_list("id", flat=True)[0]
        )
    assert figures(alpha)["last_event"] == newest
