"""ASGI entry point: one origin for the API, the console and WebSockets.

HTTP is served by the WSGI application inside a fixed pool of threads (a2wsgi), not by Django's
ASGI handler: under the ASGI handler every request ran in a new thread with its own persistent
database connection, and PostgreSQL ran out of connections (see the README, "Serving"). In a
fixed pool each thread keeps one connection, so connections are bounded by
WEB_THREADS x processes. WebSockets (the live console) are added here by the Channels routing.

uvicorn parses HTTP with httptools and runs on uvloop (both pinned in requirements/base.txt; it
picks them by itself): with pure-Python h11 the event loop thread, which needs the GIL for every
request it parses, held the bare bench view to about 280 req/s on 2 cores (bench/api.py).
"""

import os

from a2wsgi import WSGIMiddleware
from channels.routing import ProtocolTypeRouter, URLRouter
from django.core.wsgi import get_wsgi_application

# Production unless told otherwise: `make run` and the tests name their settings explicitly.
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tenant_platform.settings.production")

_wsgi = get_wsgi_application()

# Imported once Django is set up: the consumers import models.
from notifications.realtime import redact_tokens_in_server_logs  # noqa: E402
from notifications.realtime.middleware import TenantFromHostMiddleware  # noqa: E402
from notifications.realtime.routing import websocket_urlpatterns  # noqa: E402

# Recipient tokens ride in WebSocket (and feed page) query strings; the server must not log them.
redact_tokens_in_server_logs()

application = ProtocolTypeRouter(
    {
        "http": WSGIMiddleware(_wsgi, workers=int(os.environ.get("WEB_THREADS", "8"))),  # type: ignore[arg-type]
        # The tenant comes from the Host header, as for HTTP; each consumer checks its own token.
        "websocket": TenantFromHostMiddleware(URLRouter(websocket_urlpatterns)),
    }
)
