"""The API's request and response shapes for notifications."""

from typing import Any

import phonenumbers
from rest_framework import serializers

from ..compose import ComposeError, Source, inline_source, placeholder_links, render_content, template_sources
from ..models import (
    Channel,
    Delivery,
    DeliveryAttempt,
    DeliveryEvent,
    Notification,
    Priority,
    Recipient,
    Template,
)
from ..pipeline import NotificationSpec, RecipientSpec
from ..providers.registry import UnknownProvider, provider_class, resolve

MAX_BODY = 100_000


class PhoneField(serializers.CharField):
    """A phone number in international form, stored as E.164."""

    def to_internal_value(self, data: Any) -> str:
        value = super().to_internal_value(data)
        try:
            number = phonenumbers.parse(value, None)
        except phonenumbers.NumberParseException:
            number = None
        if number is None or not phonenumbers.is_valid_number(number):
            raise serializers.ValidationError(
                f"{value!r} is not a valid phone number; use the international format, e.g. +14155550100"
            )
        return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))


class RecipientInput(serializers.Serializer[Any]):
    external_id = serializers.CharField(max_length=255, help_text="Your own id for this user.")
    email = serializers.EmailField(required=False, max_length=254)
    phone = PhoneField(required=False, max_length=32, help_text="International format, e.g. +14155550100")
    locale = serializers.RegexField(r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})*$", required=False, max_length=16)


class ChannelField(serializers.CharField):
    def to_internal_value(self, data: Any) -> str:
        value = super().to_internal_value(data)
        if value not in Channel.values:
            raise serializers.ValidationError(
                f"unknown channel {value!r}; channels are {', '.join(Channel.values)}"
            )
        return value


def channel_unavailable(channel: str) -> str | None:
    """Why this tenant can't send on `channel` now, or None if it can."""
    primary, _ = resolve(channel)
    if primary is None:
        return f"no {channel} provider is configured for this tenant"
    try:
        provider_class(primary.name)
    except (ImportError, UnknownProvider):
        return f"channel {channel!r} is not available yet"
    return None


class NotificationCreate(serializers.Serializer[Any]):
    recipient = RecipientInput()
    channels = serializers.ListField(child=ChannelField(), allow_empty=False, max_length=len(Channel.values))
    template = serializers.SlugField(required=False, max_length=64, help_text="Key of a stored template.")
    subject = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=998,
        default="",
        help_text="Email subject; push/in-app title.",
    )
    body = serializers.CharField(
        required=False, allow_blank=True, max_length=MAX_BODY, trim_whitespace=False, default=""
    )
    html = serializers.CharField(
        required=False, allow_blank=True, max_length=MAX_BODY, trim_whitespace=False, default=""
    )
    url = serializers.CharField(
        required=False, allow_blank=True, max_length=2048, default="", help_text="Push/in-app link."
    )
    # A field named `data` is fine at run time (DRF collects fields apart from `.data`).
    data = serializers.DictField(required=False, default=dict)  # type: ignore[assignment]
    priority = serializers.ChoiceField(choices=Priority.choices, default=Priority.NORMAL)
    category = serializers.SlugField(required=False, max_length=64)
    locale = serializers.RegexField(r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})*$", required=False, max_length=16)

    def validate_channels(self, channels: list[str]) -> list[str]:
        duplicates = sorted({c for c in channels if channels.count(c) > 1})
        if duplicates:
            raise serializers.ValidationError(f"channel listed more than once: {', '.join(duplicates)}")
        problems = [p for c in channels if (p := channel_unavailable(c))]
        if problems:
            raise serializers.ValidationError(problems)
        return channels

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        errors: dict[str, Any] = {}
        recipient = attrs["recipient"]
        channels: list[str] = attrs["channels"]
        # A recipient Herald knows may be addressed by external_id alone.
        found = Recipient.objects.filter(external_id=recipient["external_id"]).values(
            "email", "phone", "locale"
        )
        row = found.first()
        stored = (
            {k: str(row[k]) for k in ("email", "phone", "locale")}
            if row
            else dict.fromkeys(("email", "phone", "locale"), "")
        )
        needs: tuple[tuple[str, str], ...] = ((Channel.EMAIL.value, "email"), (Channel.SMS.value, "phone"))
        for channel, field in needs:
            if channel in channels and not (recipient.get(field) or stored[field]):
                errors.setdefault("recipient", {})[field] = [
                    f"required for the {channel} channel (none given, none stored for this recipient)"
                ]
        template = None
        if attrs.get("template"):
            template = Template.objects.prefetch_related("variants").filter(key=attrs["template"]).first()
            if template is None:
                errors["template"] = [f"no template with key {attrs['template']!r}"]
        elif not attrs.get("body") and not attrs.get("subject"):
            errors["body"] = ["give a body (or a template)"]
        if errors:
            raise serializers.ValidationError(errors)

        attrs["effective_locale"] = attrs.get("locale") or recipient.get("locale") or stored["locale"] or ""
        sources = self._sources(attrs, template, channels, attrs["effective_locale"])
        for channel_name, source in sources.items():
            try:
                render_content(channel_name, source, attrs["data"], placeholder_links())
            except ComposeError as exc:
                errors.setdefault(exc.field, []).append(exc.message)
        if errors:
            raise serializers.ValidationError(errors)
        attrs["sources"] = sources
        attrs["category"] = attrs.get("category") or (template.category if template else "") or "general"
        return attrs

    @staticmethod
    def _sources(
        attrs: dict[str, Any], template: Template | None, channels: list[str], locale: str
    ) -> dict[str, Source]:
        if template is None:
            source = inline_source(attrs["subject"], attrs["body"], attrs["html"], attrs["url"])
            return dict.fromkeys(channels, source)
        try:
            return template_sources(template, channels, locale)
        except ComposeError as exc:
            raise serializers.ValidationError({exc.field: [exc.message]}) from None

    def to_spec(self) -> NotificationSpec:
        v = self.validated_data
        r = v["recipient"]
        return NotificationSpec(
            recipient=RecipientSpec(
                external_id=r["external_id"],
                email=r.get("email"),
                phone=r.get("phone"),
                locale=r.get("locale"),
            ),
            channels=v["channels"],
            sources=v["sources"],
            data=v["data"],
            priority=v["priority"],
            category=v["category"],
            template_key=v.get("template", ""),
            locale=v["effective_locale"],
            subject=v["subject"],
            body=v["body"],
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


class AttemptOut(serializers.ModelSerializer[DeliveryAttempt]):
    class Meta:
        model = DeliveryAttempt
        fields = ["number", "provider", "outcome", "response", "duration_ms", "started_at"]


class DeliveryOut(serializers.ModelSerializer[Delivery]):
    events = EventOut(many=True, read_only=True)
    attempt_log = AttemptOut(many=True, read_only=True)
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
            "content",
            "created_at",
            "sent_at",
            "events",
            "attempt_log",
        ]


class RecipientOut(serializers.ModelSerializer[Recipient]):
    class Meta:
        model = Recipient
        fields = ["external_id", "email", "phone", "locale"]


class NotificationOut(serializers.ModelSerializer[Notification]):
    status = serializers.SerializerMethodField()
    recipient = RecipientOut(read_only=True)
    deliveries = DeliveryOut(many=True, read_only=True)
    template = serializers.CharField(source="template_key")

    class Meta:
        model = Notification
        fields = [
            "id",
            "status",
            "priority",
            "category",
            "channels",
            "template",
            "locale",
            "recipient",
            "subject",
            "body",
            "data",
            "created_at",
            "deliveries",
        ]

    def get_status(self, obj: Notification) -> str:
        return Notification.summarize([d.status for d in obj.deliveries.all()])
