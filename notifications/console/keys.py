"""The API keys page: the tenant's keys in the public schema, made and revoked from the console.

A new key is shown once, in the answer to the POST that made it (never stored, never in a
session, not cacheable); afterwards only its visible prefix is. Keys are always filtered by the
request's tenant, so another tenant's key id is simply not found. A revoked key fails the very
next request: the API looks keys up on every request (tenants.api_auth), there is no cache.
"""

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from tenants.models import ApiKey

from .roles import ADMIN, VIEWER, can, console_view


class KeyForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="Where it is used, e.g. 'billing backend'.")


def _page(
    request: HttpRequest, form: KeyForm | None = None, new_key: str = "", status: int = 200
) -> HttpResponse:
    tenant = request.tenant  # type: ignore[attr-defined]
    keys = ApiKey.objects.filter(tenant=tenant).order_by("revoked_at", "-created_at")
    context = {
        "keys": keys,
        "form": form or KeyForm(),
        "new_key": new_key,
        "is_admin": can(request, ADMIN),
        "api_base": f"{request.scheme}://{request.get_host()}/api/v1",
    }
    return render(request, "console/keys/keys.html", context, status=status)


@console_view(VIEWER)
def api_keys(request: HttpRequest) -> HttpResponse:
    return _page(request)


@never_cache  # the page that carries the new key must not be kept by a browser or a proxy
@require_POST
@console_view(ADMIN)
def create_key(request: HttpRequest) -> HttpResponse:
    form = KeyForm(request.POST)
    if not form.is_valid():
        return _page(request, form, status=400)
    _, raw_key = ApiKey.issue(request.tenant, name=form.cleaned_data["name"])  # type: ignore[attr-defined]
    return _page(request, KeyForm(), new_key=raw_key, status=201)


@require_POST
@console_view(ADMIN)
def revoke_key(request: HttpRequest, pk: int) -> HttpResponse:
    key = get_object_or_404(ApiKey, pk=pk, tenant=request.tenant)  # type: ignore[attr-defined]
    if key.revoked_at is None:
        key.revoke()
    messages.success(request, f"Key {key.name} (hk_{key.prefix}_…) is revoked: requests with it now get 401.")
    return redirect("console:api_keys")
