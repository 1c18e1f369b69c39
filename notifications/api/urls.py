from django.urls import path

from .views import NotificationDetail, NotificationListCreate

urlpatterns = [
    path("notifications", NotificationListCreate.as_view(), name="notification-list"),
    path("notifications/<uuid:pk>", NotificationDetail.as_view(), name="notification-detail"),
]
