"""HTTP middleware of the tenants package."""

from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django_tenants.middleware import main

from .hosts import tenant_for_host
from .models import Tenant


class SuspendedTenantMiddleware:
    """A suspended tenant's domain serves nothing: API, console and end-user pages all answer 403.

    (django-tenants resolves a domain whether or not its tenant is active.)
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        tenant = getattr(request, "tenant", None)
        if tenant is not None and not getattr(tenant, "is_active", True):
            message = "This account is suspended."
            if request.path.startswith(("/api/", "/u/", "/hooks/")):
                return JsonResponse({"error": {"code": "tenant_suspended", "message": message}}, status=403)
            return render(request, "tenants/suspended.html", {"message": message}, status=403)
        return self.get_response(request)


class TenantMainMiddleware(main.TenantMainMiddleware):  # type: ignore[misc]  # no types shipped
    """django-tenants' middleware, with the host name's tenant cached per process (tenants.hosts).

    Everything else is django-tenants' own: public schema first, the tenant's schema when a domain
    names one, else the public URLs (SHOW_PUBLIC_IF_NO_TENANT_FOUND).
    """

    def get_tenant(self, domain_model: Any, hostname: str) -> Tenant:
        tenant = tenant_for_host(hostname)
        if tenant is None:
            raise domain_model.DoesNotExist
        return tenant
