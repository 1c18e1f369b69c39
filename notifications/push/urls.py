"""Web push for end users, mounted at /u/push/ on each tenant's domain."""

from django.urls import path

from . import views

urlpatterns = [
    path("vapid-public-key", views.VapidPublicKey.as_view(), name="push-vapid-public-key"),
    path("subscriptions", views.Subscriptions.as_view(), name="push-subscriptions"),
    path("herald-sw.js", views.service_worker, name="push-service-worker"),
    path("herald-push.js", views.snippet, name="push-snippet"),
    path("demo/", views.demo, name="push-demo"),
]
