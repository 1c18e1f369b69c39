"""A tenant's webhook endpoints, the outbox of messages to them, and every attempt to send one."""

import secrets
import uuid
from datetime import datetime, timedelta

from django.db import models
from django.db.models import Q
from django.utils import timezone

from notifications.models import DeliveryStatus
from tenants.crypto import decrypt_json, encrypt_json

SECRET_PREFIX = "hwsec_"  # noqa: S105 (a prefix that makes a leaked secret recognisable)


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def all_statuses() -> list[str]:
    return list(DeliveryStatus.values)


class Endpoint(models.Model):
    """A URL of the tenant's backend that receives delivery state changes, signed with its secret.

    The secret is stored encrypted (tenants.crypto) and shown once, when it is made. After a
    rotation the previous secret keeps signing, as a second `v1`, until `previous_secret_expires_at`,
    so a backend can switch keys without missing a message.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    url = models.URLField(max_length=2048)
    description = models.CharField(max_length=200, blank=True)
    # The delivery statuses that are sent (every one by default).
    statuses = models.JSONField(default=all_statuses)
    is_active = models.BooleanField(default=True)
    # Why Herald turned it off (it answered 410 Gone), shown in the console.
    disabled_reason = models.CharField(max_length=300, blank=True)
    secret_encrypted = models.TextField()
    previous_secret_encrypted = models.TextField(blank=True)
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at"]

    def __str__(self) -> str:
        return self.url

    @property
    def secret(self) -> str:
        return str(decrypt_json(self.secret_encrypted).get("secret", ""))

    def set_secret(self, secret: str) -> None:
        self.secret_encrypted = encrypt_json({"secret": secret})

    def signing_secrets(self, now: datetime | None = None) -> list[str]:
        """The secrets that sign a message now: the current one, then the previous one in its grace."""
        keys = [self.secret]
        now = now or timezone.now()
        if (
            self.previous_secret_encrypted
            and self.previous_secret_expires_at is not None
            and self.previous_secret_expires_at > now
        ):
            keys.append(str(decrypt_json(self.previous_secret_encrypted).get("secret", "")))
        return [k for k in keys if k]

    def rotate_secret(self, grace_seconds: int) -> str:
        """A new secret (returned, to be shown once); the old one still signs for `grace_seconds`."""
        now = timezone.now()
        if grace_seconds > 0:
            self.previous_secret_encrypted = self.secret_encrypted
            self.previous_secret_expires_at = now + timedelta(seconds=grace_seconds)
        else:
            self.previous_secret_encrypted = ""
            self.previous_secret_expires_at = None
        secret = new_secret()
        self.set_secret(secret)
        self.updated_at = now
        return secret


class MessageStatus(models.TextChoices):
    PENDING = "pending"  # to be sent, at next_attempt_at
    DELIVERED = "delivered"  # the endpoint answered 2xx
    FAILED = "failed"  # out of tries, or the endpoint is gone or disabled


class WebhookMessage(models.Model):
    """One event for one endpoint (the outbox row). Its body is fixed when it is written, so every
    try sends the same bytes; only the signature's timestamp changes."""

    id = models.BigAutoField(primary_key=True)
    endpoint = models.ForeignKey(Endpoint, on_delete=models.CASCADE, related_name="messages")
    event_id = models.CharField(max_length=64)
    event_type = models.CharField(max_length=64)
    body = models.TextField()
    status = models.CharField(max_length=16, choices=MessageStatus.choices, default=MessageStatus.PENDING)
    # Tries in all (the Herald-Delivery-Attempt header), and how many there were when the current
    # round of retries began (a resend from the console starts a new round).
    attempts = models.PositiveIntegerField(default=0)
    round_base = models.PositiveIntegerField(default=0)
    # When it is due; while a task holds it, the end of that task's lease.
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            # The same event is written once per endpoint, however often it is reported.
            models.UniqueConstraint(fields=["endpoint", "event_id"], name="one_webhook_per_endpoint_event")
        ]
        indexes = [
            models.Index(
                fields=["next_attempt_at"], condition=Q(status="pending"), name="webhook_message_due"
            ),
            models.Index(fields=["created_at"], name="webhook_message_created"),
        ]

    def __str__(self) -> str:
        return f"{self.event_id} -> {self.endpoint_id} ({self.status})"


class WebhookAttempt(models.Model):
    """One try of one message: when, how long, what the endpoint answered, what went wrong."""

    id = models.BigAutoField(primary_key=True)
    message = models.ForeignKey(WebhookMessage, on_delete=models.CASCADE, related_name="attempt_log")
    number = models.PositiveIntegerField()
    started_at = models.DateTimeField(default=timezone.now)
    duration_ms = models.PositiveIntegerField(default=0)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    succeeded = models.BooleanField(default=False)
    response_excerpt = models.TextField(blank=True)
    error = models.TextField(blank=True)
    # When the next try is due (empty after a success or the last try).
    next_retry_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.message_id} #{self.number} {self.status_code or self.error[:40]}"
