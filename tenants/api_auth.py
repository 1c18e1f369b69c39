"""Bearer API keys: the key names the tenant, and the request switches to its schema.

On a tenant's own domain the key must belong to that tenant (403 otherwise); on a host that
names no tenant (the bare API host) the key alone decides the tenant.

Every API request needs its key, so keys (with their tenant) are kept per process
(`tenants.process_cache`), found by their public prefix; the secret is checked against the
stored hash on every request all the same. The cache shares the tenant cache's generation: a
save or delete of a key or a tenant (revoking a key, suspending a tenant) drops it in this
process at once and in every other within TENANT_CACHE_CHECK_INTERVAL seconds (tenants.signals),
and an entry is read again from the database after KEY_CACHE_MAX_AGE seconds in any case.
"""

import hmac
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from django.utils import timezone
from django_tenants.utils import get_public_schema_name
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from .models import ApiKey, Tenant
from .process_cache import ProcessCache
from .registry import GENERATION_KEY
from .schemas import use_tenant

if TYPE_CHECKING:  # rest_framework.views imports this module through its settings
    from rest_framework.views import APIView

LAST_USED_RESOLUTION = timedelta(minutes=1)  # write last_used_at at most once a minute per key
KEY_CACHE_MAX_AGE = 30.0  # seconds; the generation counter normally drops an entry much sooner

# Active keys by prefix, with their tenant (select_related): the same objects serve many requests.
_keys: ProcessCache[str, ApiKey] = ProcessCache(GENERATION_KEY, max_age=KEY_CACHE_MAX_AGE)


@receiver(post_save, sender=ApiKey)
@receiver(post_delete, sender=ApiKey)
@receiver(post_save, sender=Tenant)
@receiver(post_delete, sender=Tenant)
def _forget_cached_keys(sender: Any, **kwargs: Any) -> None:
    """At once in this process, even before commit (tenants.signals tells the others after it)."""
    _keys.clear()


@dataclass(frozen=True)
class ApiClient:
    """The authenticated caller: a tenant backend holding one API key."""

    tenant: Tenant
    key: ApiKey
    is_authenticated: bool = True


class ApiKeyAuthentication(BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[ApiClient, ApiKey] | None:
        header = get_authorization_header(request).split()
        if not header:
            return None
        if header[0].decode(errors="replace").lower() != self.keyword.lower() or len(header) != 2:
            raise exceptions.AuthenticationFailed(
                "Authorization header must be 'Bearer <api key>'.", code="malformed_authorization"
            )
        raw_key = header[1].decode(errors="replace")
        key = self._find_key(raw_key)
        tenant = key.tenant
        host_tenant = getattr(request._request, "tenant", None)
        on_tenant_host = host_tenant is not None and host_tenant.schema_name != get_public_schema_name()
        if on_tenant_host and getattr(host_tenant, "pk", None) != tenant.pk:
            raise exceptions.PermissionDenied(
                "This API key belongs to another tenant: use it on that tenant's domain or on the API host.",
                code="wrong_tenant",
            )
        if not tenant.is_active:
            raise exceptions.PermissionDenied("This tenant is suspended.", code="tenant_suspended")
        use_tenant(tenant)
        request._request.tenant = tenant  # type: ignore[attr-defined]
        self._touch(key)
        return ApiClient(tenant=tenant, key=key), key

    def authenticate_header(self, request: Request) -> str:
        return f'{self.keyword} realm="api"'

    @staticmethod
    def _find_key(raw_key: str) -> ApiKey:
        invalid = exceptions.AuthenticationFailed("Invalid API key.", code="invalid_api_key")
        parts = raw_key.split("_")
        if len(parts) < 3 or parts[0] != "hk":
            raise invalid
        prefix = parts[1]
        key = _keys.get_or_load(
            prefix, lambda: ApiKey.objects.active().select_related("tenant").filter(prefix=prefix).first()
        )
        if key is None or not hmac.compare_digest(key.key_hash, ApiKey.hash_key(raw_key)):
            raise invalid
        return key

    @staticmethod
    def _touch(key: ApiKey) -> None:
        now = timezone.now()
        if key.last_used_at is None or now - key.last_used_at > LAST_USED_RESOLUTION:
            ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
            key.last_used_at = now  # the cached key: this process writes again a minute from now


class HasTenantApiKey(BasePermission):
    message = "Authentication required: send 'Authorization: Bearer <api key>'."

    def has_permission(self, request: Request, view: "APIView") -> bool:
        return isinstance(request.user, ApiClient)


def request_tenant(request: Any) -> Tenant:
    client = request.user
    assert isinstance(client, ApiClient)
    return client.tenant
