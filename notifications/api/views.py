"""`/api/v1/notifications`: accept a notification, list them, show one with its timeline."""

from django.db.models import Prefetch, QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import generics, status
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.reverse import reverse

from .. import pipeline
from ..models import Delivery, DeliveryAttempt, DeliveryEvent, Notification
from .quick import validated_notification
from .serializers import AcceptedNotification, Lookups, NotificationCreate, NotificationOut, notification_spec


class NewestFirst(CursorPagination):
    ordering = "-created_at"
    page_size = 50
    max_page_size = 200
    page_size_query_param = "limit"


def notifications_with_timeline() -> QuerySet[Notification]:
    return Notification.objects.select_related("recipient").prefetch_related(
        Prefetch(
            "deliveries",
            queryset=Delivery.objects.order_by("created_at").prefetch_related(
                Prefetch("events", queryset=DeliveryEvent.objects.order_by("id")),
                Prefetch("attempt_log", queryset=DeliveryAttempt.objects.order_by("id")),
            ),
        )
    )


class NotificationListCreate(generics.ListAPIView[Notification]):
    serializer_class = NotificationOut
    pagination_class = NewestFirst

    def get_queryset(self) -> QuerySet[Notification]:
        return notifications_with_timeline()

    @extend_schema(request=NotificationCreate, responses={202: AcceptedNotification})
    def post(self, request: Request) -> Response:
        attrs = validated_notification(request.data, Lookups())
        notification = pipeline.accept(notification_spec(attrs))
        url = reverse("notification-detail", kwargs={"pk": notification.id})
        return Response(
            {"id": str(notification.id), "status": notification.initial_status, "url": url},
            status=status.HTTP_202_ACCEPTED,
            headers={"Location": url},
        )


class NotificationDetail(generics.RetrieveAPIView[Notification]):
    serializer_class = NotificationOut

    def get_queryset(self) -> QuerySet[Notification]:
        return notifications_with_timeline()
