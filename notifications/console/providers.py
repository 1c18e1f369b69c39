"""The providers page: per channel, the tenant's primary and secondary accounts, their health, and
a test send through the normal pipeline.

Credentials are never put on a page: an account id (Twilio's account SID) shows its last four
characters, a token, password or private key shows only whether it is set. Editing leaves a
secret unchanged unless a new value is typed. Validation is the API's own (ProviderInput), so the
console and `/api/v1/providers` accept and refuse the same things.
"""

import uuid
from dataclasses import dataclass
from typing import Any

from django.contrib import messages
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from tenant_platform.api_errors import flatten_errors
from tenants.crypto import DecryptionError, decrypt_json, encrypt_json, mask

from .. import health, pipeline
from ..api.providers_api import ProviderInput
from ..api.serializers import NotificationCreate
from ..models import Channel, Notification, ProviderConfig, ProviderRole, Recipient
from ..providers.registry import available_providers, platform_choice, provider_class
from .roles import ADMIN, VIEWER, can, console_view

# Secrets that are account identifiers rather than credentials: their last four characters help
# an admin tell accounts apart. Every other secret shows only whether it is set.
IDENTIFYING_SECRETS = frozenset({"account_sid"})
BOOLEAN_SETTINGS = frozenset({"use_tls", "use_ssl"})
INTEGER_SETTINGS = frozenset({"port"})
# The tenant's VAPID key pair, made at provisioning: browsers subscribed with its public key, so
# replacing or dropping it would silently cut off every subscription. The console keeps it.
KEPT_SETTINGS = frozenset({"vapid_public_key"})
KEPT_SECRETS = frozenset({"vapid_private_key"})
CHANNEL_LABELS = {"email": "Email", "sms": "SMS", "push": "Web push", "in_app": "In-app feed"}
TEST_ADDRESS_LABEL = {
    "email": "Email address",
    "sms": "Phone number (E.164, e.g. +14155550100)",
    "push": "Recipient id (one with a push subscription)",
    "in_app": "Recipient id",
}


def shown_secrets(secrets: dict[str, Any]) -> dict[str, str]:
    return {
        name: (mask(str(value)) if name in IDENTIFYING_SECRETS else "set")
        for name, value in secrets.items()
        if value
    }


@dataclass
class Slot:
    """One channel and role: the tenant's own account there, if any, and its health."""

    channel: str
    role: str
    config: ProviderConfig | None
    secrets: dict[str, str]
    unreadable: bool = False

    @property
    def edit_url(self) -> str:
        return reverse("console:provider_edit", args=[self.channel, self.role])


@dataclass
class Health:
    provider: str
    error_rate: float
    attempts: int
    unhealthy: bool


def _slots(channel: str, configs: dict[tuple[str, str], ProviderConfig]) -> list[Slot]:
    slots = []
    for role in ProviderRole.values:
        config = configs.get((channel, role))
        secrets: dict[str, str] = {}
        unreadable = False
        if config is not None:
            try:
                secrets = shown_secrets(decrypt_json(config.secrets_encrypted))
            except DecryptionError:
                unreadable = True
        slots.append(Slot(channel, role, config, secrets, unreadable))
    return slots


def _health(channel: str, name: str) -> Health:
    rate, attempts = health.error_rate(channel, name)
    return Health(name, rate, attempts, health.is_unhealthy(channel, name))


def _page(
    request: HttpRequest, test_errors: dict[str, list[str]] | None = None, status: int = 200
) -> HttpResponse:
    configs = {(c.channel, c.role): c for c in ProviderConfig.objects.filter(is_active=True)}
    channels = []
    for channel in Channel.values:
        slots = _slots(channel, configs)
        platform = platform_choice(channel)
        uses_platform = (channel, ProviderRole.PRIMARY) not in configs
        in_use = ([platform.name] if platform and uses_platform else []) + [
            s.config.provider for s in slots if s.config
        ]
        channels.append(
            {
                "key": channel,
                "label": CHANNEL_LABELS.get(channel, channel),
                "slots": slots,
                "platform": platform.name if platform else None,
                "uses_platform": uses_platform,
                "health": [_health(channel, name) for name in dict.fromkeys(in_use)],
            }
        )
    sent = None
    sent_id = request.GET.get("sent", "")
    if sent_id:
        sent = Notification.objects.filter(pk=sent_id).first() if _is_uuid(sent_id) else None
    context = {
        "channels": channels,
        "is_admin": can(request, ADMIN),
        "test_labels": TEST_ADDRESS_LABEL,
        "test_errors": test_errors or {},
        "test_values": request.POST if test_errors else {},
        "sent": sent,
    }
    return render(request, "console/providers/providers.html", context, status=status)


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


@console_view(VIEWER)
def providers(request: HttpRequest) -> HttpResponse:
    return _page(request)


def _check_slot(channel: str, role: str) -> None:
    if channel not in Channel.values or role not in ProviderRole.values:
        raise Http404(f"No provider slot {channel}/{role}.")


def _form_values(
    request: HttpRequest, name: str, kept: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, str], list[str]]:
    """(settings, secrets, errors) from the edit form for provider `name`; `kept`: the stored
    values of KEPT_SETTINGS, which the form cannot change."""
    cls = provider_class(name)
    settings: dict[str, Any] = {}
    errors: list[str] = []
    for field in cls.setting_fields:
        if field in KEPT_SETTINGS:
            if field in kept:
                settings[field] = kept[field]
            continue
        raw = request.POST.get(f"setting_{field}", "").strip()
        if field in BOOLEAN_SETTINGS:
            settings[field] = raw == "on"
        elif not raw:
            continue
        elif field in INTEGER_SETTINGS:
            if not raw.isdigit():
                errors.append(f"{field}: must be a whole number, not {raw!r}")
                continue
            settings[field] = int(raw)
        else:
            settings[field] = raw
    secrets = {
        field: value
        for field in cls.secret_fields
        if field not in KEPT_SECRETS
        and (value := request.POST.get(f"secret_{field}", ""))  # blank: keep what is stored
    }
    return settings, secrets, errors


@console_view(ADMIN)
def edit_provider(request: HttpRequest, channel: str, role: str) -> HttpResponseBase:
    """GET shows the form; POST saves it, validated as the API validates."""
    _check_slot(channel, role)
    existing = ProviderConfig.objects.filter(channel=channel, role=role, is_active=True).first()
    names = available_providers(channel)
    name = (
        request.POST.get("provider") or request.GET.get("provider") or (existing.provider if existing else "")
    )
    if name not in names:
        name = names[0] if names else ""
    same = existing is not None and existing.provider == name
    kept = {k: v for k, v in existing.settings.items() if k in KEPT_SETTINGS} if existing and same else {}
    errors: dict[str, list[str]] = {}
    if request.method == "POST" and name:
        settings, secrets, problems = _form_values(request, name, kept)
        if problems:
            errors["settings"] = problems
        else:
            data = ProviderInput(
                data={"provider": name, "settings": settings, "secrets": secrets},
                context={"channel": channel},
            )
            if data.is_valid():
                _save(channel, role, existing, data.validated_data)
                messages.success(request, f"{CHANNEL_LABELS[channel]} {role} provider saved: {name}.")
                return redirect("console:providers")
            errors = {k: [str(e) for e in v] for k, v in data.errors.items()}
    cls = provider_class(name) if name else None
    stored: dict[str, Any] = {}
    if same and existing is not None:
        try:
            stored = decrypt_json(existing.secrets_encrypted)
        except DecryptionError:
            stored = {}
    values = request.POST if request.method == "POST" else (existing.settings if same and existing else {})
    context = {
        "channel": channel,
        "channel_label": CHANNEL_LABELS[channel],
        "role": role,
        "existing": existing,
        "names": names,
        "name": name,
        "setting_fields": [
            {
                "name": f,
                "bool": f in BOOLEAN_SETTINGS,
                "kept": f in KEPT_SETTINGS,
                "value": kept.get(f, "")
                if f in KEPT_SETTINGS
                else values.get(f"setting_{f}" if request.method == "POST" else f, ""),
            }
            for f in (cls.setting_fields if cls else ())
        ],
        "secret_fields": [
            {"name": f, "stored": shown_secrets(stored).get(f, ""), "kept": f in KEPT_SECRETS}
            for f in (cls.secret_fields if cls else ())
        ],
        "errors": errors,
    }
    return render(request, "console/providers/edit.html", context, status=400 if errors else 200)


def _save(channel: str, role: str, existing: ProviderConfig | None, validated: dict[str, Any]) -> None:
    """As PUT /api/v1/providers/<channel>/<role>: secrets left blank keep their stored values."""
    with transaction.atomic():
        secrets = (
            decrypt_json(existing.secrets_encrypted)
            if existing and existing.provider == validated["provider"]
            else {}
        )
        secrets.update(validated["secrets"])
        config = existing or ProviderConfig(channel=channel, role=role)
        config.provider = validated["provider"]
        config.settings = validated["settings"]
        config.secrets_encrypted = encrypt_json(secrets)
        config.updated_at = timezone.now()
        config.save()


@require_POST
@console_view(ADMIN)
def disable_provider(request: HttpRequest, channel: str, role: str) -> HttpResponse:
    _check_slot(channel, role)
    config = ProviderConfig.objects.filter(channel=channel, role=role, is_active=True).first()
    if config is None:
        raise Http404(f"No {channel} {role} provider is set.")
    if set(config.settings) & KEPT_SETTINGS:
        messages.error(
            request,
            f"The {config.provider} account holds {request.tenant.name}'s push keys: disabling it would "  # type: ignore[attr-defined]
            "make new ones, and every browser subscribed now would stop receiving pushes. It stays.",
        )
        return redirect("console:providers")
    config.is_active = False
    config.updated_at = timezone.now()
    config.save(update_fields=["is_active", "updated_at"])
    fallback = "the platform's provider" if role == ProviderRole.PRIMARY else "no failover"
    messages.success(
        request, f"{CHANNEL_LABELS[channel]} {role} provider {config.provider} disabled: {fallback} now."
    )
    return redirect("console:providers")


@require_POST
@console_view(ADMIN)
def send_test(request: HttpRequest) -> HttpResponse:
    """A real notification through pipeline.accept, to an address the admin types."""
    channel = request.POST.get("channel", "")
    to = request.POST.get("to", "").strip()
    if channel not in Channel.values:
        return _page(request, {"channel": [f"choose a channel: {', '.join(Channel.values)}"]}, status=400)
    if not to:
        return _page(request, {"to": [f"{TEST_ADDRESS_LABEL[channel]}: required"]}, status=400)
    recipient: dict[str, str] = {"external_id": f"console-test:{to}"[:255]}
    if channel == Channel.EMAIL:
        recipient["email"] = to
    elif channel == Channel.SMS:
        recipient["phone"] = to
    else:
        if not Recipient.objects.filter(external_id=to).exists():
            return _page(
                request,
                {"to": [f"no recipient with id {to!r}: {channel} messages go to a recipient Herald knows"]},
                status=400,
            )
        recipient = {"external_id": to}
    sender = getattr(request.user, "email", "") or "an admin"
    serializer = NotificationCreate(
        data={
            "recipient": recipient,
            "channels": [channel],
            "subject": "Test message from {{ tenant }}",
            "body": "This is a test of {{ tenant }}'s {{ channel }} provider, sent from the Herald console "
            "by {{ sender }}.",
            "data": {"tenant": request.tenant.name, "channel": channel, "sender": sender},  # type: ignore[attr-defined]
            "priority": "high",
        }
    )
    if not serializer.is_valid():
        errors = flatten_errors(serializer.errors)
        return _page(request, {"to": [f"{k}: {' '.join(v)}" for k, v in errors.items()]}, status=400)
    notification = pipeline.accept(serializer.to_spec())
    return redirect(f"{reverse('console:providers')}?sent={notification.id}")
