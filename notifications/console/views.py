"""The tenant console (first slice): sign in, recent notifications, one notification's timeline.

Served only on a tenant's own domain. Users, sessions and data all live in the tenant's schema,
so a session or a user of one tenant means nothing on another tenant's domain.
"""

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase
from django.shortcuts import get_object_or_404, render
from django_tenants.utils import get_public_schema_name

from ..api.views import notifications_with_timeline
from ..models import DeliveryStatus, Notification

View = Callable[..., HttpResponseBase]


def tenant_host_only(view: View) -> View:
    """The console exists on tenant domains only; on the API host it is not found."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        tenant = getattr(request, "tenant", None)
        if tenant is None or tenant.schema_name == get_public_schema_name():
            raise Http404("The console is on your tenant's own domain.")
        return view(request, *args, **kwargs)

    return wrapper


class LoginView(auth_views.LoginView):
    template_name = "console/login.html"
    redirect_authenticated_user = True


login = tenant_host_only(LoginView.as_view())
logout = tenant_host_only(auth_views.LogoutView.as_view(next_page="console:login"))


@tenant_host_only
@login_required(login_url="console:login")
def notification_list(request: HttpRequest) -> HttpResponse:
    status = request.GET.get("status", "")
    notifications = notifications_with_timeline().order_by("-created_at")
    if status in DeliveryStatus.values:
        notifications = notifications.filter(deliveries__status=status).distinct()
    page = Paginator(notifications, 50).get_page(request.GET.get("page"))
    rows = [(n, Notification.summarize([d.status for d in n.deliveries.all()])) for n in page]
    return render(
        request,
        "console/notification_list.html",
        {"page": page, "rows": rows, "status": status, "statuses": DeliveryStatus.values},
    )


@tenant_host_only
@login_required(login_url="console:login")
def notification_detail(request: HttpRequest, pk: str) -> HttpResponse:
    notification = get_object_or_404(notifications_with_timeline(), pk=pk)
    summary = Notification.summarize([d.status for d in notification.deliveries.all()])
    return render(request, "console/notification_detail.html", {"n": notification, "summary": summary})
