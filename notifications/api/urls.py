from django.urls import path

from .preferences_api import CategoryDetail, CategoryList, RecipientPreferences
from .providers_api import ProviderDetail, ProviderList
from .templates_api import TemplateDetail, TemplateList, TemplatePreview
from .views import NotificationDetail, NotificationListCreate

urlpatterns = [
    path("notifications", NotificationListCreate.as_view(), name="notification-list"),
    path("notifications/<uuid:pk>", NotificationDetail.as_view(), name="notification-detail"),
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
