"""Topics, broadcasts and batches: many recipients in one call, fanned out by tasks."""

import uuid
from typing import Any

from django.db import transaction
from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import generics, serializers, status
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.reverse import reverse
from rest_framework.views import APIView

from tenant_platform.api_errors import flatten_errors

from .. import fanout
from ..models import Broadcast, Priority, Topic, TopicSubscription
from ..pipeline import accept_many, upsert_recipients
from ..recipients import check_recipients, spec_of
from .quick import notification_fields
from .serializers import (
    Lookups,
    MessageFields,
    NotificationCreate,
    check_notification,
    needs_stored_recipient,
    notification_spec,
)

MAX_BATCH = 1000
MAX_SUBSCRIBERS_PER_CALL = 10_000


# --- topics -----------------------------------------------------------------------------------


class TopicSerializer(serializers.ModelSerializer[Topic]):
    key = serializers.SlugField(max_length=64)
    subscribers = serializers.SerializerMethodField()

    class Meta:
        model = Topic
        fields = ["key", "name", "subscribers", "created_at"]
        read_only_fields = ["created_at"]

    def get_subscribers(self, topic: Topic) -> int:
        return topic.subscriptions.count()

    def validate_key(self, key: str) -> str:
        if Topic.objects.filter(key=key).exists():
            raise serializers.ValidationError(f"a topic with key {key!r} exists")
        return key


class TopicList(generics.ListCreateAPIView[Topic]):
    serializer_class = TopicSerializer

    def get_queryset(self) -> QuerySet[Topic]:
        return Topic.objects.order_by("key")


class TopicDetail(generics.RetrieveDestroyAPIView[Topic]):
    serializer_class = TopicSerializer
    lookup_field = "key"
    queryset = Topic.objects.all()


class SubscribersPage(CursorPagination):
    ordering = "-created_at"
    page_size = 100
    max_page_size = 1000
    page_size_query_param = "limit"


class TopicSubscribers(APIView):
    """POST adds recipients (upserted) to a topic; DELETE removes them by external_id; GET lists."""

    def get(self, request: Request, key: str) -> Response:
        topic = get_object_or_404(Topic, key=key)
        paginator = SubscribersPage()
        subscriptions = TopicSubscription.objects.filter(topic=topic).select_related("recipient")
        page = paginator.paginate_queryset(subscriptions, request, view=self) or []
        rows = [{"external_id": s.recipient.external_id, "since": s.created_at} for s in page]
        return paginator.get_paginated_response(rows)

    @extend_schema(request=None)
    def post(self, request: Request, key: str) -> Response:
        topic = get_object_or_404(Topic, key=key)
        items, errors = check_recipients(
            _body(request).get("recipients"), "recipients", MAX_SUBSCRIBERS_PER_CALL
        )
        if errors:
            raise serializers.ValidationError(errors)
        with transaction.atomic():
            recipients = upsert_recipients([spec_of(item) for item in items])
            before = topic.subscriptions.count()
            TopicSubscription.objects.bulk_create(
                [TopicSubscription(topic=topic, recipient=r) for r in recipients.values()],
                ignore_conflicts=True,
            )
            after = topic.subscriptions.count()
        return Response({"added": after - before, "subscribers": after})

    @extend_schema(request=None)
    def delete(self, request: Request, key: str) -> Response:
        topic = get_object_or_404(Topic, key=key)
        external_ids = _body(request).get("external_ids")
        if not isinstance(external_ids, list) or not all(isinstance(e, str) for e in external_ids):
            raise serializers.ValidationError({"external_ids": ["expected a list of external ids"]})
        removed, _ = TopicSubscription.objects.filter(
            topic=topic, recipient__external_id__in=external_ids
        ).delete()
        return Response({"removed": removed, "subscribers": topic.subscriptions.count()})


# --- broadcasts -------------------------------------------------------------------------------


class BroadcastCreate(MessageFields):
    topic = serializers.SlugField(required=False, max_length=64)
    priority = serializers.ChoiceField(choices=Priority.choices, default=Priority.BULK)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        raw = self.initial_data.get("recipients")
        if ("topic" in attrs) == (raw is not None):
            raise serializers.ValidationError({"topic": ["give either a topic or a list of recipients"]})
        if "topic" in attrs:
            topic = Topic.objects.filter(key=attrs["topic"]).first()
            if topic is None:
                raise serializers.ValidationError({"topic": [f"no topic with key {attrs['topic']!r}"]})
            attrs["topic_obj"], attrs["recipient_items"] = topic, None
            sample: dict[str, Any] = {}
        else:
            items, errors = check_recipients(raw, "recipients", fanout.MAX_RECIPIENTS)
            if errors:
                raise serializers.ValidationError(errors)
            attrs["topic_obj"], attrs["recipient_items"] = None, items
            sample = items[0]  # a recipient without an address for a channel fails there, with the reason
        # Checked once with the broadcast's data (and the first recipient's own data, if any);
        # a recipient whose own data can't render gets a failed delivery naming why.
        return self.validate_message(
            attrs, attrs.get("locale", ""), {**attrs["data"], **sample.get("data", {})}
        )


class BroadcastList(APIView):
    @extend_schema(request=BroadcastCreate)
    def post(self, request: Request) -> Response:
        data = BroadcastCreate(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        message = data.spec_for(spec_of({"external_id": "-"}))
        broadcast = fanout.create(message, v["recipient_items"], v["topic_obj"])
        url = reverse("broadcast-detail", kwargs={"pk": broadcast.id})
        body = {
            "id": str(broadcast.id),
            "status": broadcast.status,
            "recipients": broadcast.recipient_count,
            "url": url,
        }
        return Response(body, status=status.HTTP_202_ACCEPTED, headers={"Location": url})


class BroadcastDetail(APIView):
    def get(self, request: Request, pk: str) -> Response:
        return Response(fanout.progress(get_object_or_404(Broadcast, pk=pk)))


# --- batches ----------------------------------------------------------------------------------


class NotificationBatch(APIView):
    """Up to 1,000 notifications, each validated on its own; the valid ones go."""

    @extend_schema(request=None)
    def post(self, request: Request) -> Response:
        items = request.data.get("notifications") if isinstance(request.data, dict) else None
        if not isinstance(items, list) or not items:
            raise serializers.ValidationError(
                {"notifications": ["expected a non-empty list of notifications"]}
            )
        if len(items) > MAX_BATCH:
            raise serializers.ValidationError({"notifications": [f"{len(items)} items; at most {MAX_BATCH}"]})
        lookups = Lookups()
        # Field checks first (plain Python where the item is well formed, see quick.py), so the
        # stored recipients that some items need are read in one query for all of them.
        fields = [notification_fields(item, lookups) for item in items]
        lookups.prefetch_recipients(
            [
                item["recipient"]["external_id"]
                for item, attrs in zip(items, fields, strict=True)
                if (needs_stored_recipient(attrs) if attrs is not None else _has_external_id(item))
            ]
        )
        results: list[dict[str, Any]] = []
        valid: list[tuple[int, dict[str, Any]]] = []
        for index, (item, attrs) in enumerate(zip(items, fields, strict=True)):
            if attrs is not None:
                try:
                    valid.append((index, check_notification(attrs, lookups)))
                    continue
                except serializers.ValidationError:
                    pass  # the serializer below words it
            serializer = NotificationCreate(data=item, context={"lookups": lookups})
            if serializer.is_valid():
                valid.append((index, dict(serializer.validated_data)))
            else:
                fields_with_errors = flatten_errors(serializer.errors)
                results.append(
                    {"index": index, "error": {"code": "validation_failed", "fields": fields_with_errors}}
                )
        notifications = accept_many([notification_spec(attrs) for _, attrs in valid])
        # Each item's URL is the same route with its own id: reversed once, not a thousand times.
        head, _, tail = reverse("notification-detail", kwargs={"pk": _URL_MARK}).partition(str(_URL_MARK))
        for (index, _), notification in zip(valid, notifications, strict=True):
            results.append(
                {
                    "index": index,
                    "id": str(notification.id),
                    "status": notification.initial_status,
                    "url": f"{head}{notification.id}{tail}",
                }
            )
        results.sort(key=lambda r: int(r["index"]))
        body = {"accepted": len(valid), "failed": len(items) - len(valid), "results": results}
        return Response(body, status=status.HTTP_202_ACCEPTED if valid else status.HTTP_400_BAD_REQUEST)


_URL_MARK = uuid.UUID(int=0)


def _body(request: Request) -> dict[str, Any]:
    return request.data if isinstance(request.data, dict) else {}


def _has_external_id(item: Any) -> bool:
    return (
        isinstance(item, dict)
        and isinstance(item.get("recipient"), dict)
        and isinstance(item["recipient"].get("external_id"), str)
    )
