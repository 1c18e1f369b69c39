"""End-user web push endpoints on the tenant's domain, under /u/push/.

- GET  vapid-public-key   the tenant's applicationServerKey (public; made on first use)
- POST subscriptions      the browser's PushSubscription JSON, with a recipient token: upsert
- DELETE subscriptions    {"endpoint": ...}: remove it
- GET  herald-sw.js       the service worker (shows the push, opens its url on click)
- GET  herald-push.js     the snippet a tenant's page includes (register, subscribe, post)
- GET  demo/?token=...    a page that uses the snippet

The JSON endpoints answer CORS requests from any origin: a tenant's own site calls them with a
recipient token in the Authorization header (no cookies), so no origin gains anything by it.
"""

import base64
import binascii
from pathlib import Path
from typing import Any, ClassVar, NoReturn
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric import ec
from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.http import require_GET
from django_tenants.utils import get_public_schema_name
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from tenants.schemas import current_schema

from ..enduser_auth import EndUser, IsEndUser, RecipientTokenAuthentication
from ..models import PushSubscription
from .keys import ensure_vapid_keys

STATIC_DIR = Path(__file__).resolve().parent.parent / "static" / "herald" / "push"
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def _require_tenant() -> None:
    """Push belongs to a tenant: on a host that names none there is nothing here."""
    if current_schema() == get_public_schema_name():
        raise Http404("web push is served on a tenant's domain")


def local_http_allowed() -> bool:
    """http:// endpoints on this machine, for the local push service of `make run` and tests."""
    return bool(settings.DEBUG or getattr(settings, "WEBPUSH_ALLOW_LOCAL_HTTP", False))


def _b64url_bytes(value: str) -> bytes:
    if not value or any(c in value for c in "+/ \n"):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


# --- Serializers ------------------------------------------------------------------------------


class SubscriptionKeys(serializers.Serializer[Any]):
    p256dh = serializers.CharField(max_length=255)
    auth = serializers.CharField(max_length=64)

    def validate_p256dh(self, value: str) -> str:
        try:
            raw = _b64url_bytes(value)
            ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw)
        except (ValueError, binascii.Error):
            raise serializers.ValidationError(
                "must be the base64url of the browser's P-256 public key (65 bytes, uncompressed)"
            ) from None
        if len(raw) != 65:
            raise serializers.ValidationError(f"decodes to {len(raw)} bytes; a P-256 public key is 65")
        return value

    def validate_auth(self, value: str) -> str:
        try:
            raw = _b64url_bytes(value)
        except (ValueError, binascii.Error):
            raise serializers.ValidationError(
                "must be base64url (the browser's 16-byte auth secret)"
            ) from None
        if len(raw) != 16:
            raise serializers.ValidationError(f"decodes to {len(raw)} bytes; the auth secret is 16")
        return value


class SubscriptionIn(serializers.Serializer[Any]):
    """The browser's PushSubscription.toJSON(): {endpoint, expirationTime, keys: {p256dh, auth}}."""

    endpoint = serializers.CharField(max_length=2048)
    keys = SubscriptionKeys()
    # The browser's name for it; Herald keeps the subscription until the push service says 404/410.
    expirationTime = serializers.FloatField(required=False, allow_null=True)

    def validate_endpoint(self, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme == "https" and parts.hostname:
            return value
        if parts.scheme == "http" and parts.hostname in LOCAL_HOSTS and local_http_allowed():
            return value
        raise serializers.ValidationError("must be an https:// URL (the push service's endpoint)")


class EndpointIn(serializers.Serializer[Any]):
    endpoint = serializers.CharField(max_length=2048)


class SubscriptionOut(serializers.ModelSerializer[PushSubscription]):
    class Meta:
        model = PushSubscription
        fields = ("id", "endpoint", "created_at", "last_used_at")


# --- Views ------------------------------------------------------------------------------------


class CorsMixin:
    """Any origin may call these with a recipient token (see the module docstring)."""

    allowed_methods_header: ClassVar[str] = "GET, OPTIONS"

    def finalize_response(self, request: Request, response: Any, *args: Any, **kwargs: Any) -> Any:
        response = super().finalize_response(request, response, *args, **kwargs)  # type: ignore[misc]
        response["Access-Control-Allow-Origin"] = "*"
        response["Access-Control-Allow-Headers"] = "Authorization, Content-Type"
        response["Access-Control-Allow-Methods"] = self.allowed_methods_header
        response["Access-Control-Max-Age"] = "3600"
        return response


class IsEndUserOrPreflight(IsEndUser):
    """A CORS preflight carries no credentials; it learns nothing but the allowed headers."""

    def has_permission(self, request: Request, view: object) -> bool:
        return request.method == "OPTIONS" or super().has_permission(request, view)


class VapidPublicKey(CorsMixin, APIView):
    authentication_classes = ()
    permission_classes = (AllowAny,)

    @extend_schema(responses={200: {"type": "object", "properties": {"public_key": {"type": "string"}}}})
    def get(self, request: Request) -> Response:
        _require_tenant()
        public_key, _ = ensure_vapid_keys()
        response = Response({"public_key": public_key})
        response["Cache-Control"] = "public, max-age=300"
        return response


class Subscriptions(CorsMixin, APIView):
    authentication_classes = (RecipientTokenAuthentication,)
    permission_classes = (IsEndUserOrPreflight,)
    allowed_methods_header = "POST, DELETE, OPTIONS"

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        _require_tenant()
        super().initial(request, *args, **kwargs)

    def permission_denied(
        self, request: Request, message: str | None = None, code: str | None = None
    ) -> NoReturn:
        # No token at all: say which token (the API's own message talks about API keys).
        if request.successful_authenticator is None:
            raise exceptions.AuthenticationFailed(IsEndUser.message, code="not_authenticated")
        super().permission_denied(request, message, code)

    def end_user(self, request: Request) -> EndUser:
        assert isinstance(request.user, EndUser)
        return request.user

    @extend_schema(request=SubscriptionIn, responses={200: SubscriptionOut, 201: SubscriptionOut})
    def post(self, request: Request) -> Response:
        serializer = SubscriptionIn(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        # One browser, one subscription: a browser that signs in as someone else moves its
        # subscription to them, and a renewed key pair replaces the old one.
        fields = {
            "recipient": self.end_user(request).recipient,
            "p256dh": data["keys"]["p256dh"],
            "auth": data["keys"]["auth"],
            "user_agent": request.headers.get("User-Agent", "")[:255],
        }
        subscription, created = PushSubscription.objects.update_or_create(
            endpoint=data["endpoint"],
            defaults=fields,
            create_defaults={**fields, "created_at": timezone.now()},
        )
        return Response(
            SubscriptionOut(subscription).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )

    @extend_schema(request=EndpointIn, responses={204: None})
    def delete(self, request: Request) -> Response:
        source = request.data if isinstance(request.data, dict) and request.data else request.query_params
        serializer = EndpointIn(data={"endpoint": source.get("endpoint", "")})
        serializer.is_valid(raise_exception=True)
        deleted, _ = PushSubscription.objects.filter(
            recipient=self.end_user(request).recipient, endpoint=serializer.validated_data["endpoint"]
        ).delete()
        if not deleted:
            raise exceptions.NotFound("no push subscription with this endpoint for this recipient")
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- Scripts and the demo page --------------------------------------------------------------


def _static(name: str, content_type: str) -> HttpResponse:
    response = HttpResponse((STATIC_DIR / name).read_bytes(), content_type=content_type)
    # Browsers check a service worker for updates anyway; don't let a cache pin an old one.
    response["Cache-Control"] = "no-cache"
    return response


@require_GET
def service_worker(request: HttpRequest) -> HttpResponse:
    _require_tenant()
    response = _static("herald-sw.js", "application/javascript; charset=utf-8")
    # Lets a page register it for the whole origin (scope "/"), not only /u/push/.
    response["Service-Worker-Allowed"] = "/"
    # A tenant's own site loads it with importScripts() from a worker of its own origin.
    response["Access-Control-Allow-Origin"] = "*"
    return response


@require_GET
def snippet(request: HttpRequest) -> HttpResponse:
    _require_tenant()
    response = _static("herald-push.js", "application/javascript; charset=utf-8")
    response["Access-Control-Allow-Origin"] = "*"
    return response


@require_GET
def demo(request: HttpRequest) -> HttpResponse:
    """The snippet at work; the page reads its recipient token from ?token= itself."""
    _require_tenant()
    response = _static("demo.html", "text/html; charset=utf-8")
    response["Referrer-Policy"] = "no-referrer"  # the token is in the URL
    return response
