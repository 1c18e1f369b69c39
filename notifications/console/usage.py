"""The usage page: the tenant's send and API rate limits, and its deliveries today and this month.

Limits are the ones the workers and the API enforce (tasks.send_limit, throttling.limit_for), read
from the same functions, so the page can't drift from what is applied. There is no billing plan
yet, so no plan quota is shown: the page says so rather than inventing one.
"""

from dataclasses import dataclass
from datetime import datetime

from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone

from tenants.api_auth import ApiClient
from tenants.models import ApiKey

from ..api.throttling import limit_for
from ..models import Channel, Delivery, DeliveryStatus
from ..tasks import send_limit
from .roles import VIEWER, console_view


@dataclass
class SendLimit:
    channel: str
    rate: float
    burst: int
    own: bool  # the tenant's own override, not the platform's default


@dataclass
class UsageRow:
    channel: str
    counts: list[int]  # in the order of DeliveryStatus.values
    total: int


def usage_table(since: datetime) -> tuple[list[UsageRow], list[int], int]:
    """Deliveries created since `since`, per channel and status: one grouped query."""
    counts = {
        (channel, status): n
        for channel, status, n in Delivery.objects.filter(created_at__gte=since)
        .values_list("channel", "status")
        .annotate(n=Count("id"))
        .order_by()
    }
    rows = []
    for channel in Channel.values:
        per_status = [counts.get((channel, status), 0) for status in DeliveryStatus.values]
        rows.append(UsageRow(channel, per_status, sum(per_status)))
    column_totals = [sum(r.counts[i] for r in rows) for i in range(len(DeliveryStatus.values))]
    return rows, column_totals, sum(column_totals)


@console_view(VIEWER)
def usage(request: HttpRequest) -> HttpResponse:
    tenant = request.tenant  # type: ignore[attr-defined]
    own = tenant.rate_limits or {}
    send_limits = [SendLimit(c, *send_limit(c), own=bool(own.get(c))) for c in Channel.values]
    keys = ApiKey.objects.active().filter(tenant=tenant).order_by("created_at")
    api_limits = [(key, limit_for(ApiClient(tenant=tenant, key=key))) for key in keys]
    now = timezone.now()
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    month = today.replace(day=1)
    periods = []
    for label, since in (("Today", today), ("This month", month)):
        rows, totals, total = usage_table(since)
        periods.append({"label": label, "since": since, "rows": rows, "totals": totals, "total": total})
    context = {
        "send_limits": send_limits,
        "api_limits": api_limits,
        "statuses": DeliveryStatus.values,
        "periods": periods,
        "now": now,
    }
    return render(request, "console/usage/usage.html", context)
