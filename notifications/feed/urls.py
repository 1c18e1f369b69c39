"""The end user's feed, under /u/feed/ on the tenant's domain (recipient token, no account)."""

from django.urls import path

from . import views

urlpatterns = [
    path("", views.MyFeed.as_view(), name="my-feed"),
    path("badge", views.MyBadge.as_view(), name="my-feed-badge"),
    path("mark-all-read", views.MyFeedMarkAllRead.as_view(), name="my-feed-mark-all-read"),
    path("demo/", views.demo, name="my-feed-demo"),
    path("<uuid:item_id>", views.MyFeedItem.as_view(), name="my-feed-item"),
]
