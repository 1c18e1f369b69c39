"""Tenant-schema models: who receives, what was asked, and what happened to each delivery."""

from typing import Any

from django.db import models
from django.utils import timezone

from .ids import new_id


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
# Retry from the console: the one path out of `failed` (pipeline.retry). transition() keeps
# refusing failed -> queued for every other caller (a late provider report must never revive a
# failed delivery).
RETRY_FROM: frozenset[str] = frozenset({DeliveryStatus.FAILED})


class Recipient(models.Model):
    """An end user of the tenant, known by the tenant's own id for them."""

    id = models.UUIDField(primary_key=True, default=new_id, editable=False)
    external_id = models.CharField(max_length=255, unique=True)
    email = models.EmailField(blank=True)
    phone = models.CharField(max_length=32, blank=True, help_text="E.164, e.g. +14155550100")
    locale = models.CharField(max_length=16, blank=True, help_text="e.g. en, pt-BR")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return self.external_id


class Notification(models.Model):
    """One message a tenant asked Herald to send, on one or more channels."""

    id = models.UUIDField(primary_key=True, default=new_id, editable=False)
    recipient = models.ForeignKey(Recipient, on_delete=models.PROTECT, related_name="notifications")
    category = models.CharField(max_length=64, default="general")
    template_key = models.CharField(max_length=64, blank=True)
    locale = models.CharField(max_length=16, blank=True)
    priority = models.CharField(max_length=16, choices=Priority.choices, default=Priority.NORMAL)
    channels = models.JSONField(default=list)
    subject = models.TextField(blank=True)
    body = models.TextField()
    data = models.JSONField(default=dict, blank=True)
    broadcast = models.ForeignKey(
        "Broadcast", null=True, blank=True, on_delete=models.SET_NULL, related_name="notifications"
    )
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    # Set by pipeline.accept_many: the status to answer with, before any worker has run.
    initial_status: str = "queued"

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
        if all(s == DeliveryStatus.SUPPRESSED for s in statuses):
            return DeliveryStatus.SUPPRESSED
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

    id = models.UUIDField(primary_key=True, default=new_id, editable=False)
    notification = models.ForeignKey(Notification, on_delete=models.CASCADE, related_name="deliveries")
    channel = models.CharField(max_length=16, choices=Channel.choices)
    address = models.CharField(max_length=512)
    status = models.CharField(max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.QUEUED)
    attempts = models.PositiveIntegerField(default=0)
    provider = models.CharField(max_length=64, blank=True)
    provider_message_id = models.CharField(max_length=255, blank=True)
    last_error = models.TextField(blank=True)
    # Rendered once, when the notification is accepted, so every retry sends the same content.
    content = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    sent_at = models.DateTimeField(null=True, blank=True)
    # When a retry is due (set with the retry): the sweeper leaves it alone until then.
    next_attempt_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        # Partial indexes: a delivery's row is written three times (queued, sending, sent) and
        # every version of it gets an entry in every index whose columns or condition it meets.
        # The sweeper (queued/sending by age), the console's in-flight gauges and its recent
        # failures read the first; provider reports look deliveries up by the second. A sent
        # delivery, the common case, has no entry in the first, and only its sent version one in
        # the second.
        indexes = [
            models.Index(
                fields=["status", "updated_at"],
                name="delivery_unsettled_updated",
                condition=models.Q(status__in=["queued", "sending", "failed", "bounced"]),
            ),
            models.Index(
                fields=["provider_message_id"],
                name="delivery_provider_message",
                condition=~models.Q(provider_message_id=""),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.channel}:{self.id}"

    @property
    def retriable(self) -> bool:
        """Whether a retry from the console could send it: failed after reaching a provider, with
        its content still there (the rule pipeline.retry applies in its query)."""
        return self.status in RETRY_FROM and self.attempts > 0 and not self.content_gone

    @property
    def content_gone(self) -> bool:
        """Stored as a mark of its broadcast's content (compose.shared_mark), and that broadcast
        has been deleted since (its notification's link is cleared): nothing is left to send it
        with, so it cannot be retried."""
        from .compose import SHARED_KEY

        return SHARED_KEY in (self.content or {}) and self.notification.broadcast_id is None

    @property
    def rendered_content(self) -> dict[str, Any]:
        """What this delivery says, as sent: `content`, or for a broadcast delivery that stores
        only a mark (compose.shared_mark), its broadcast's content with its recipient's links.
        ({} if that broadcast has been deleted.)"""
        from .compose import SHARED_KEY, ComposeError, SharedContentGone, expand

        content: dict[str, Any] = self.content or {}
        if SHARED_KEY not in content:
            return content
        notification = self.notification
        try:
            return expand(
                content,
                channel=self.channel,
                broadcast_id=str(notification.broadcast_id) if notification.broadcast_id else None,
                recipient_id=str(notification.recipient_id),
                category=notification.category,
            )
        except (SharedContentGone, ComposeError):
            return {}


class DeliveryEvent(models.Model):
    """One state change of a delivery, in order; the delivery's timeline."""

    id = models.BigAutoField(primary_key=True)
    # No foreign key constraint in the database (db_constraint=False): events and attempts are
    # append-only logs written several times per delivery, always with ids the same statement
    # has just updated, and the constraint's check per row was a fifth of the send path's
    # database time. Deleting a delivery still deletes them (Django cascades).
    delivery = models.ForeignKey(
        Delivery, on_delete=models.CASCADE, related_name="events", db_constraint=False
    )
    status = models.CharField(max_length=16, choices=DeliveryStatus.choices)
    detail = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.delivery_id} {self.status}"


class AttemptOutcome(models.TextChoices):
    SENT = "sent"
    TRANSIENT_ERROR = "transient_error"
    PERMANENT_ERROR = "permanent_error"


class DeliveryAttempt(models.Model):
    """One try of one delivery with one provider: what it answered and how long it took."""

    id = models.BigAutoField(primary_key=True)
    delivery = models.ForeignKey(
        Delivery, on_delete=models.CASCADE, related_name="attempt_log", db_constraint=False
    )  # no database constraint, as DeliveryEvent.delivery
    number = models.PositiveIntegerField()
    provider = models.CharField(max_length=64)
    outcome = models.CharField(max_length=16, choices=AttemptOutcome.choices)
    response = models.TextField(blank=True)
    duration_ms = models.PositiveIntegerField(default=0)
    started_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.delivery_id} #{self.number} {self.outcome}"


class Category(models.Model):
    """What a notification is about (`newsletter`, `security`); preferences are per category.

    Created on first use. A required category (security, billing) is sent whatever the
    recipient's preferences say, and its email carries no unsubscribe link.
    """

    key = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=200, blank=True)
    required = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name_plural = "categories"

    def __str__(self) -> str:
        return self.key


class Preference(models.Model):
    """A recipient's choice for one category on one channel (absent: opted in)."""

    recipient = models.ForeignKey(Recipient, on_delete=models.CASCADE, related_name="preferences")
    category = models.ForeignKey(Category, on_delete=models.CASCADE, related_name="preferences")
    channel = models.CharField(max_length=16, choices=Channel.choices)
    enabled = models.BooleanField(default=True)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["recipient", "category", "channel"], name="one_preference_per_choice"
            )
        ]

    def __str__(self) -> str:
        return f"{self.recipient_id} {self.category_id}/{self.channel}={self.enabled}"


class Template(models.Model):
    """A tenant's named message, with one variant per channel and locale."""

    key = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=200, blank=True)
    category = models.CharField(max_length=64, blank=True, help_text="Default category of its notifications")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return self.key


class TemplateVariant(models.Model):
    """The text of a template for one channel and locale ("" is the fallback for every locale).

    email: subject, text, html; sms: text; push and in_app: subject (title), text (body), url.
    """

    template = models.ForeignKey(Template, on_delete=models.CASCADE, related_name="variants")
    channel = models.CharField(max_length=16, choices=Channel.choices)
    locale = models.CharField(max_length=16, blank=True)
    subject = models.TextField(blank=True)
    text = models.TextField(blank=True)
    html = models.TextField(blank=True)
    url = models.TextField(blank=True, help_text="push and in-app: where a click leads (may use variables)")

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["template", "channel", "locale"], name="one_variant_per_channel_locale"
            )
        ]

    def __str__(self) -> str:
        return f"{self.template_id}/{self.channel}/{self.locale or '*'}"


class ProviderRole(models.TextChoices):
    PRIMARY = "primary"
    SECONDARY = "secondary"


class ProviderConfig(models.Model):
    """A tenant's own provider account for a channel (its SMTP server, Twilio account, VAPID keys).

    `settings` holds what may be shown; `secrets_encrypted` holds credentials, encrypted with
    notifications.secrets (Fernet), never shown in clear after they are saved.
    """

    channel = models.CharField(max_length=16, choices=Channel.choices)
    role = models.CharField(max_length=16, choices=ProviderRole.choices, default=ProviderRole.PRIMARY)
    provider = models.CharField(max_length=32, help_text="A name from notifications.providers.registry")
    settings = models.JSONField(default=dict, blank=True)
    secrets_encrypted = models.TextField(blank=True)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["channel", "role"],
                condition=models.Q(is_active=True),
                name="one_active_provider_per_role",
            )
        ]

    def __str__(self) -> str:
        return f"{self.channel}/{self.role}: {self.provider}"


class PushSubscription(models.Model):
    """A browser's Web Push subscription for a recipient (removed when the push service says 404/410)."""

    id = models.UUIDField(primary_key=True, default=new_id, editable=False)
    recipient = models.ForeignKey(Recipient, on_delete=models.CASCADE, related_name="push_subscriptions")
    endpoint = models.TextField(unique=True)
    p256dh = models.CharField(max_length=255)
    auth = models.CharField(max_length=64)
    user_agent = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.recipient_id} {self.endpoint[:40]}"


class FeedStatus(models.TextChoices):
    UNREAD = "unread"
    READ = "read"
    ARCHIVED = "archived"


class InAppMessage(models.Model):
    """An item of a recipient's in-app feed."""

    id = models.UUIDField(primary_key=True, default=new_id, editable=False)
    recipient = models.ForeignKey(Recipient, on_delete=models.CASCADE, related_name="feed")
    delivery = models.OneToOneField(
        Delivery, on_delete=models.SET_NULL, null=True, blank=True, related_name="feed_item"
    )
    title = models.CharField(max_length=255, blank=True)
    body = models.TextField()
    url = models.URLField(max_length=2048, blank=True)
    data = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=FeedStatus.choices, default=FeedStatus.UNREAD)
    created_at = models.DateTimeField(default=timezone.now)
    read_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["recipient", "status", "-created_at"], name="feed_by_recipient_status")
        ]

    def __str__(self) -> str:
        return f"{self.recipient_id} {self.status} {self.title[:30]}"


class Topic(models.Model):
    """A named list of recipients a tenant broadcasts to (`product-updates`, `beta-testers`)."""

    key = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return self.key


class TopicSubscription(models.Model):
    topic = models.ForeignKey(Topic, on_delete=models.CASCADE, related_name="subscriptions")
    recipient = models.ForeignKey(Recipient, on_delete=models.CASCADE, related_name="topic_subscriptions")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["topic", "recipient"], name="one_subscription_per_topic")
        ]

    def __str__(self) -> str:
        return f"{self.topic_id}:{self.recipient_id}"


class BroadcastStatus(models.TextChoices):
    ACCEPTED = "accepted"  # written; fan-out not started
    FANNING_OUT = "fanning_out"
    FANNED_OUT = "fanned_out"  # every recipient has its notification and deliveries


class Broadcast(models.Model):
    """One message to many recipients (a topic or an inline list), fanned out in chunks by tasks."""

    id = models.UUIDField(primary_key=True, default=new_id, editable=False)
    topic_key = models.CharField(max_length=64, blank=True)
    status = models.CharField(
        max_length=16, choices=BroadcastStatus.choices, default=BroadcastStatus.ACCEPTED
    )
    # The message, as a validated notification request without its recipient (see fanout.py).
    message = models.JSONField(default=dict)
    priority = models.CharField(max_length=16, choices=Priority.choices, default=Priority.BULK)
    recipient_count = models.PositiveIntegerField(default=0)
    chunk_count = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    fanned_out_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return str(self.id)


class BroadcastChunk(models.Model):
    """Up to fanout.CHUNK_SIZE recipients of a broadcast; fanned out once, in one transaction."""

    broadcast = models.ForeignKey(Broadcast, on_delete=models.CASCADE, related_name="chunks")
    index = models.PositiveIntegerField()
    recipients = models.JSONField(default=list)  # recipient dicts as in a notification request
    done = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)
    done_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["broadcast", "index"], name="one_chunk_per_index")]

    def __str__(self) -> str:
        return f"{self.broadcast_id}#{self.index}"
