"""WebSocket routes; tenant_platform.asgi wraps them in TenantFromHostMiddleware."""

from django.urls import path

from .console import ConsoleConsumer
from .consumers import FeedConsumer

websocket_urlpatterns = [
    path("ws/feed/", FeedConsumer.as_asgi()),
    path("ws/console/", ConsoleConsumer.as_asgi()),
]
