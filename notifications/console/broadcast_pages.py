"""Console: broadcasts with their progress (deliveries settled of those expected)."""

import uuid
from typing import Any

from django.core.cache import cache
from django.db.models import Count
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, render

from tenants.schemas import current_schema

from ..fanout import progress
from ..models import Broadcast, Delivery, DeliveryStatus
from .roles import console_view

PAGE_SIZE = 25
UNSETTLED = (DeliveryStatus.QUEUED, DeliveryStatus.SENDING)
STATUS_ORDER = list(DeliveryStatus.values)


def _expected(broadcast: Broadcast) -> int:
    return broadcast.recipient_count * len(broadcast.message.get("channels", []))


def summary(broadcast: Broadcast, by_status: dict[str, int]) -> dict[str, Any]:
    """What a row and the page show: counts, settled of expected, and whether it is complete."""
    expected = _expected(broadcast)
    settled = sum(n for status, n in by_status.items() if status not in UNSETTLED)
    percent = round(100 * settled / expected, 1) if expected else 0.0
    complete = broadcast.status == "fanned_out" and expected > 0 and settled >= expected
    return {
        "b": broadcast,
        "expected": expected,
        "settled": settled,
        "percent": min(percent, 100.0),
        "complete": complete or (broadcast.status == "fanned_out" and expected == 0),
        "by_status": [(s, by_status.get(s, 0)) for s in STATUS_ORDER],
        "channels": broadcast.message.get("channels", []),
        "subject": broadcast.message.get("subject") or broadcast.message.get("template_key") or "",
    }


# A finished broadcast's counts barely move (a late bounce, a retry), and counting one of
# 100,000 deliveries takes a tenth of a second: the list reuses them for a few minutes.
FINISHED_COUNTS_SECONDS = 300


def _counts(broadcasts: list[Broadcast]) -> dict[uuid.UUID, dict[str, int]]:
    """Deliveries per status of each broadcast: finished ones from the cache, the others (and
    those not cached) counted in one grouped query."""
    keys = {b.id: f"console:broadcast-counts:{current_schema()}:{b.id}" for b in broadcasts}
    cached: dict[str, dict[str, int]] = cache.get_many(list(keys.values())) if keys else {}
    counts: dict[uuid.UUID, dict[str, int]] = {b.id: cached.get(keys[b.id], {}) for b in broadcasts}
    wanted = [b.id for b in broadcasts if keys[b.id] not in cached]
    if wanted:
        grouped = (
            Delivery.objects.filter(notification__broadcast_id__in=wanted)
            .values_list("notification__broadcast_id", "status")
            .annotate(n=Count("id"))
        )
        for broadcast_id, status, n in grouped:
            counts[broadcast_id][status] = n
        finished = {
            keys[b.id]: counts[b.id]
            for b in broadcasts
            if b.id in wanted and summary(b, counts[b.id])["complete"]
        }
        if finished:
            cache.set_many(finished, timeout=FINISHED_COUNTS_SECONDS)
    return counts


@console_view()
def broadcast_list(request: HttpRequest) -> HttpResponse:
    try:
        page = max(1, int(request.GET.get("page", "1")))
    except ValueError:
        page = 1
    start = (page - 1) * PAGE_SIZE
    found = list(Broadcast.objects.order_by("-created_at")[start : start + PAGE_SIZE + 1])
    shown = found[:PAGE_SIZE]
    counts = _counts(shown)
    rows = [summary(b, counts[b.id]) for b in shown]
    context = {"rows": rows, "page": page, "has_next": len(found) > PAGE_SIZE}
    return render(request, "console/broadcast_list.html", context)


@console_view()
def broadcast_detail(request: HttpRequest, pk: uuid.UUID) -> HttpResponse:
    broadcast = get_object_or_404(Broadcast, pk=pk)
    body = progress(broadcast)
    row = summary(broadcast, body["deliveries"]["by_status"])
    context = {
        **row,
        "progress_row": row,
        "progress": body,
        "message": broadcast.message,
    }
    return render(request, "console/broadcast_detail.html", context)


@console_view()
def broadcast_progress(request: HttpRequest, pk: uuid.UUID) -> JsonResponse:
    """fanout.progress() as JSON: the page polls it when the live stream is down."""
    return JsonResponse(progress(get_object_or_404(Broadcast, pk=pk)))
