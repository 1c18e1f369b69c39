"""Routes for every host: the API (tenant chosen by API key), its docs, the console (tenant
domains only) and, in development, the dev tools."""

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView


def health(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


urlpatterns = [
    path("api/v1/", include("notifications.api.urls")),
    path("api/v1/", include("notifications.feed.api_urls")),
    path("u/feed/", include("notifications.feed.urls")),
    path("u/push/", include("notifications.push.urls")),
    path("console/", include("notifications.console.urls")),
    path("u/", include("notifications.preferences.urls")),
    path("hooks/", include("notifications.hooks.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("healthz", health),
]

if settings.DEBUG:
    # What the local mail catcher and the fake SMS and push services received.
    urlpatterns.append(path("dev/", include("tenant_platform.devtools.urls")))

handler400 = "tenant_platform.api_errors.handler400"
handler403 = "notifications.console.errors.permission_denied"
handler404 = "tenant_platform.api_errors.handler404"
handler500 = "tenant_platform.api_errors.handler500"
