"""The dashboard's figures: sends per channel and state over the last hour and day, and counters.

DeliveryEvent has no index on created_at (and this part may not add migrations), but its id
grows with time. So the first event of a range is found by a binary search over ids, each
probe one primary-key lookup, and a range is then one grouped query over a range of the
primary key: the cost follows the range's events, not the table's history.

A bucket that has ended does not change, so its counts are cached (per tenant) once read: a
dashboard load counts only the open minute or two and whatever closed buckets nobody has read
yet, instead of a whole day of events each time.
"""

from datetime import datetime, timedelta
from typing import Any

from django.core.cache import cache
from django.db.models import Count, Max, Min
from django.db.models.functions import Trunc
from django.utils import timezone

from tenants.schemas import current_schema

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


# A bucket is closed (its count cached for good) once it ended this long ago: events are
# committed within moments of their created_at, so later rows in a closed bucket are rare.
CLOSED_AFTER = timedelta(seconds=60)
CACHE_SECONDS = 26 * 3600


def _count(unit: str, since: datetime, until: datetime | None) -> dict[datetime, list[list[Any]]]:
    """One grouped query: [channel, status, n] per `unit` bucket of events in [since, until)."""
    found: dict[datetime, list[list[Any]]] = {}
    # Ids follow commit order and created_at is set just before: start the id range a little
    # early so that an event committed a moment after a newer one is not skipped.
    first = first_event_id_since(since - CLOSED_AFTER)
    if first is None:
        return found
    events = DeliveryEvent.objects.filter(id__gte=first, created_at__gte=since)
    if until is not None:
        events = events.filter(created_at__lt=until)
    grouped = (
        events.annotate(bucket=Trunc("created_at", unit))
        .values_list("bucket", "delivery__channel", "status")
        .annotate(n=Count("id"))
    )
    for bucket, channel, status, n in grouped:
        found.setdefault(bucket, []).append([channel, status, n])
    return found


def _buckets(unit: str, step: timedelta, start: datetime, count: int, now: datetime) -> list[list[list[Any]]]:
    """Each bucket's [channel, status, n] rows. Closed buckets come from the cache (those missing
    are counted by one query over their range and cached); the open ones by one query."""
    starts = [start + step * i for i in range(count)]
    closed = [b for b in starts if b + step <= now - CLOSED_AFTER]
    keys = {b: f"console:events:{current_schema()}:{unit}:{int(b.timestamp())}" for b in closed}
    cached: dict[str, list[list[Any]]] = cache.get_many(list(keys.values())) if keys else {}
    missing = [b for b in closed if keys[b] not in cached]
    rows: dict[datetime, list[list[Any]]] = {b: cached[keys[b]] for b in closed if keys[b] in cached}
    if missing:
        counted = _count(unit, missing[0], missing[-1] + step)
        fresh = {b: counted.get(b, []) for b in missing}
        rows.update(fresh)
        cache.set_many({keys[b]: v for b, v in fresh.items()}, timeout=CACHE_SECONDS)
    open_from = next((b for b in starts if b not in rows), None)
    if open_from is not None:
        rows.update(_count(unit, open_from, None))
    return [rows.get(b, []) for b in starts]


def _window(start: datetime, step: timedelta, buckets: list[list[list[Any]]]) -> dict[str, Any]:
    return {
        "start": int(start.timestamp() * 1000),
        "step": int(step.total_seconds() * 1000),
        "count": len(buckets),
        "rows": [[i, channel, status, n] for i, rows in enumerate(buckets) for channel, status, n in rows],
    }


def series(window: str, now: datetime | None = None) -> dict[str, Any]:
    """Event counts per bucket, channel and status over `window` ("hour": per minute over the
    last 60 minutes; "day": per hour over the last 24 hours), the current bucket included."""
    unit, step, count = WINDOWS[window]
    now = now or timezone.now()
    start = _floor(now, unit) - step * (count - 1)
    return _window(start, step, _buckets(unit, step, start, count, now))


def both_windows(now: datetime) -> tuple[dict[str, Any], dict[str, Any]]:
    """The hour and the day windows; the day's current hour is summed from the hour's minutes
    (already counted), so no query ever reads more than the open minutes and the closed buckets
    not cached yet."""
    m_unit, m_step, m_count = WINDOWS["hour"]
    m_start = _floor(now, m_unit) - m_step * (m_count - 1)
    minutes = _buckets(m_unit, m_step, m_start, m_count, now)
    h_unit, h_step, h_count = WINDOWS["day"]
    this_hour = _floor(now, h_unit)
    h_start = this_hour - h_step * (h_count - 1)
    hours = _buckets(h_unit, h_step, h_start, h_count - 1, now) if h_count > 1 else []
    current: dict[tuple[str, str], int] = {}
    for i, rows in enumerate(minutes):
        if m_start + m_step * i >= this_hour:
            for channel, status, n in rows:
                current[(channel, status)] = current.get((channel, status), 0) + n
    hours.append([[channel, status, n] for (channel, status), n in current.items()])
    return _window(m_start, m_step, minutes), _window(h_start, h_step, hours)


def dashboard(now: datetime | None = None) -> dict[str, Any]:
    """Everything the dashboard draws, as JSON: both windows, the counters, where today began."""
    now = now or timezone.now()
    midnight = timezone.localtime(now).replace(hour=0, minute=0, second=0, microsecond=0)
    hour, day = both_windows(now)
    gauges_now = gauges(midnight)
    # Read after the figures: the page skips live events up to this id (the stream replays some
    # it has already counted), so an event committed while they were read is left to the next
    # re-read rather than counted twice.
    last_event = DeliveryEvent.objects.aggregate(last=Max("id"))["last"] or 0
    return {
        "last_event": last_event,
        "now": int(now.timestamp() * 1000),
        "midnight": int(midnight.timestamp() * 1000),
        "hour": hour,
        "day": day,
        "counters": counters(hour, day, midnight),
        "gauges": gauges_now,
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
    """The newest failed and bounced deliveries: one query per status, each reading the newest
    few from the (status, updated_at) index, rather than sorting every failure ever."""
    found: list[Delivery] = []
    for status in sorted(FAILED_STATUSES):
        found += (
            Delivery.objects.filter(status=status)
            .select_related("notification__recipient")
            .order_by("-updated_at")[:limit]
        )
    found.sort(key=lambda d: d.updated_at, reverse=True)
    return found[:limit]
