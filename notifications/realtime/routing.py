"""WebSocket routes; tenant_platform.asgi wraps them in TenantFromHostMiddleware."""

from django.urls import path

from .consumers import FeedConsumer

websocket_urlpatterns = [
    path("ws/feed/", FeedConsumer.as_asgi()),
]
