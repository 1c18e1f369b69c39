"""The tenant console (first slice): sign in, recent notifications, one notification's timeline.

Served only on a tenant's own domain. Users, sessions and data all live in the tenant's schema,
so a session or a user of one tenant means nothing on another tenant's domain.
"""

from collections.abc import Callable

from django.contrib.auth import views as auth_views
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.shortcuts import get_object_or_404, render

from ..api.views import notifications_with_timeline
from ..models import DeliveryStatus, Notification
from .roles import console_view, tenant_host_only

View = Callable[..., HttpResponseBase]


class LoginView(auth_views.LoginView):
    template_name = "console/login.html"
    redirect_authenticated_user = True


login = tenant_host_only(LoginView.as_view())
logout = tenant_host_only(auth_views.LogoutView.as_view(next_page="console:login"))


@console_view()
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


@console_view()
def notification_detail(request: HttpRequest, pk: str) -> HttpResponse:
    notification = get_object_or_404(notifications_with_timeline(), pk=pk)
    summary = Notification.summarize([d.status for d in notification.deliveries.all()])
    return render(request, "console/notification_detail.html", {"n": notification, "summary": summary})
