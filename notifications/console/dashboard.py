"""Console: the dashboard (counters, sends per channel and state, recent failures)."""

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

from ..models import Channel
from . import stats
from .roles import ADMIN, can, console_view

COUNTER_LABELS = {"sent": "Sent", "delivered": "Delivered", "failed": "Failed", "suppressed": "Suppressed"}


@console_view()
def dashboard(request: HttpRequest) -> HttpResponse:
    data = stats.dashboard()
    counters = [
        {"key": key, "label": label, **data["counters"][key]} for key, label in COUNTER_LABELS.items()
    ]
    has_any = bool(data["day"]["rows"]) or data["gauges"]["queued"] or data["gauges"]["sending"]
    return render(
        request,
        "console/dashboard.html",
        {
            "data": data,
            "counters": counters,
            "gauges": data["gauges"],
            "failures": stats.recent_failures(),
            "may_retry": can(request, ADMIN),
            "channels": Channel.values,
            "has_any": has_any,
        },
    )


@console_view()
def dashboard_data(request: HttpRequest) -> JsonResponse:
    """The same figures as JSON: the page re-reads them now and then to correct its live sums."""
    return JsonResponse(stats.dashboard())


@console_view()
def failures(request: HttpRequest) -> HttpResponse:
    context = {"failures": stats.recent_failures(), "may_retry": can(request, ADMIN)}
    return render(request, "console/_failures.html", context)
