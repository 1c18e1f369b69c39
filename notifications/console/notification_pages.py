"""Console: the notifications list (filters, search, live rows) and one notification's page
(deliveries, a timeline of events and attempts, retry of failed deliveries)."""

import uuid
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from django.contrib import messages
from django.db.models import Exists, OuterRef, Prefetch, Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from .. import pipeline
from ..models import (
    Channel,
    Delivery,
    DeliveryAttempt,
    DeliveryEvent,
    DeliveryStatus,
    Notification,
)
from .roles import ADMIN, can, console_view

PAGE_SIZE = 50
MAX_ROWS_PER_FETCH = 50


@dataclass
class Filters:
    channel: str = ""
    status: str = ""
    recipient: str = ""
    since: date | None = None
    until: date | None = None
    q: str = ""
    errors: dict[str, str] | None = None

    @classmethod
    def read(cls, params: Any) -> "Filters":
        errors: dict[str, str] = {}
        channel = params.get("channel", "").strip()
        if channel and channel not in Channel.values:
            errors["channel"] = f"channel must be one of {', '.join(Channel.values)}"
            channel = ""
        status = params.get("status", "").strip()
        if status and status not in DeliveryStatus.values:
            errors["status"] = f"status must be one of {', '.join(DeliveryStatus.values)}"
            status = ""
        dates: dict[str, date | None] = {}
        for name in ("since", "until"):
            raw = params.get(name, "").strip()
            dates[name] = None
            if raw:
                try:
                    dates[name] = date.fromisoformat(raw)
                except ValueError:
                    errors[name] = f"{name}: a date like 2026-11-28, not {raw[:40]!r}"
        return cls(
            channel=channel,
            status=status,
            recipient=params.get("recipient", "").strip()[:255],
            since=dates["since"],
            until=dates["until"],
            q=params.get("q", "").strip()[:200],
            errors=errors or None,
        )

    @property
    def active(self) -> bool:
        return bool(self.channel or self.status or self.recipient or self.since or self.until or self.q)

    def query(self) -> str:
        """The filters as a query string (for pagination links and the live row fetches)."""
        from urllib.parse import urlencode

        pairs = {
            "channel": self.channel,
            "status": self.status,
            "recipient": self.recipient,
            "since": self.since.isoformat() if self.since else "",
            "until": self.until.isoformat() if self.until else "",
            "q": self.q,
        }
        return urlencode({k: v for k, v in pairs.items() if v})

    def admits_new(self) -> bool:
        """Whether a notification created now can match: no date range that has ended."""
        return self.until is None or self.until >= timezone.localdate()

    def apply(self, notifications: QuerySet[Notification]) -> QuerySet[Notification]:
        if self.channel or self.status:
            matching = Delivery.objects.filter(notification=OuterRef("pk"))
            if self.channel:
                matching = matching.filter(channel=self.channel)
            if self.status:
                matching = matching.filter(status=self.status)
            notifications = notifications.filter(Exists(matching))
        if self.recipient:
            r = self.recipient
            by_address = Delivery.objects.filter(notification=OuterRef("pk"), address=r)
            notifications = notifications.filter(
                Q(recipient__external_id=r)
                | Q(recipient__email__iexact=r)
                | Q(recipient__phone=r)
                | Exists(by_address)
            )
        if self.since:
            notifications = notifications.filter(created_at__gte=_day_start(self.since))
        if self.until:
            notifications = notifications.filter(created_at__lt=_day_start(self.until + timedelta(days=1)))
        if self.q:
            q = self.q
            notifications = notifications.filter(
                Q(subject__icontains=q)
                | Q(body__icontains=q)
                | Q(template_key__icontains=q)
                | Q(recipient__external_id__icontains=q)
                | Q(recipient__email__icontains=q)
            )
        return notifications


def _day_start(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min))


def listed() -> QuerySet[Notification]:
    """Notifications with what a row shows: recipient and each delivery's channel and status."""
    return Notification.objects.select_related("recipient").prefetch_related(
        Prefetch(
            "deliveries",
            queryset=Delivery.objects.only("id", "notification_id", "channel", "status", "address").order_by(
                "created_at", "channel"
            ),
        )
    )


def rows_of(notifications: list[Notification]) -> list[dict[str, Any]]:
    return [
        {"n": n, "summary": Notification.summarize([d.status for d in n.deliveries.all()])}
        for n in notifications
    ]


@console_view()
def notification_list(request: HttpRequest) -> HttpResponse:
    filters = Filters.read(request.GET)
    try:
        page = max(1, int(request.GET.get("page", "1")))
    except ValueError:
        page = 1
    start = (page - 1) * PAGE_SIZE
    # No COUNT(*) over the whole table: one row more than a page says whether there is a next.
    found = list(filters.apply(listed()).order_by("-created_at", "-id")[start : start + PAGE_SIZE + 1])
    context = {
        "rows": rows_of(found[:PAGE_SIZE]),
        "filters": filters,
        "page": page,
        "has_next": len(found) > PAGE_SIZE,
        "live_new": page == 1 and filters.admits_new(),
        "channels": Channel.values,
        "statuses": DeliveryStatus.values,
        "anything_sent": Notification.objects.exists(),
    }
    return render(request, "console/notification_list.html", context)


@console_view()
def notification_rows(request: HttpRequest) -> HttpResponse:
    """The rows of the given notifications that match the filters (for rows added live)."""
    ids = []
    for raw in request.GET.getlist("id")[:MAX_ROWS_PER_FETCH]:
        try:
            ids.append(uuid.UUID(raw))
        except ValueError:
            continue
    filters = Filters.read(request.GET)
    found = list(filters.apply(listed()).filter(id__in=ids).order_by("-created_at", "-id")) if ids else []
    if not found:
        return HttpResponse(status=204)
    return render(request, "console/_notification_rows.html", {"rows": rows_of(found)})


@console_view()
def notification_row(request: HttpRequest, pk: uuid.UUID) -> HttpResponse:
    """One notification's row; 204 if it doesn't match the filters given."""
    notification = get_object_or_404(listed(), pk=pk)
    if not Filters.read(request.GET).apply(Notification.objects.filter(pk=pk)).exists():
        return HttpResponse(status=204)
    return render(request, "console/_notification_rows.html", {"rows": rows_of([notification])})


def with_timeline() -> QuerySet[Notification]:
    return Notification.objects.select_related("recipient", "broadcast").prefetch_related(
        Prefetch(
            "deliveries",
            queryset=Delivery.objects.order_by("created_at", "channel").prefetch_related(
                Prefetch("events", queryset=DeliveryEvent.objects.order_by("id")),
                Prefetch("attempt_log", queryset=DeliveryAttempt.objects.order_by("id")),
            ),
        )
    )


def timeline(delivery: Delivery) -> list[dict[str, Any]]:
    """Events and provider attempts of a delivery, merged in time order."""
    items: list[dict[str, Any]] = [
        {"kind": "event", "at": e.created_at, "order": (e.created_at, 1, e.id), "event": e}
        for e in delivery.events.all()
    ]
    items += [
        {"kind": "attempt", "at": a.started_at, "order": (a.started_at, 0, a.id), "attempt": a}
        for a in delivery.attempt_log.all()
    ]
    items.sort(key=lambda item: item["order"])
    return items


def _detail_context(request: HttpRequest, notification: Notification) -> dict[str, Any]:
    deliveries = [
        {"d": d, "timeline": timeline(d), "retriable": d.retriable} for d in notification.deliveries.all()
    ]
    return {
        "n": notification,
        "summary": Notification.summarize([d.status for d in notification.deliveries.all()]),
        "deliveries": deliveries,
        "any_retriable": any(item["retriable"] for item in deliveries),
        "may_retry": can(request, ADMIN),
    }


@console_view()
def notification_detail(request: HttpRequest, pk: uuid.UUID) -> HttpResponse:
    notification = get_object_or_404(with_timeline(), pk=pk)
    return render(request, "console/notification_detail.html", _detail_context(request, notification))


@console_view()
def notification_deliveries(request: HttpRequest, pk: uuid.UUID) -> HttpResponse:
    """The deliveries section alone, for the page to refresh when events arrive."""
    notification = get_object_or_404(with_timeline(), pk=pk)
    return render(request, "console/_deliveries.html", _detail_context(request, notification))


@require_POST
@console_view(ADMIN)
def notification_retry(request: HttpRequest, pk: uuid.UUID) -> HttpResponse:
    """Retry the failed deliveries named (`delivery`), or all of them (`all`)."""
    notification = get_object_or_404(Notification, pk=pk)
    deliveries = Delivery.objects.filter(notification=notification)
    if not request.POST.get("all"):
        wanted = []
        for raw in request.POST.getlist("delivery"):
            try:
                wanted.append(uuid.UUID(raw))
            except ValueError:
                continue
        deliveries = deliveries.filter(id__in=wanted)
    by = getattr(request.user, "email", "") or request.user.get_username()
    moved = pipeline.retry(deliveries.values_list("id", flat=True), by=by)
    if moved:
        messages.success(request, f"{len(moved)} deliver{'y' if len(moved) == 1 else 'ies'} queued again.")
    else:
        messages.error(
            request,
            "Nothing to retry: only failed deliveries that reached a provider (and whose content "
            "still exists) can be retried.",
        )
    return HttpResponseRedirect(reverse("console:notification", args=[notification.pk]))
