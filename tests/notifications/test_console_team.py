"""The console's team page: members and roles, invitations by email, the friendly 403."""

import html
import re
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone
from django_tenants.utils import schema_context

from notifications.console.models import Invite
from notifications.console.roles import role_of
from tests.conftest import Personas
from tests.fakes.smtp_server import FakeSmtpServer

from .console_helpers import member, owner, signed_in

pytestmark = pytest.mark.django_db

LINK = re.compile(r"http://(?P<host>[a-z.]+):8000(?P<path>/console/invite/[A-Za-z0-9_-]+/)")


@pytest.fixture
def mail(settings: Any, smtp_server: FakeSmtpServer) -> FakeSmtpServer:
    """The web process's own mail (Django's SMTP backend) goes to the tests' SMTP server."""
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = smtp_server.port
    settings.EMAIL_HOST_USER = ""
    settings.EMAIL_HOST_PASSWORD = ""
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    return smtp_server


def invite(client: Client, email: str, role: str) -> Any:
    return client.post("/console/team/invite/", {"email": email, "role": role})


def link_in_mail(mail: FakeSmtpServer, email: str) -> re.Match[str]:
    messages = mail.messages_to(email)
    assert messages, f"no mail to {email}"
    body = messages[-1].get_body(preferencelist=("plain",))
    assert body is not None
    found = LINK.search(body.get_content())
    assert found, body.get_content()
    return found


def role_in(schema: str, email: str) -> str | None:
    with schema_context(schema):
        user = get_user_model().objects.get(email=email)
        return role_of(user)


def test_an_owner_invites_by_email_and_the_invitee_joins_with_that_role(
    personas: Personas, mail: FakeSmtpServer
) -> None:
    response = invite(owner(personas.alpha.domain), "dana@example.com", "admin")
    assert response.status_code == 302
    link = link_in_mail(mail, "dana@example.com")
    assert link["host"] == personas.alpha.domain
    message = mail.messages_to("dana@example.com")[-1]
    assert "alpha" in message["Subject"]
    with schema_context("alpha"):
        stored = Invite.objects.get(email="dana@example.com")
        assert link["path"].split("/")[-2] not in stored.token_hash  # only a hash is kept
        assert stored.expires_at - timezone.now() > timedelta(days=6, hours=23)
        assert stored.invited_by is not None
        assert stored.invited_by.email == "owner@alpha.test"

    invitee = Client(HTTP_HOST=personas.alpha.domain)
    page = invitee.get(link["path"])
    assert page.status_code == 200
    assert "dana@example.com" in page.content.decode()
    assert "Admin" in page.content.decode()
    joined = invitee.post(link["path"], {"password1": "kettle-harbour-93", "password2": "kettle-harbour-93"})
    assert joined.status_code == 302
    assert invitee.get("/console/team/").status_code == 200  # signed in at once
    assert role_in("alpha", "dana@example.com") == "admin"
    signed_in(personas.alpha.domain, "dana@example.com", "kettle-harbour-93")  # and can sign in again


def test_an_invite_link_works_once(personas: Personas, mail: FakeSmtpServer) -> None:
    invite(owner(personas.alpha.domain), "once@example.com", "viewer")
    path = link_in_mail(mail, "once@example.com")["path"]
    first = Client(HTTP_HOST=personas.alpha.domain)
    first.post(path, {"password1": "kettle-harbour-93", "password2": "kettle-harbour-93"})
    again = Client(HTTP_HOST=personas.alpha.domain).get(path)
    assert again.status_code == 410
    assert "already used" in again.content.decode()


def test_an_expired_invite_link_says_so_and_who_to_ask(personas: Personas, mail: FakeSmtpServer) -> None:
    invite(owner(personas.alpha.domain), "late@example.com", "viewer")
    path = link_in_mail(mail, "late@example.com")["path"]
    with schema_context("alpha"):
        Invite.objects.filter(email="late@example.com").update(
            expires_at=timezone.now() - timedelta(minutes=1)
        )
    client = Client(HTTP_HOST=personas.alpha.domain)
    for response in (
        client.get(path),
        client.post(path, {"password1": "kettle-harbour-93", "password2": "kettle-harbour-93"}),
    ):
        assert response.status_code == 410
        assert "expired" in response.content.decode()
        assert "owner@alpha.test" in response.content.decode()
    with schema_context("alpha"):
        assert not get_user_model().objects.filter(email="late@example.com").exists()


def test_a_revoked_invite_link_is_not_valid(personas: Personas, mail: FakeSmtpServer) -> None:
    client = owner(personas.alpha.domain)
    invite(client, "gone@example.com", "viewer")
    path = link_in_mail(mail, "gone@example.com")["path"]
    with schema_context("alpha"):
        pk = Invite.objects.get(email="gone@example.com").pk
    assert client.post(f"/console/team/invites/{pk}/revoke/").status_code == 302
    response = Client(HTTP_HOST=personas.alpha.domain).get(path)
    assert response.status_code == 404
    assert "not valid" in response.content.decode()


def test_inviting_the_same_email_again_replaces_the_earlier_link(
    personas: Personas, mail: FakeSmtpServer
) -> None:
    client = owner(personas.alpha.domain)
    invite(client, "twice@example.com", "viewer")
    old = link_in_mail(mail, "twice@example.com")["path"]
    invite(client, "twice@example.com", "admin")
    new = link_in_mail(mail, "twice@example.com")["path"]
    assert old != new
    assert Client(HTTP_HOST=personas.alpha.domain).get(old).status_code == 404
    with schema_context("alpha"):
        assert list(Invite.objects.filter(email="twice@example.com").values_list("role", flat=True)) == [
            "admin"
        ]
    invitee = Client(HTTP_HOST=personas.alpha.domain)
    invitee.post(new, {"password1": "kettle-harbour-93", "password2": "kettle-harbour-93"})
    assert role_in("alpha", "twice@example.com") == "admin"


def test_an_invite_link_works_only_on_its_own_tenants_domain(
    personas: Personas, mail: FakeSmtpServer
) -> None:
    invite(owner(personas.alpha.domain), "cross@example.com", "owner")
    path = link_in_mail(mail, "cross@example.com")["path"]
    elsewhere = Client(HTTP_HOST=personas.beta.domain)
    assert elsewhere.get(path).status_code == 404
    response = elsewhere.post(path, {"password1": "kettle-harbour-93", "password2": "kettle-harbour-93"})
    assert response.status_code == 404
    with schema_context("beta"):
        assert not get_user_model().objects.filter(email="cross@example.com").exists()
    assert Client(HTTP_HOST="localhost").get(path).status_code == 404  # nor on the API host


def test_a_weak_or_mistyped_password_is_refused_with_the_reason(
    personas: Personas, mail: FakeSmtpServer
) -> None:
    invite(owner(personas.alpha.domain), "weak@example.com", "viewer")
    path = link_in_mail(mail, "weak@example.com")["path"]
    client = Client(HTTP_HOST=personas.alpha.domain)
    weak = client.post(path, {"password1": "password", "password2": "password"})
    assert weak.status_code == 400
    assert "too common" in weak.content.decode() or "too short" in weak.content.decode()
    mistyped = client.post(path, {"password1": "kettle-harbour-93", "password2": "kettle-harbour-39"})
    assert mistyped.status_code == 400
    assert "differ" in mistyped.content.decode()
    with schema_context("alpha"):
        assert not get_user_model().objects.filter(email="weak@example.com").exists()


def test_an_invitation_email_that_cannot_be_sent_is_reported_and_not_kept(
    personas: Personas, mail: FakeSmtpServer
) -> None:
    mail.fail("nobody@example.com", 550)
    response = invite(owner(personas.alpha.domain), "nobody@example.com", "viewer")
    assert response.status_code == 502
    assert "could not be sent" in response.content.decode()
    with schema_context("alpha"):
        assert not Invite.objects.filter(email="nobody@example.com").exists()


def test_inviting_a_member_again_names_the_problem(personas: Personas) -> None:
    response = invite(owner(personas.alpha.domain), "owner@alpha.test", "viewer")
    assert response.status_code == 400
    assert "already a member" in response.content.decode()


def test_a_viewer_sees_the_team_but_not_the_invite_controls(personas: Personas) -> None:
    member("alpha", "vera@alpha.test", "viewer")
    client = signed_in(personas.alpha.domain, "vera@alpha.test")
    page = client.get("/console/team/")
    assert page.status_code == 200
    text = page.content.decode()
    assert "owner@alpha.test" in text
    assert "vera@alpha.test" in text
    assert "Invite someone" not in text
    assert "/console/team/invite/" not in text
    assert 'name="role"' not in text


@pytest.mark.parametrize("role", ["viewer", "admin"])
def test_only_an_owner_manages_the_team_and_the_403_page_says_who_to_ask(
    personas: Personas, role: str
) -> None:
    user = member("alpha", f"{role}1@alpha.test", role)
    other = member("alpha", f"{role}2@alpha.test", "viewer")
    client = signed_in(personas.alpha.domain, user.email)
    for path, data in [
        ("/console/team/invite/", {"email": "x@example.com", "role": "owner"}),
        (f"/console/team/members/{other.pk}/role/", {"role": "owner"}),
        (f"/console/team/members/{other.pk}/remove/", {}),
    ]:
        response = client.post(path, data)
        assert response.status_code == 403, path
        text = response.content.decode()
        assert "needs the <strong>Owner</strong> role" in text
        assert "owner@alpha.test" in text
    assert role_in("alpha", other.email) == "viewer"
    with schema_context("alpha"):
        assert not Invite.objects.filter(email="x@example.com").exists()


def test_an_owner_changes_a_role_and_removes_a_member_who_is_signed_out_at_once(personas: Personas) -> None:
    user = member("alpha", "sam@alpha.test", "viewer")
    sams_session = signed_in(personas.alpha.domain, "sam@alpha.test")
    client = owner(personas.alpha.domain)
    assert client.post(f"/console/team/members/{user.pk}/role/", {"role": "admin"}).status_code == 302
    assert role_in("alpha", "sam@alpha.test") == "admin"
    assert "is now Admin" in client.get("/console/team/").content.decode()
    assert client.post(f"/console/team/members/{user.pk}/remove/").status_code == 302
    with schema_context("alpha"):
        assert not get_user_model().objects.filter(pk=user.pk).exists()
    assert sams_session.get("/console/team/").status_code == 302  # to the sign-in page


def test_the_last_owner_can_neither_step_down_nor_be_removed(personas: Personas) -> None:
    client = owner(personas.alpha.domain)
    with schema_context("alpha"):
        me = get_user_model().objects.get(email="owner@alpha.test")
    client.post(f"/console/team/members/{me.pk}/role/", {"role": "admin"})
    assert role_in("alpha", "owner@alpha.test") == "owner"
    assert "last owner" in client.get("/console/team/").content.decode()
    client.post(f"/console/team/members/{me.pk}/remove/")
    assert "can't remove yourself" in html.unescape(client.get("/console/team/").content.decode())
    with schema_context("alpha"):
        assert get_user_model().objects.filter(pk=me.pk).exists()


def test_with_a_second_owner_the_first_may_step_down(personas: Personas) -> None:
    second = member("alpha", "olga@alpha.test", "owner")
    client = owner(personas.alpha.domain)
    with schema_context("alpha"):
        me = get_user_model().objects.get(email="owner@alpha.test")
    assert client.post(f"/console/team/members/{me.pk}/role/", {"role": "admin"}).status_code == 302
    assert role_in("alpha", "owner@alpha.test") == "admin"
    # Now olga is the last owner: nobody can take that away from her.
    olga = signed_in(personas.alpha.domain, second.email)
    olga.post(f"/console/team/members/{second.pk}/role/", {"role": "viewer"})
    assert role_in("alpha", second.email) == "owner"


def test_team_actions_reject_get_and_need_csrf(personas: Personas) -> None:
    user = member("alpha", "csrf@alpha.test", "viewer")
    client = owner(personas.alpha.domain)
    for path in (
        "/console/team/invite/",
        f"/console/team/members/{user.pk}/role/",
        f"/console/team/members/{user.pk}/remove/",
        "/console/team/invites/1/revoke/",
    ):
        assert client.get(path).status_code == 405, path
    strict = Client(HTTP_HOST=personas.alpha.domain, enforce_csrf_checks=True)
    strict.login(username="owner@alpha.test", password="pw")
    assert strict.post(f"/console/team/members/{user.pk}/remove/").status_code == 403
    with schema_context("alpha"):
        assert get_user_model().objects.filter(pk=user.pk).exists()


def test_another_tenants_member_is_not_found(personas: Personas) -> None:
    alpha_user = member("alpha", "far@alpha.test", "viewer")
    with schema_context("beta"):
        assert not get_user_model().objects.filter(pk=alpha_user.pk).exists()
    beta = owner(personas.beta.domain)
    assert beta.post(f"/console/team/members/{alpha_user.pk}/remove/").status_code == 404
    assert beta.post(f"/console/team/members/{alpha_user.pk}/role/", {"role": "owner"}).status_code == 404
    assert "far@alpha.test" not in beta.get("/console/team/").content.decode()


def test_a_member_with_no_role_gets_the_friendly_403(personas: Personas) -> None:
    member("alpha", "norole@alpha.test", None)
    response = signed_in(personas.alpha.domain, "norole@alpha.test").get("/console/team/")
    assert response.status_code == 403
    text = response.content.decode()
    assert "needs the <strong>Viewer</strong> role" in text
    assert "no role in" in text
    assert "owner@alpha.test" in text


def test_a_lone_owner_is_told_how_to_invite_colleagues(personas: Personas) -> None:
    text = owner(personas.beta.domain).get("/console/team/").content.decode()
    assert "just you so far" in text
    assert "Invite someone" in text
    assert "No pending invitations" in text


def test_an_invite_for_someone_who_joined_meanwhile_says_so(personas: Personas, mail: FakeSmtpServer) -> None:
    invite(owner(personas.alpha.domain), "meanwhile@example.com", "admin")
    path = link_in_mail(mail, "meanwhile@example.com")["path"]
    member("alpha", "meanwhile@example.com", "viewer")
    response = Client(HTTP_HOST=personas.alpha.domain).post(
        path, {"password1": "kettle-harbour-93", "password2": "kettle-harbour-93"}
    )
    assert response.status_code == 409
    assert "already a member" in response.content.decode()
    assert role_in("alpha", "meanwhile@example.com") == "viewer"
