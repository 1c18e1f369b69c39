"""Categories and recipients' preferences, for the tenant's backend."""

from typing import Any

from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import generics, serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from ..models import Category, Channel, Recipient
from ..preferences import service


class CategorySerializer(serializers.ModelSerializer[Category]):
    class Meta:
        model = Category
        fields = ["key", "name", "required", "created_at"]
        read_only_fields = ["key", "created_at"]


class CategoryList(generics.ListAPIView[Category]):
    serializer_class = CategorySerializer

    def get_queryset(self) -> QuerySet[Category]:
        return Category.objects.order_by("key")


class CategoryDetail(APIView):
    """PUT creates or updates a category; `required: true` makes it bypass preferences."""

    @extend_schema(request=CategorySerializer, responses=CategorySerializer)
    def put(self, request: Request, key: str) -> Response:
        slug = serializers.SlugField(max_length=64)
        try:
            key = slug.run_validation(key)
        except serializers.ValidationError as exc:
            raise serializers.ValidationError({"key": exc.detail}) from None
        category = service.category(key)
        data = CategorySerializer(category, data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        data.save()
        return Response(data.data)

    @extend_schema(responses=CategorySerializer)
    def get(self, request: Request, key: str) -> Response:
        return Response(CategorySerializer(get_object_or_404(Category, key=key)).data)


class Choice(serializers.Serializer[Any]):
    category = serializers.SlugField(max_length=64)
    channel = serializers.ChoiceField(choices=Channel.choices)
    enabled = serializers.BooleanField()


class PreferencesUpdate(serializers.Serializer[Any]):
    preferences = Choice(many=True, allow_empty=False)


def _table(recipient: Recipient) -> dict[str, Any]:
    return {
        "recipient": recipient.external_id,
        "categories": [
            {"category": c.key, "required": c.required, "channels": choices}
            for c, choices in service.preference_table(recipient)
        ],
    }


class RecipientPreferences(APIView):
    def get(self, request: Request, external_id: str) -> Response:
        return Response(_table(get_object_or_404(Recipient, external_id=external_id)))

    @extend_schema(request=PreferencesUpdate)
    def put(self, request: Request, external_id: str) -> Response:
        recipient = get_object_or_404(Recipient, external_id=external_id)
        update = PreferencesUpdate(data=request.data)
        update.is_valid(raise_exception=True)
        by_category: dict[str, dict[str, bool]] = {}
        for choice in update.validated_data["preferences"]:
            by_category.setdefault(choice["category"], {})[choice["channel"]] = choice["enabled"]
        for key, choices in by_category.items():
            service.set_preferences(recipient, service.category(key), choices)
        return Response(_table(recipient))
