"""The team page: who can use the console and with which role; owners invite, re-role and remove.

Invitations go by email with a link to /console/invite/<token>/ on the tenant's own domain,
where the invitee chooses a password and lands signed in with the role. The token is looked up
in the tenant's schema, so a link of one tenant is unknown on another's domain. The tenant
always keeps at least one owner.
"""

import logging
import smtplib
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import get_user_model, login
from django.contrib.auth.password_validation import password_validators_help_texts, validate_password
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.http import HttpRequest, HttpResponse, HttpResponseBase, HttpResponseRedirect
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from ..links import tenant_url
from .models import Invite
from .roles import OWNER, ROLE_LABELS, ROLES, VIEWER, can, console_view, set_role, tenant_host_only

log = logging.getLogger(__name__)

ROLE_CHOICES = [(r, ROLE_LABELS[r]) for r in ROLES]


def _users() -> Any:
    return get_user_model().objects


def role_from_groups(user: Any) -> str | None:
    """A member's role from prefetched groups (role_of would query once per member)."""
    if user.is_superuser:
        return OWNER
    names = {g.name for g in user.groups.all()}
    return next((r for r in reversed(ROLES) if r in names), None)


def owner_count() -> int:
    count: int = (
        _users().filter(Q(is_superuser=True) | Q(groups__name=OWNER), is_active=True).distinct().count()
    )
    return count


class InviteForm(forms.Form):
    email = forms.EmailField(max_length=254)
    role = forms.ChoiceField(choices=ROLE_CHOICES, initial=VIEWER)

    def clean_email(self) -> str:
        email: str = self.cleaned_data["email"].strip().lower()
        if _users().filter(Q(email__iexact=email) | Q(username__iexact=email)).exists():
            raise ValidationError(f"{email} is already a member; change their role in the list above.")
        return email


class RoleForm(forms.Form):
    role = forms.ChoiceField(choices=ROLE_CHOICES)


def _page(request: HttpRequest, invite_form: InviteForm | None = None, status: int = 200) -> HttpResponse:
    members = list(_users().order_by("email").prefetch_related("groups"))
    rows = [(m, role_from_groups(m)) for m in members]
    is_owner = can(request, OWNER)
    context = {
        "rows": rows,
        "roles": ROLE_CHOICES,
        "is_owner": is_owner,
        "invites": list(Invite.objects.pending().select_related("invited_by").order_by("-created_at"))
        if is_owner
        else [],
        "invite_form": invite_form or InviteForm(),
        "me": request.user.pk,
    }
    return render(request, "console/team/team.html", context, status=status)


@console_view(VIEWER)
def team(request: HttpRequest) -> HttpResponse:
    return _page(request)


@require_POST
@console_view(OWNER)
def invite(request: HttpRequest) -> HttpResponse:
    form = InviteForm(request.POST)
    if not form.is_valid():
        return _page(request, form, status=400)
    email, role = form.cleaned_data["email"], form.cleaned_data["role"]
    try:
        # Nothing is kept if the mail fails: an invite nobody received would only confuse the next try.
        with transaction.atomic():
            invitation, token = Invite.issue(email, role, invited_by=request.user)
            _send_invite_email(request, invitation, token)
    except (OSError, smtplib.SMTPException) as exc:
        log.warning("console: invitation email to %s not sent: %s", email, exc.__class__.__name__)
        form.add_error("email", f"The invitation email to {email} could not be sent ({exc}); try again.")
        return _page(request, form, status=502)
    messages.success(request, f"Invitation sent to {email} as {ROLE_LABELS[role]}; it expires in 7 days.")
    return redirect("console:team")


def _send_invite_email(request: HttpRequest, invitation: Invite, token: str) -> None:
    tenant = request.tenant  # type: ignore[attr-defined]
    link = tenant_url(reverse("console:invite", args=[token]))
    inviter = getattr(request.user, "email", "") or "An owner"
    body = (
        f"{inviter} invited you to the {tenant.name} team on Herald as {ROLE_LABELS[invitation.role]}.\n\n"
        f"Choose your password and sign in here:\n{link}\n\n"
        f"The link works once and expires on {invitation.expires_at:%Y-%m-%d %H:%M} UTC.\n"
        "If you didn't expect this, ignore this email.\n"
    )
    send_mail(
        f"Join {tenant.name} on Herald",
        body,
        settings.DEFAULT_FROM_EMAIL,
        [invitation.email],
        fail_silently=False,
    )


@require_POST
@console_view(OWNER)
def revoke_invite(request: HttpRequest, pk: int) -> HttpResponse:
    invitation = get_object_or_404(Invite, pk=pk, accepted_at__isnull=True)
    invitation.delete()
    messages.success(request, f"The invitation to {invitation.email} is revoked; its link no longer works.")
    return redirect("console:team")


@require_POST
@console_view(OWNER)
def change_role(request: HttpRequest, pk: int) -> HttpResponse:
    member = get_object_or_404(_users().prefetch_related("groups"), pk=pk)
    form = RoleForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose a role: viewer, admin or owner.")
        return redirect("console:team")
    role = form.cleaned_data["role"]
    with transaction.atomic():
        # Serialise role changes so two owners demoting each other can't leave none.
        list(_users().select_for_update(of=("self",)).filter(Q(is_superuser=True) | Q(groups__name=OWNER)))
        if role != OWNER and role_from_groups(member) == OWNER and owner_count() <= 1:
            messages.error(
                request,
                f"{member.email} is the last owner: make someone else an owner first.",
            )
            return redirect("console:team")
        if member.is_superuser:  # a superuser is always an owner; the groups decide from now on
            member.is_superuser = False
            member.save(update_fields=["is_superuser"])
        set_role(member, role)
    messages.success(request, f"{member.email} is now {ROLE_LABELS[role]}.")
    return redirect("console:team")


@require_POST
@console_view(OWNER)
def remove_member(request: HttpRequest, pk: int) -> HttpResponse:
    member = get_object_or_404(_users().prefetch_related("groups"), pk=pk)
    if member.pk == request.user.pk:
        messages.error(request, "You can't remove yourself; another owner can.")
        return redirect("console:team")
    with transaction.atomic():
        list(_users().select_for_update(of=("self",)).filter(Q(is_superuser=True) | Q(groups__name=OWNER)))
        if role_from_groups(member) == OWNER and owner_count() <= 1:
            messages.error(request, f"{member.email} is the last owner and can't be removed.")
            return redirect("console:team")
        email = member.email
        member.delete()  # their sessions name a user that no longer exists: signed out at once
    messages.success(request, f"{email} is removed from the team.")
    return redirect("console:team")


class AcceptForm(forms.Form):
    password1 = forms.CharField(label="Password", strip=False, widget=forms.PasswordInput)
    password2 = forms.CharField(label="Password again", strip=False, widget=forms.PasswordInput)

    def __init__(self, *args: Any, user: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.user = user

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        p1, p2 = data.get("password1"), data.get("password2")
        if p1 and p2 and p1 != p2:
            self.add_error("password2", "The two passwords differ.")
        elif p1:
            try:
                validate_password(p1, self.user)
            except ValidationError as exc:
                self.add_error("password1", exc)
        return data


def _invite_problem(request: HttpRequest, title: str, text: str, status: int) -> HttpResponse:
    return render(request, "console/team/invite_problem.html", {"title": title, "text": text}, status=status)


@tenant_host_only
def accept_invite(request: HttpRequest, token: str) -> HttpResponseBase:
    invitation = (
        Invite.objects.select_related("invited_by").filter(token_hash=Invite.hash_token(token)).first()
    )
    tenant_name = request.tenant.name  # type: ignore[attr-defined]
    if invitation is None:
        return _invite_problem(
            request,
            "This invitation link is not valid",
            f"It may have been revoked, or replaced by a newer invitation. Ask an owner of {tenant_name} "
            "to invite you again.",
            404,
        )
    if invitation.accepted_at is not None:
        return _invite_problem(
            request,
            "This invitation was already used",
            f"The account for {invitation.email} exists: sign in with its email and password.",
            410,
        )
    if invitation.is_expired:
        inviter = invitation.invited_by.email if invitation.invited_by else f"an owner of {tenant_name}"
        return _invite_problem(
            request,
            "This invitation has expired",
            f"It expired on {invitation.expires_at:%Y-%m-%d %H:%M} UTC. Ask {inviter} for a new one.",
            410,
        )
    if _users().filter(Q(email__iexact=invitation.email) | Q(username__iexact=invitation.email)).exists():
        return _invite_problem(
            request,
            "You are already a member",
            f"{invitation.email} already has an account of {tenant_name}: sign in with it.",
            409,
        )
    user = get_user_model()(username=invitation.email, email=invitation.email)
    form = AcceptForm(request.POST or None, user=user)
    if request.method == "POST" and form.is_valid():
        try:
            with transaction.atomic():
                locked = Invite.objects.select_for_update().get(pk=invitation.pk)
                if locked.accepted_at is not None:
                    return _invite_problem(
                        request, "This invitation was already used", "Sign in instead.", 410
                    )
                user.set_password(form.cleaned_data["password1"])
                user.save()
                set_role(user, locked.role)
                locked.accepted_at = timezone.now()
                locked.save(update_fields=["accepted_at"])
        except IntegrityError:  # the same email joined in the meantime (another request)
            return _invite_problem(
                request, "You are already a member", f"Sign in to {tenant_name} with {invitation.email}.", 409
            )
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        messages.success(request, f"Welcome to {tenant_name}: you are {ROLE_LABELS[locked.role]}.")
        return HttpResponseRedirect(reverse("console:dashboard"))
    context = {
        "invitation": invitation,
        "role": ROLE_LABELS[invitation.role],
        "form": form,
        "help_texts": password_validators_help_texts(),
    }
    return render(request, "console/team/accept.html", context, status=400 if form.errors else 200)
