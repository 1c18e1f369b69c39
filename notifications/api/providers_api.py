"""`/api/v1/providers`: a tenant's own provider accounts, per channel and role.

Secrets go in once and are never shown again in clear: answers carry them masked (last four
characters). Without a configuration of its own a tenant uses the platform's provider.
"""

from typing import Any

from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from tenants.crypto import decrypt_json, encrypt_json, mask

from ..models import Channel, ProviderConfig, ProviderRole
from ..providers.registry import available_providers, platform_choice, provider_class


def shown(config: ProviderConfig) -> dict[str, Any]:
    secrets = decrypt_json(config.secrets_encrypted)
    return {
        "channel": config.channel,
        "role": config.role,
        "provider": config.provider,
        "settings": config.settings,
        "secrets": {k: mask(str(v)) for k, v in secrets.items()},
        "updated_at": config.updated_at,
    }


class ProviderInput(serializers.Serializer[Any]):
    provider = serializers.CharField(max_length=32)
    settings = serializers.DictField(required=False, default=dict)
    secrets = serializers.DictField(
        child=serializers.CharField(max_length=4096), required=False, default=dict
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        channel = self.context["channel"]
        names = available_providers(channel)
        if attrs["provider"] not in names:
            raise serializers.ValidationError(
                {
                    "provider": [
                        f"no {channel} provider named {attrs['provider']!r}; choose one of {', '.join(names)}"
                    ]
                }
            )
        cls = provider_class(attrs["provider"])
        errors: dict[str, list[str]] = {}
        unknown = sorted(set(attrs["settings"]) - set(cls.setting_fields))
        if unknown:
            errors["settings"] = [
                f"unknown setting(s) {', '.join(unknown)}; {cls.name} takes {', '.join(cls.setting_fields)}"
            ]
        unknown = sorted(set(attrs["secrets"]) - set(cls.secret_fields))
        if unknown:
            allowed = ", ".join(cls.secret_fields) or "none"
            errors["secrets"] = [f"unknown secret(s) {', '.join(unknown)}; {cls.name} takes {allowed}"]
        if errors:
            raise serializers.ValidationError(errors)
        return attrs


def _check(channel: str, role: str) -> None:
    errors = {}
    if channel not in Channel.values:
        errors["channel"] = [f"unknown channel {channel!r}"]
    if role not in ProviderRole.values:
        errors["role"] = [f"role must be one of {', '.join(ProviderRole.values)}"]
    if errors:
        raise serializers.ValidationError(errors)


class ProviderList(APIView):
    def get(self, request: Request) -> Response:
        configs = [
            shown(c) for c in ProviderConfig.objects.filter(is_active=True).order_by("channel", "role")
        ]
        defaults = {
            channel: choice.name
            for channel in Channel.values
            if (choice := platform_choice(channel)) is not None
        }
        return Response({"providers": configs, "platform_defaults": defaults})


class ProviderDetail(APIView):
    """PUT sets the tenant's provider for a channel and role; secrets omitted keep their old values."""

    def get(self, request: Request, channel: str, role: str) -> Response:
        _check(channel, role)
        return Response(shown(get_object_or_404(ProviderConfig, channel=channel, role=role, is_active=True)))

    @extend_schema(request=ProviderInput)
    def put(self, request: Request, channel: str, role: str) -> Response:
        _check(channel, role)
        data = ProviderInput(data=request.data, context={"channel": channel})
        data.is_valid(raise_exception=True)
        existing = ProviderConfig.objects.filter(channel=channel, role=role, is_active=True).first()
        secrets = (
            decrypt_json(existing.secrets_encrypted)
            if existing and existing.provider == data.validated_data["provider"]
            else {}
        )
        secrets.update(data.validated_data["secrets"])
        config = existing or ProviderConfig(channel=channel, role=role)
        config.provider = data.validated_data["provider"]
        config.settings = data.validated_data["settings"]
        config.secrets_encrypted = encrypt_json(secrets)
        config.updated_at = timezone.now()
        config.save()
        return Response(shown(config), status=status.HTTP_200_OK if existing else status.HTTP_201_CREATED)

    def delete(self, request: Request, channel: str, role: str) -> Response:
        _check(channel, role)
        get_object_or_404(ProviderConfig, channel=channel, role=role, is_active=True).delete()
        return Response(status=status.HTTP_204_NO_CONTENT)
