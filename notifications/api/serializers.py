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
from .availability import channel_unavailable

MAX_BODY = 100_000


class PhoneField(serializers.CharField):
    """A phone number in international form, stored as E.164."""

    def to_internal_value(self, data: Any) -> str:
        value = super().to_internal_value(data)
        number = e164(value)
        if number is None:
            raise serializers.ValidationError(
                f"{value!r} is not a valid phone number; use the international format, e.g. +14155550100"
            )
        return number


def e164(value: str) -> str | None:
    """The number in E.164, or None if it is not a valid phone number in international form."""
    try:
        number = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
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


class Lookups:
    """What validation reads from the database, read once per request (a batch has 1,000 items)."""

    def __init__(self) -> None:
        self._stored: dict[str, dict[str, str]] = {}
        self._templates: dict[str, Template | None] = {}
        self._channels: dict[str, str | None] = {}

    def prefetch_recipients(self, external_ids: list[str]) -> None:
        if not external_ids:
            return
        rows = Recipient.objects.filter(external_id__in=external_ids).values(
            "external_id", "email", "phone", "locale"
        )
        for row in rows:
            self._stored[row["external_id"]] = {k: str(row[k]) for k in ("email", "phone", "locale")}
        for external_id in external_ids:
            self._stored.setdefault(external_id, dict.fromkeys(("email", "phone", "locale"), ""))

    def stored(self, external_id: str) -> dict[str, str]:
        if external_id not in self._stored:
            self.prefetch_recipients([external_id])
        return self._stored[external_id]

    def template(self, key: str) -> Template | None:
        if key not in self._templates:
            self._templates[key] = Template.objects.prefetch_related("variants").filter(key=key).first()
        return self._templates[key]

    def channel_problem(self, channel: str) -> str | None:
        if channel not in self._channels:
            self._channels[channel] = channel_unavailable(channel)
        return self._channels[channel]


def lookups_of(serializer: serializers.Serializer[Any]) -> Lookups:
    lookups = serializer.context.get("lookups")
    if lookups is None:
        # Per serializer when nobody shares one (DRF's context is read-only for us).
        lookups = getattr(serializer, "_herald_lookups", None) or Lookups()
        serializer._herald_lookups = lookups  # type: ignore[attr-defined]
    assert isinstance(lookups, Lookups)
    return lookups


class MessageFields(serializers.Serializer[Any]):
    """What a notification says, on which channels: shared by notifications and broadcasts."""

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
        problems = [p for c in channels if (p := lookups_of(self).channel_problem(c))]
        if problems:
            raise serializers.ValidationError(problems)
        return channels

    def validate_message(self, attrs: dict[str, Any], locale: str, data: dict[str, Any]) -> dict[str, Any]:
        return check_message(attrs, lookups_of(self), locale, data)

    def spec_for(self, recipient: RecipientSpec, data: dict[str, Any] | None = None) -> NotificationSpec:
        return message_spec(self.validated_data, recipient, data)


def check_message(
    attrs: dict[str, Any], lookups: Lookups, locale: str, data: dict[str, Any]
) -> dict[str, Any]:
    """Resolve the template, render every channel once with `data`; errors name the field."""
    errors: dict[str, Any] = {}
    template = None
    if attrs.get("template"):
        template = lookups.template(attrs["template"])
        if template is None:
            errors["template"] = [f"no template with key {attrs['template']!r}"]
    elif not attrs.get("body") and not attrs.get("subject"):
        errors["body"] = ["give a body (or a template)"]
    if errors:
        raise serializers.ValidationError(errors)
    attrs["effective_locale"] = locale
    sources = _sources(attrs, template, attrs["channels"], locale)
    for channel_name, source in sources.items():
        try:
            render_content(channel_name, source, data, placeholder_links())
        except ComposeError as exc:
            errors.setdefault(exc.field, []).append(exc.message)
    if errors:
        raise serializers.ValidationError(errors)
    attrs["sources"] = sources
    attrs["category"] = attrs.get("category") or (template.category if template else "") or "general"
    return attrs


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


def message_spec(
    v: dict[str, Any], recipient: RecipientSpec, data: dict[str, Any] | None = None
) -> NotificationSpec:
    return NotificationSpec(
        recipient=recipient,
        channels=v["channels"],
        sources=v["sources"],
        data=v["data"] if data is None else data,
        priority=v["priority"],
        category=v["category"],
        template_key=v.get("template", ""),
        locale=v["effective_locale"],
        locale_of_recipient=v.get("locale_of_recipient", False),
        subject=v["subject"],
        body=v["body"],
    )


class NotificationCreate(MessageFields):
    recipient = RecipientInput()

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        return check_notification(attrs, lookups_of(self))

    def to_spec(self) -> NotificationSpec:
        return notification_spec(self.validated_data)


# An address the channel needs, and the recipient field that holds it.
NEEDED_ADDRESS: tuple[tuple[str, str], ...] = ((Channel.EMAIL.value, "email"), (Channel.SMS.value, "phone"))


def needs_stored_recipient(attrs: dict[str, Any]) -> bool:
    """Whether checking this notification needs what Herald has stored about its recipient: an
    address the request leaves out, or the locale that picks a template's variant."""
    recipient = attrs["recipient"]
    channels = attrs["channels"]
    if any(channel in channels and not recipient.get(field) for channel, field in NEEDED_ADDRESS):
        return True
    return bool(attrs.get("template")) and not (attrs.get("locale") or recipient.get("locale"))


def check_notification(attrs: dict[str, Any], lookups: Lookups) -> dict[str, Any]:
    """The checks of a notification beyond its fields: addresses, template, rendering."""
    errors: dict[str, Any] = {}
    recipient = attrs["recipient"]
    given_locale = attrs.get("locale") or recipient.get("locale") or ""
    if needs_stored_recipient(attrs):
        # A recipient Herald knows may be addressed by external_id alone.
        stored = lookups.stored(recipient["external_id"])
        for channel, field in NEEDED_ADDRESS:
            if channel in attrs["channels"] and not (recipient.get(field) or stored[field]):
                errors.setdefault("recipient", {})[field] = [
                    f"required for the {channel} channel (none given, none stored for this recipient)"
                ]
        if errors:
            raise serializers.ValidationError(errors)
        locale = given_locale or stored["locale"]
    else:
        # Nothing here depends on the stored locale; the notification takes the recipient's
        # locale from the row that accepting it writes (pipeline.accept_many), so no read now.
        locale = given_locale
        attrs["locale_of_recipient"] = not given_locale
    return check_message(attrs, lookups, locale, attrs["data"])


def notification_spec(v: dict[str, Any]) -> NotificationSpec:
    r = v["recipient"]
    return message_spec(
        v,
        RecipientSpec(
            external_id=r["external_id"], email=r.get("email"), phone=r.get("phone"), locale=r.get("locale")
        ),
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
    content = serializers.JSONField(source="rendered_content", read_only=True)

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
