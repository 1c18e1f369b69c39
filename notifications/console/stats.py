"""The dashboard's figures: sends per channel and state over the last hour and day, and counters.

DeliveryEvent has no index on created_at (and this part may not add migrations), but its id
grows with time. So the first event of a window is found by a binary search over ids, each
probe one primary-key lookup, and each window is then one grouped query over a range of the
primary key: the cost follows the window's events, not the table's history.
"""

from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count, Max, Min
from django.db.models.functions import Trunc
from django.utils import timezone

from ..models import FAILED_STATUSES, Delivery, DeliveryEvent, DeliveryStatus, Notification

# The states the chart shows (`sending` is a step, not an outcome worth a bar).
CHART_STATUSES = ("queued", "sent", "delivered", "failed", "bounced", "suppressed")
WINDOWS = {
    "hour": ("minute", timedelta(minutes=1), 60),
    "day": ("hour", timedelta(hours=1), 24),
}


def first_event_id_since(since: datetime) -> int | None:
    """The id of the first event at or after `since` (None if there is none)."""
    bounds = DeliveryEvent.objects.aggregate(lo=Min("id"), hi=Max("id"))
    lo, hi = bounds["lo"], bounds["hi"]
    if hi is None:
        return None
    last = DeliveryEvent.objects.filter(id=hi).values_list("created_at", flat=True).first()
    if last is None or last < since:
        return None
    while lo < hi:
        mid = (lo + hi) // 2
        probe = DeliveryEvent.objects.filter(id__gte=mid).order_by("id").values_list("id", "created_at")[:1]
        event_id, created_at = probe[0]
        if created_at >= since:
            hi = mid
        else:
            lo = event_id + 1
    return int(lo)


def _floor(moment: datetime, unit: str) -> datetime:
    moment = moment.replace(second=0, microsecond=0)
    return moment.replace(minute=0) if unit == "hour" else moment


def series(window: str, now: datetime | None = None) -> dict[str, Any]:
    """Event counts per bucket, channel and status over `window` ("hour": per minute over the
    last 60 minutes; "day": per hour over the last 24 hours), the current bucket included."""
    unit, step, count = WINDOWS[window]
    now = now or timezone.now()
    start = _floor(now, unit) - step * (count - 1)
    rows: list[list[Any]] = []
    first = first_event_id_since(start)
    if first is not None:
        grouped = (
            DeliveryEvent.objects.filter(id__gte=first, created_at__gte=start)
            .annotate(bucket=Trunc("created_at", unit))
            .values_list("bucket", "delivery__channel", "status")
            .annotate(n=Count("id"))
        )
        for bucket, channel, status, n in grouped:
            index = int((bucket - start) / step)
            if 0 <= index < count:
                rows.append([index, channel, status, n])
    return {
        "start": int(start.timestamp() * 1000),
        "step": int(step.total_seconds() * 1000),
        "count": count,
        "rows": rows,
    }


def dashboard(now: datetime | None = None) -> dict[str, Any]:
    """Everything the dashboard draws, as JSON: both windows, the counters, where today began."""
    now = now or timezone.now()
    midnight = timezone.localtime(now).replace(hour=0, minute=0, second=0, microsecond=0)
    hour, day = series("hour", now), series("day", now)
    return {
        "now": int(now.timestamp() * 1000),
        "midnight": int(midnight.timestamp() * 1000),
        "hour": hour,
        "day": day,
        "counters": counters(hour, day, midnight),
        "gauges": gauges(midnight),
    }


def _sum(window: dict[str, Any], statuses: set[str], since_ms: int | None = None) -> int:
    total = 0
    for index, _channel, status, n in window["rows"]:
        if status in statuses and (since_ms is None or window["start"] + index * window["step"] >= since_ms):
            total += n
    return total


COUNTED: dict[str, set[str]] = {
    "sent": {DeliveryStatus.SENT},
    "delivered": {DeliveryStatus.DELIVERED},
    "failed": {str(s) for s in FAILED_STATUSES},
    "suppressed": {DeliveryStatus.SUPPRESSED},
}


def counters(hour: dict[str, Any], day: dict[str, Any], midnight: datetime) -> dict[str, dict[str, int]]:
    """Events of each kind today and in the last hour (from the windows already counted)."""
    midnight_ms = int(midnight.timestamp() * 1000)
    return {
        name: {"today": _sum(day, statuses, midnight_ms), "hour": _sum(hour, statuses)}
        for name, statuses in COUNTED.items()
    }


def gauges(midnight: datetime) -> dict[str, int]:
    """What is in flight now (the (status, updated_at) index answers these) and today's count."""
    in_flight = dict(
        Delivery.objects.filter(status__in=[DeliveryStatus.QUEUED, DeliveryStatus.SENDING])
        .values_list("status")
        .annotate(n=Count("id"))
        .values_list("status", "n")
    )
    return {
        "queued": in_flight.get(DeliveryStatus.QUEUED, 0),
        "sending": in_flight.get(DeliveryStatus.SENDING, 0),
        "notifications_today": Notification.objects.filter(created_at__gte=midnight).count(),
    }


def recent_failures(limit: int = 8) -> list[Delivery]:
    return list(
        Delivery.objects.filter(status__in=FAILED_STATUSES)
        .select_related("notification__recipient")
        .order_by("-updated_at")[:limit]
    )
