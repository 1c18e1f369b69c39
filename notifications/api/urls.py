from django.urls import path

from .broadcasts_api import (
    BroadcastDetail,
    BroadcastList,
    NotificationBatch,
    TopicDetail,
    TopicList,
    TopicSubscribers,
)
from .preferences_api import CategoryDetail, CategoryList, RecipientPreferences
from .providers_api import ProviderDetail, ProviderList
from .templates_api import TemplateDetail, TemplateList, TemplatePreview
from .views import NotificationDetail, NotificationListCreate

urlpatterns = [
    path("notifications", NotificationListCreate.as_view(), name="notification-list"),
    path("notifications/batch", NotificationBatch.as_view(), name="notification-batch"),
    path("notifications/<uuid:pk>", NotificationDetail.as_view(), name="notification-detail"),
    path("broadcasts", BroadcastList.as_view(), name="broadcast-list"),
    path("broadcasts/<uuid:pk>", BroadcastDetail.as_view(), name="broadcast-detail"),
    path("topics", TopicList.as_view(), name="topic-list"),
    path("topics/<slug:key>", TopicDetail.as_view(), name="topic-detail"),
    path("topics/<slug:key>/subscribers", TopicSubscribers.as_view(), name="topic-subscribers"),
    path("templates", TemplateList.as_view(), name="template-list"),
    path("templates/<slug:key>", TemplateDetail.as_view(), name="template-detail"),
    path("templates/<slug:key>/preview", TemplatePreview.as_view(), name="template-preview"),
    path("providers", ProviderList.as_view(), name="provider-list"),
    path("providers/<str:channel>/<str:role>", ProviderDetail.as_view(), name="provider-detail"),
    path("categories", CategoryList.as_view(), name="category-list"),
    path("categories/<str:key>", CategoryDetail.as_view(), name="category-detail"),
    path(
        "recipients/<str:external_id>/preferences",
        RecipientPreferences.as_view(),
        name="recipient-preferences",
    ),
]
