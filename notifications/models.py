"""Tenant-schema models: who receives, what was asked, and what happened to each delivery."""

import uuid

from django.db import models
from django.utils import timezone


class Channel(models.TextChoices):
    EMAIL = "email"
    SMS = "sms"
    PUSH = "push"
    IN_APP = "in_app"


class Priority(models.TextChoices):
    CRITICAL = "critical"
    HIGH = "high"
    NORMAL = "normal"
    BULK = "bulk"


class DeliveryStatus(models.TextChoices):
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    DELIVERED = "delivered"
    FAILED = "failed"
    BOUNCED = "bounced"
    SUPPRESSED = "suppressed"


FINAL_STATUSES = frozenset(
    {
        DeliveryStatus.SENT,
        DeliveryStatus.DELIVERED,
        DeliveryStatus.FAILED,
        DeliveryStatus.BOUNCED,
        DeliveryStatus.SUPPRESSED,
    }
)
FAILED_STATUSES = frozenset({DeliveryStatus.FAILED, DeliveryStatus.BOUNCED})


class Recipient(models.Model):
    """An end user of the tenant, known by the tenant's own id for them."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    external_id = models.CharField(max_length=255, unique=True)
    email = models.EmailField(blank=True)
    phone = models.CharField(max_length=32, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return self.external_id


class Notification(models.Model):
    """One message a tenant asked Herald to send, on one or more channels."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    recipient = models.ForeignKey(Recipient, on_delete=models.PROTECT, related_name="notifications")
    category = models.CharField(max_length=64, default="general")
    priority = models.CharField(max_length=16, choices=Priority.choices, default=Priority.NORMAL)
    channels = models.JSONField(default=list)
    subject = models.TextField(blank=True)
    body = models.TextField()
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    def __str__(self) -> str:
        return str(self.id)

    @staticmethod
    def summarize(statuses: list[str]) -> str:
        """One status for the whole notification from its deliveries' statuses."""
        if not statuses:
            return DeliveryStatus.QUEUED
        if DeliveryStatus.SENDING in statuses:
            return DeliveryStatus.SENDING
        if DeliveryStatus.QUEUED in statuses:
            return DeliveryStatus.QUEUED
        failed = sum(s in FAILED_STATUSES for s in statuses)
        if failed == len(statuses):
            return DeliveryStatus.FAILED
        if failed:
            return "partially_failed"
        if all(s == DeliveryStatus.DELIVERED for s in statuses):
            return DeliveryStatus.DELIVERED
        return DeliveryStatus.SENT


class Delivery(models.Model):
    """A notification on one channel to one address; moves through DeliveryStatus."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    notification = models.ForeignKey(Notification, on_delete=models.CASCADE, related_name="deliveries")
    channel = models.CharField(max_length=16, choices=Channel.choices)
    address = models.CharField(max_length=512)
    status = models.CharField(max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.QUEUED)
    attempts = models.PositiveIntegerField(default=0)
    provider = models.CharField(max_length=64, blank=True)
    provider_message_id = models.CharField(max_length=255, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["status", "updated_at"], name="delivery_status_updated")]

    def __str__(self) -> str:
        return f"{self.channel}:{self.id}"


class DeliveryEvent(models.Model):
    """One state change of a delivery, in order; the delivery's timeline."""

    id = models.BigAutoField(primary_key=True)
    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="events")
    status = models.CharField(max_length=16, choices=DeliveryStatus.choices)
    detail = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.delivery_id} {self.status}"
