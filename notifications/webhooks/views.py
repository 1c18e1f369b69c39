"""Console pages for webhooks: endpoints (URL, filter, signing secret) and what was sent to them.

The signing secret is shown once: in the answer to the form that made it (creation, rotation),
never stored in a session and never shown again (the page is marked no-store). Everything else
only reads or changes rows of the current tenant's schema, so another tenant's ids are not found.
"""

import json

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Q
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from notifications.console.roles import ADMIN, can, console_view
from tenants.crypto import DecryptionError, mask

from . import service
from .forms import EndpointForm
from .models import Endpoint, MessageStatus, WebhookAttempt, WebhookMessage, new_secret

RECENT = 50


def can_manage(request: HttpRequest) -> bool:
    """Admins and owners change webhooks; viewers only look."""
    return can(request, ADMIN)


def _require_manage(request: HttpRequest) -> None:
    if not can_manage(request):
        raise PermissionDenied("Only an admin of this tenant can change webhooks.")


def _secret_page(request: HttpRequest, endpoint: Endpoint, secret: str, rotated: bool) -> HttpResponse:
    response = render(
        request,
        "console/webhooks/secret.html",
        {"endpoint": endpoint, "secret": secret, "rotated": rotated},
    )
    response["Cache-Control"] = "no-store"
    return response


@console_view()
def endpoint_list(request: HttpRequest) -> HttpResponse:
    endpoints = Endpoint.objects.annotate(
        pending=Count("messages", filter=Q(messages__status=MessageStatus.PENDING)),
        failed=Count("messages", filter=Q(messages__status=MessageStatus.FAILED)),
    ).order_by("created_at")
    return render(
        request,
        "console/webhooks/list.html",
        {"endpoints": endpoints, "can_manage": can_manage(request)},
    )


@console_view()
@never_cache
def endpoint_create(request: HttpRequest) -> HttpResponse:
    _require_manage(request)
    limit = int(settings.WEBHOOKS["max_endpoints"])
    form = EndpointForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        if Endpoint.objects.count() >= limit:
            form.add_error(None, f"A tenant can have at most {limit} endpoints; delete one first.")
        else:
            secret = new_secret()
            endpoint = Endpoint(
                url=form.cleaned_data["url"],
                description=form.cleaned_data["description"],
                statuses=form.cleaned_data["statuses"],
            )
            endpoint.set_secret(secret)
            endpoint.save()
            return _secret_page(request, endpoint, secret, rotated=False)
    return render(request, "console/webhooks/form.html", {"form": form}, status=400 if form.errors else 200)


@console_view()
def endpoint_detail(request: HttpRequest, pk: str) -> HttpResponse:
    endpoint = get_object_or_404(Endpoint, pk=pk)
    manage = can_manage(request)
    initial = {
        "url": endpoint.url,
        "description": endpoint.description,
        "statuses": endpoint.statuses,
        "is_active": endpoint.is_active,
    }
    form = EndpointForm(initial=initial, editing=True)
    status = 200
    if request.method == "POST":
        _require_manage(request)
        form = EndpointForm(request.POST, initial=initial, editing=True)
        if form.is_valid():
            endpoint.url = form.cleaned_data["url"]
            endpoint.description = form.cleaned_data["description"]
            endpoint.statuses = form.cleaned_data["statuses"]
            if form.cleaned_data["is_active"] and not endpoint.is_active:
                endpoint.disabled_reason = ""
            endpoint.is_active = form.cleaned_data["is_active"]
            endpoint.updated_at = timezone.now()
            endpoint.save()
            messages.success(request, "Endpoint saved.")
            return redirect("console:webhooks:detail", pk=endpoint.pk)
        status = 400
    recent = WebhookMessage.objects.filter(endpoint=endpoint).order_by("-id")[:RECENT]
    attempts = (
        WebhookAttempt.objects.filter(message__endpoint=endpoint)
        .select_related("message")
        .order_by("-id")[:RECENT]
    )
    previous_valid = bool(
        endpoint.previous_secret_expires_at and endpoint.previous_secret_expires_at > timezone.now()
    )
    context = {
        "endpoint": endpoint,
        "form": form,
        "can_manage": manage,
        "recent": recent,
        "attempts": attempts,
        "secret_hint": _secret_hint(endpoint),
        "previous_valid": previous_valid,
    }
    return render(request, "console/webhooks/detail.html", context, status=status)


def _secret_hint(endpoint: Endpoint) -> str:
    try:
        return mask(endpoint.secret)
    except DecryptionError:
        return "cannot be decrypted with the configured keys: rotate it"


@console_view()
@require_POST
@never_cache
def endpoint_rotate(request: HttpRequest, pk: str) -> HttpResponse:
    _require_manage(request)
    endpoint = get_object_or_404(Endpoint, pk=pk)
    grace = 0 if request.POST.get("expire_now") else int(settings.WEBHOOKS["previous_secret_grace"])
    secret = endpoint.rotate_secret(grace)
    endpoint.save()
    return _secret_page(request, endpoint, secret, rotated=True)


@console_view()
@require_POST
def endpoint_test(request: HttpRequest, pk: str) -> HttpResponseBase:
    _require_manage(request)
    endpoint = get_object_or_404(Endpoint, pk=pk)
    if not endpoint.is_active:
        messages.error(request, "The endpoint is off: turn it on to send a test event.")
    else:
        message = service.send_test_event(endpoint)
        messages.success(request, f"Test event {message.event_id} queued; its attempts appear below.")
    return redirect("console:webhooks:detail", pk=endpoint.pk)


@console_view()
def endpoint_delete(request: HttpRequest, pk: str) -> HttpResponseBase:
    _require_manage(request)
    endpoint = get_object_or_404(Endpoint, pk=pk)
    if request.method == "POST":
        service.delete_endpoint(endpoint)
        messages.success(request, f"Endpoint {endpoint.url} deleted.")
        return redirect("console:webhooks:list")
    count = WebhookMessage.objects.filter(endpoint=endpoint).count()
    return render(request, "console/webhooks/delete.html", {"endpoint": endpoint, "count": count})


@console_view()
def message_detail(request: HttpRequest, pk: str, message_id: int) -> HttpResponse:
    message = get_object_or_404(
        WebhookMessage.objects.select_related("endpoint"), pk=message_id, endpoint_id=pk
    )
    try:
        body = json.dumps(json.loads(message.body), indent=2, ensure_ascii=False)
    except ValueError:
        body = message.body
    return render(
        request,
        "console/webhooks/message.html",
        {
            "message": message,
            "endpoint": message.endpoint,
            "attempts": message.attempt_log.order_by("id"),
            "body": body,
            "can_manage": can_manage(request),
        },
    )


@console_view()
@require_POST
def message_resend(request: HttpRequest, pk: str, message_id: int) -> HttpResponseBase:
    _require_manage(request)
    message = get_object_or_404(WebhookMessage, pk=message_id, endpoint_id=pk)
    if message.status == MessageStatus.PENDING:
        messages.error(
            request, "This message is still being sent; it can be resent once it is delivered or failed."
        )
    else:
        service.resend(message)
        messages.success(request, "Sending it again, with a new round of retries.")
    return redirect("console:webhooks:message", pk=pk, message_id=message.id)
