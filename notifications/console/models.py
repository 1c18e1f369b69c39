"""The console's own rows, in each tenant's schema: invitations to join the tenant's team."""

import hashlib
import secrets
from datetime import timedelta

from django.conf import settings
from django.db import models
from django.utils import timezone

from .roles import ROLE_LABELS, ROLES

INVITE_LIFETIME = timedelta(days=7)


class InviteQuerySet(models.QuerySet["Invite"]):
    def pending(self) -> "InviteQuerySet":
        return self.filter(accepted_at__isnull=True, expires_at__gt=timezone.now())


class Invite(models.Model):
    """An invitation by email to join the team with a role.

    The link's token is shown once, in the email; only its SHA-256 is kept (256 bits of entropy,
    so no stretching is needed), so a copy of the database cannot be used to join. One open
    invite per email: inviting the same address again replaces it.
    """

    email = models.EmailField()
    role = models.CharField(max_length=16, choices=[(r, ROLE_LABELS[r]) for r in ROLES])
    token_hash = models.CharField(max_length=64, unique=True)
    invited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)

    objects = InviteQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["email"],
                condition=models.Q(accepted_at__isnull=True),
                name="one_open_invite_per_email",
            )
        ]

    def __str__(self) -> str:
        return f"{self.email} as {self.role}"

    @staticmethod
    def hash_token(token: str) -> str:
        return hashlib.sha256(token.encode()).hexdigest()

    @classmethod
    def issue(cls, email: str, role: str, invited_by: object) -> tuple["Invite", str]:
        """Replace any open invite for this email; the raw token is returned once, never stored."""
        token = secrets.token_urlsafe(32)
        cls.objects.filter(email=email, accepted_at__isnull=True).delete()
        invite = cls.objects.create(
            email=email,
            role=role,
            token_hash=cls.hash_token(token),
            invited_by=invited_by,
            expires_at=timezone.now() + INVITE_LIFETIME,
        )
        return invite, token

    @property
    def is_expired(self) -> bool:
        return self.expires_at <= timezone.now()
