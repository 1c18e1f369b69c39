"""The console's recipients (search, a recipient's page) and topics (subscribers, add, remove)."""

import uuid

import pytest
from django.test import Client
from django_tenants.utils import schema_context

from notifications.models import Category, Preference, PushSubscription, Recipient, Topic, TopicSubscription
from tests.conftest import Personas
from tests.notifications.console_support import make_notification, signed_in, user_with_role

pytestmark = pytest.mark.django_db


@pytest.fixture
def alpha(personas: Personas) -> Client:
    return signed_in(personas.alpha.domain, "owner@alpha.test")


def tag() -> str:
    return uuid.uuid4().hex[:8]


def topic_with(key: str, *external_ids: str) -> Topic:
    with schema_context("alpha"):
        topic = Topic.objects.create(key=key, name=key.title())
        for e in external_ids:
            r, _ = Recipient.objects.get_or_create(external_id=e)
            TopicSubscription.objects.create(topic=topic, recipient=r)
        return topic


def subscribers(key: str) -> set[str]:
    with schema_context("alpha"):
        return set(
            TopicSubscription.objects.filter(topic__key=key).values_list("recipient__external_id", flat=True)
        )


def test_recipients_are_found_by_external_id_email_or_phone(alpha: Client) -> None:
    t = tag()
    with schema_context("alpha"):
        ana = Recipient.objects.create(
            external_id=f"ana-{t}", email=f"ana.{t}@example.com", phone="+14155550111"
        )
        bo = Recipient.objects.create(external_id=f"bo-{t}", email=f"bo.{t}@example.com")
    by_id = alpha.get(f"/console/recipients/?q=ana-{t}").content.decode()
    assert f'data-recipient-id="{ana.id}"' in by_id
    assert f'data-recipient-id="{bo.id}"' not in by_id
    by_email = alpha.get(f"/console/recipients/?q=bo.{t}@").content.decode()
    assert f'data-recipient-id="{bo.id}"' in by_email
    none = alpha.get(f"/console/recipients/?q=nobody-{t}").content.decode()
    assert "No recipient matches" in none


def test_a_recipients_page_shows_notifications_preferences_and_push_subscriptions(alpha: Client) -> None:
    t = tag()
    n = make_notification("alpha", [("email", "sent")], external_id=f"cara-{t}", subject=f"Welcome {t}")
    with schema_context("alpha"):
        recipient = Recipient.objects.get(external_id=f"cara-{t}")
        news, _ = Category.objects.get_or_create(key=f"news-{t}")
        Preference.objects.create(recipient=recipient, category=news, channel="sms", enabled=False)
        PushSubscription.objects.create(
            recipient=recipient, endpoint=f"https://push.example/{t}", p256dh="k", auth="a"
        )
        topic_with(f"beta-testers-{t}", f"cara-{t}")
    page = alpha.get(f"/console/recipients/{recipient.id}/").content.decode()
    assert f'data-notification-id="{n.id}"' in page
    assert 'id="push-subscriptions" data-value="1"' in page
    assert f'data-category="news-{t}"' in page
    assert 'data-channel="sms" data-enabled="false"' in page
    assert f"beta-testers-{t}" in page


def test_topics_are_listed_with_their_subscriber_counts(alpha: Client) -> None:
    t = tag()
    topic_with(f"launch-{t}", f"a-{t}", f"b-{t}", f"c-{t}")
    page = alpha.get("/console/topics/").content.decode()
    assert f'<tr data-topic-key="launch-{t}">' in page
    row = page.split(f'data-topic-key="launch-{t}"')[1].split("</tr>")[0]
    assert '<td class="num subscribers">3</td>' in row


def test_an_admin_creates_a_topic_with_the_apis_rules(alpha: Client) -> None:
    t = tag()
    created = alpha.post("/console/topics/", {"key": f"news-{t}", "name": "News"})
    assert created.status_code == 302
    again = alpha.post("/console/topics/", {"key": f"news-{t}", "name": "News"})
    assert again.status_code == 400
    assert "a topic with key" in again.content.decode()
    bad = alpha.post("/console/topics/", {"key": "not a slug!", "name": ""})
    assert 'data-error-for="key"' in bad.content.decode()


def test_an_admin_adds_and_removes_subscribers(alpha: Client) -> None:
    t = tag()
    topic_with(f"club-{t}", f"old-{t}")
    added = alpha.post(
        f"/console/topics/club-{t}/subscribers/add/",
        {"recipients": f"new-{t} new.{t}@example.com\nold-{t}\n\nthird-{t}"},
        follow=True,
    )
    assert "2 subscribers added" in added.content.decode()
    assert subscribers(f"club-{t}") == {f"old-{t}", f"new-{t}", f"third-{t}"}
    with schema_context("alpha"):
        assert Recipient.objects.get(external_id=f"new-{t}").email == f"new.{t}@example.com"
    removed = alpha.post(
        f"/console/topics/club-{t}/subscribers/remove/",
        {"external_id": [f"old-{t}", f"third-{t}"]},
        follow=True,
    )
    assert "2 subscribers removed" in removed.content.decode()
    assert subscribers(f"club-{t}") == {f"new-{t}"}


def test_a_bad_subscriber_line_is_named(alpha: Client) -> None:
    t = tag()
    topic_with(f"bad-{t}")
    response = alpha.post(
        f"/console/topics/bad-{t}/subscribers/add/", {"recipients": f"ok-{t}\nx-{t} not-an-email"}
    )
    assert response.status_code == 400
    assert "line 2, email: Enter a valid email address." in response.content.decode()
    assert subscribers(f"bad-{t}") == set()


def test_a_viewer_sees_topics_but_cannot_change_them(personas: Personas) -> None:
    t = tag()
    topic_with(f"ro-{t}", f"x-{t}")
    viewer = user_with_role("alpha", personas.alpha.domain, "viewer")
    page = viewer.get(f"/console/topics/ro-{t}/").content.decode()
    assert f'data-external-id="x-{t}"' in page
    assert 'id="add-form"' not in page
    assert (
        viewer.post(f"/console/topics/ro-{t}/subscribers/add/", {"recipients": f"y-{t}"}).status_code == 403
    )
    assert (
        viewer.post(f"/console/topics/ro-{t}/subscribers/remove/", {"external_id": f"x-{t}"}).status_code
        == 403
    )
    assert viewer.post("/console/topics/", {"key": f"new-{t}"}).status_code == 403
    assert subscribers(f"ro-{t}") == {f"x-{t}"}


def test_another_tenants_recipients_and_topics_are_not_found(personas: Personas) -> None:
    t = tag()
    topic_with(f"mine-{t}", f"m-{t}")
    with schema_context("alpha"):
        recipient = Recipient.objects.get(external_id=f"m-{t}")
    beta = signed_in(personas.beta.domain, "owner@beta.test")
    assert beta.get(f"/console/recipients/{recipient.id}/").status_code == 404
    assert beta.get(f"/console/topics/mine-{t}/").status_code == 404
    assert beta.post(f"/console/topics/mine-{t}/subscribers/add/", {"recipients": "z"}).status_code == 404
    searched = beta.get(f"/console/recipients/?q=m-{t}").content.decode()
    assert str(recipient.id) not in searched


def test_empty_topics_and_recipients_tell_a_newcomer_what_they_are(personas: Personas) -> None:
    with schema_context("beta"):
        Topic.objects.all().delete()  # rolled back after the test
    beta = signed_in(personas.beta.domain, "owner@beta.test")
    assert "No topics yet" in beta.get("/console/topics/").content.decode()
    assert "Create topic" in beta.get("/console/topics/").content.decode()
