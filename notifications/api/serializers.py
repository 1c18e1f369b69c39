"""The API's request and response shapes for notifications."""

from typing import Any

from rest_framework import serializers

from ..models import Channel, Delivery, DeliveryEvent, Notification, Priority, Recipient
from ..pipeline import NotificationSpec, RecipientSpec
from ..rendering import RenderError, render

# Channels with a working provider; the others are refused with a clear message until they land.
AVAILABLE_CHANNELS = (Channel.EMAIL.value,)
MAX_BODY = 100_000


class RecipientInput(serializers.Serializer[Any]):
    external_id = serializers.CharField(max_length=255, help_text="Your own id for this user.")
    email = serializers.EmailField(required=False, max_length=254)
    phone = serializers.CharField(required=False, max_length=32)


class ChannelField(serializers.CharField):
    def to_internal_value(self, data: Any) -> str:
        value = super().to_internal_value(data)
        if value not in Channel.values:
            raise serializers.ValidationError(
                f"unknown channel {value!r}; channels are {', '.join(Channel.values)}"
            )
        if value not in AVAILABLE_CHANNELS:
            raise serializers.ValidationError(
                f"channel {value!r} is not available yet; available: {', '.join(AVAILABLE_CHANNELS)}"
            )
        return value


class NotificationCreate(serializers.Serializer[Any]):
    recipient = RecipientInput()
    channels = serializers.ListField(child=ChannelField(), allow_empty=False, max_length=len(Channel.values))
    subject = serializers.CharField(required=False, allow_blank=True, max_length=998, default="")
    body = serializers.CharField(max_length=MAX_BODY, trim_whitespace=False)
    # A field named `data` is fine at run time (DRF collects fields apart from `.data`).
    data = serializers.DictField(required=False, default=dict)  # type: ignore[assignment]
    priority = serializers.ChoiceField(choices=Priority.choices, default=Priority.NORMAL)
    category = serializers.SlugField(required=False, max_length=64, default="general")

    def validate_channels(self, channels: list[str]) -> list[str]:
        duplicates = sorted({c for c in channels if channels.count(c) > 1})
        if duplicates:
            raise serializers.ValidationError(f"channel listed more than once: {', '.join(duplicates)}")
        return channels

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        errors: dict[str, Any] = {}
        if Channel.EMAIL in attrs["channels"]:
            if not attrs["recipient"].get("email"):
                errors["recipient"] = {"email": ["required for the email channel"]}
            if not attrs.get("subject"):
                errors["subject"] = ["required for the email channel"]
        for field in ("subject", "body"):
            if field in errors or not attrs.get(field):
                continue
            try:
                render(attrs[field], attrs["data"])
            except RenderError as exc:
                errors[field] = [f"cannot render with the given data: {exc}"]
        if errors:
            raise serializers.ValidationError(errors)
        return attrs

    def to_spec(self) -> NotificationSpec:
        v = self.validated_data
        r = v["recipient"]
        return NotificationSpec(
            recipient=RecipientSpec(external_id=r["external_id"], email=r.get("email"), phone=r.get("phone")),
            channels=v["channels"],
            subject=v["subject"],
            body=v["body"],
            data=v["data"],
            priority=v["priority"],
            category=v["category"],
        )


class AcceptedNotification(serializers.Serializer[Any]):
    id = serializers.UUIDField()
    status = serializers.CharField()
    url = serializers.CharField()


class EventOut(serializers.ModelSerializer[DeliveryEvent]):
    at = serializers.DateTimeField(source="created_at")

    class Meta:
        model = DeliveryEvent
        fields = ["status", "detail", "at"]


class DeliveryOut(serializers.ModelSerializer[Delivery]):
    events = EventOut(many=True, read_only=True)
    error = serializers.CharField(source="last_error")

    class Meta:
        model = Delivery
        fields = [
            "id",
            "channel",
            "address",
            "status",
            "attempts",
            "provider",
            "provider_message_id",
            "error",
            "created_at",
            "sent_at",
            "events",
        ]


class RecipientOut(serializers.ModelSerializer[Recipient]):
    class Meta:
        model = Recipient
        fields = ["external_id", "email", "phone"]


class NotificationOut(serializers.ModelSerializer[Notification]):
    status = serializers.SerializerMethodField()
    recipient = RecipientOut(read_only=True)
    deliveries = DeliveryOut(many=True, read_only=True)

    class Meta:
        model = Notification
        fields = [
            "id",
            "status",
            "priority",
            "category",
            "channels",
            "recipient",
            "subject",
            "body",
            "data",
            "created_at",
            "deliveries",
        ]

    def get_status(self, obj: Notification) -> str:
        return Notification.summarize([d.status for d in obj.deliveries.all()])
