"""A recipient's feed for the tenant's backend, under /api/v1/ (API key)."""

from django.urls import path

from . import views

urlpatterns = [
    path("recipients/<str:external_id>/feed", views.RecipientFeed.as_view(), name="recipient-feed"),
    path(
        "recipients/<str:external_id>/feed/mark-all-read",
        views.RecipientFeedMarkAllRead.as_view(),
        name="recipient-feed-mark-all-read",
    ),
    path(
        "recipients/<str:external_id>/feed/<uuid:item_id>",
        views.RecipientFeedItem.as_view(),
        name="recipient-feed-item",
    ),
    path("recipients/<str:external_id>/token", views.RecipientToken.as_view(), name="recipient-token"),
]
