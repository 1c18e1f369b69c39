"""`/api/v1/templates`: a tenant's stored templates, one variant per channel and locale, and preview."""

from typing import Any

from django.db import transaction
from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.utils import extend_schema
from jinja2 import TemplateSyntaxError
from rest_framework import generics, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from ..compose import ComposeError, placeholder_links, render_content, template_sources
from ..models import Channel, Template, TemplateVariant
from ..rendering import check_syntax

TEXT_FIELDS = ("subject", "text", "html", "url")


class VariantSerializer(serializers.ModelSerializer[TemplateVariant]):
    channel = serializers.ChoiceField(choices=Channel.choices)
    locale = serializers.RegexField(
        r"^([A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})*)?$", required=False, max_length=16
    )

    class Meta:
        model = TemplateVariant
        fields = ["channel", "locale", "subject", "text", "html", "url"]

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        errors = {}
        for field in TEXT_FIELDS:
            try:
                check_syntax(attrs.get(field, ""))
            except TemplateSyntaxError as exc:
                errors[field] = [f"template syntax error on line {exc.lineno}: {exc.message}"]
        if errors:
            raise serializers.ValidationError(errors)
        attrs["locale"] = attrs.get("locale", "").lower().replace("_", "-")
        return attrs


class TemplateSerializer(serializers.ModelSerializer[Template]):
    key = serializers.SlugField(max_length=64)
    variants = VariantSerializer(many=True)

    class Meta:
        model = Template
        fields = ["key", "name", "category", "variants", "created_at", "updated_at"]
        read_only_fields = ["created_at", "updated_at"]

    def validate_key(self, key: str) -> str:
        taken = Template.objects.filter(key=key)
        if self.instance is not None:
            taken = taken.exclude(pk=self.instance.pk)
        if taken.exists():
            raise serializers.ValidationError(f"a template with key {key!r} exists")
        return key

    def validate_variants(self, variants: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if not variants:
            raise serializers.ValidationError("give at least one variant")
        seen = set()
        for v in variants:
            pair = (v["channel"], v.get("locale", ""))
            if pair in seen:
                raise serializers.ValidationError(
                    f"two variants for {pair[0]} in locale {pair[1] or '(default)'!r}"
                )
            seen.add(pair)
        return variants

    def create(self, validated: dict[str, Any]) -> Template:
        variants = validated.pop("variants")
        with transaction.atomic():
            template = Template.objects.create(**validated)
            TemplateVariant.objects.bulk_create(TemplateVariant(template=template, **v) for v in variants)
        return template

    def update(self, template: Template, validated: dict[str, Any]) -> Template:
        variants = validated.pop("variants", None)
        with transaction.atomic():
            for field, value in validated.items():
                setattr(template, field, value)
            template.updated_at = timezone.now()
            template.save()
            if variants is not None:
                template.variants.all().delete()
                TemplateVariant.objects.bulk_create(TemplateVariant(template=template, **v) for v in variants)
        return template


class TemplateList(generics.ListCreateAPIView[Template]):
    serializer_class = TemplateSerializer

    def get_queryset(self) -> QuerySet[Template]:
        return Template.objects.prefetch_related("variants").order_by("key")


class TemplateDetail(generics.RetrieveUpdateDestroyAPIView[Template]):
    serializer_class = TemplateSerializer
    lookup_field = "key"
    http_method_names = ["get", "put", "delete"]

    def get_queryset(self) -> QuerySet[Template]:
        return Template.objects.prefetch_related("variants")


class PreviewRequest(serializers.Serializer[Any]):
    # A field named `data` is fine at run time (DRF collects fields apart from `.data`).
    data = serializers.DictField(required=False, default=dict)  # type: ignore[assignment]
    locale = serializers.CharField(required=False, default="", allow_blank=True, max_length=16)
    channels = serializers.ListField(child=serializers.ChoiceField(choices=Channel.choices), required=False)


class TemplatePreview(APIView):
    @extend_schema(request=PreviewRequest)
    def post(self, request: Request, key: str) -> Response:
        template = get_object_or_404(Template.objects.prefetch_related("variants"), key=key)
        params = PreviewRequest(data=request.data)
        params.is_valid(raise_exception=True)
        channels = params.validated_data.get("channels") or sorted(
            {v.channel for v in template.variants.all()}
        )
        try:
            sources = template_sources(template, channels, params.validated_data["locale"])
            rendered = {
                channel: render_content(channel, source, params.validated_data["data"], placeholder_links())
                for channel, source in sources.items()
            }
        except ComposeError as exc:
            raise serializers.ValidationError(
                {"data" if "render" in exc.message else exc.field: [exc.message]}
            ) from None
        return Response({"template": template.key, "channels": rendered}, status=status.HTTP_200_OK)
