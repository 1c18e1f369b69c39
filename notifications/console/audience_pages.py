"""Console: recipients (search, one recipient's notifications, preferences and push
subscriptions) and topics (subscriber counts, subscribers, adding and removing them).

Topic changes follow the API's rules (notifications/api/broadcasts_api.py): recipients are
checked by recipients.check_recipients and upserted by external id; a topic key is a slug and
unique.
"""

import re
import uuid

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Count, Q
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from ..api.broadcasts_api import MAX_SUBSCRIBERS_PER_CALL, TopicSerializer
from ..models import Channel, Notification, Recipient, Topic, TopicSubscription
from ..pipeline import upsert_recipients
from ..preferences.service import preference_table
from ..recipients import check_recipients, spec_of
from .notification_pages import listed, rows_of
from .roles import ADMIN, can, console_view

PAGE_SIZE = 50


def _page(request: HttpRequest) -> int:
    try:
        return max(1, int(request.GET.get("page", "1")))
    except ValueError:
        return 1


@console_view()
def recipient_list(request: HttpRequest) -> HttpResponse:
    q = request.GET.get("q", "").strip()[:255]
    page = _page(request)
    # By external id: its unique index serves the order (created_at has none to sort by).
    recipients = Recipient.objects.order_by("external_id")
    if q:
        recipients = recipients.filter(
            Q(external_id__icontains=q) | Q(email__icontains=q) | Q(phone__icontains=q)
        )
    start = (page - 1) * PAGE_SIZE
    found = list(recipients[start : start + PAGE_SIZE + 1])
    context = {
        "recipients": found[:PAGE_SIZE],
        "q": q,
        "page": page,
        "has_next": len(found) > PAGE_SIZE,
        "anyone": bool(found) or Recipient.objects.exists(),
    }
    return render(request, "console/recipient_list.html", context)


@console_view()
def recipient_detail(request: HttpRequest, pk: uuid.UUID) -> HttpResponse:
    recipient = get_object_or_404(Recipient, pk=pk)
    notifications = list(listed().filter(recipient=recipient).order_by("-created_at")[:25])
    context = {
        "r": recipient,
        "rows": rows_of(notifications),
        "preferences": preference_table(recipient),
        "channels": Channel.values,
        "push_subscriptions": recipient.push_subscriptions.count(),
        "topics": Topic.objects.filter(subscriptions__recipient=recipient).order_by("key"),
        "total": Notification.objects.filter(recipient=recipient).count(),
    }
    return render(request, "console/recipient_detail.html", context)


@console_view()
def topic_list(request: HttpRequest) -> HttpResponse:
    topics = Topic.objects.annotate(subscriber_count=Count("subscriptions")).order_by("key")
    errors: dict[str, str] = {}
    values = {"key": "", "name": ""}
    if request.method == "POST":
        if not can(request, ADMIN):
            raise PermissionDenied("This needs the Admin role.")
        values = {"key": request.POST.get("key", "").strip(), "name": request.POST.get("name", "").strip()}
        serializer = TopicSerializer(data=values)
        if serializer.is_valid():
            topic = serializer.save()
            messages.success(request, f"Topic {topic.key!r} created.")
            return HttpResponseRedirect(reverse("console:topic", args=[topic.key]))
        errors = {
            name: f"{name}: {' '.join(str(m) for m in msgs)}" for name, msgs in serializer.errors.items()
        }
    context = {"topics": topics, "errors": errors, "values": values, "may_edit": can(request, ADMIN)}
    return render(request, "console/topic_list.html", context, status=400 if errors else 200)


@console_view()
def topic_detail(request: HttpRequest, key: str) -> HttpResponse:
    topic = get_object_or_404(Topic, key=key)
    q = request.GET.get("q", "").strip()[:255]
    page = _page(request)
    subscriptions = TopicSubscription.objects.filter(topic=topic).select_related("recipient")
    if q:
        subscriptions = subscriptions.filter(
            Q(recipient__external_id__icontains=q) | Q(recipient__email__icontains=q)
        )
    start = (page - 1) * PAGE_SIZE
    found = list(subscriptions.order_by("-created_at", "-id")[start : start + PAGE_SIZE + 1])
    context = {
        "topic": topic,
        "subscriptions": found[:PAGE_SIZE],
        "count": topic.subscriptions.count(),
        "q": q,
        "page": page,
        "has_next": len(found) > PAGE_SIZE,
        "may_edit": can(request, ADMIN),
        "recipients_text": "",
        "errors": {},
    }
    return render(request, "console/topic_detail.html", context)


_SEPARATORS = re.compile(r"[\n,;]+")


def _parse_lines(text: str) -> list[dict[str, str]]:
    """One recipient a line: `external_id` or `external_id email` (also separated by , or ;)."""
    items = []
    for line in _SEPARATORS.split(text):
        parts = line.split()
        if not parts:
            continue
        item = {"external_id": parts[0]}
        if len(parts) > 1:
            item["email"] = parts[1]
        items.append(item)
    return items


@require_POST
@console_view(ADMIN)
def topic_add(request: HttpRequest, key: str) -> HttpResponse:
    topic = get_object_or_404(Topic, key=key)
    text = request.POST.get("recipients", "")
    items, errors = check_recipients(_parse_lines(text), "recipients", MAX_SUBSCRIBERS_PER_CALL)
    if errors:
        shown = {name: f"{_line_of(name)}{' '.join(msgs)}" for name, msgs in errors.items()}
        context = {
            "topic": topic,
            "subscriptions": list(
                TopicSubscription.objects.filter(topic=topic)
                .select_related("recipient")
                .order_by("-created_at", "-id")[:PAGE_SIZE]
            ),
            "count": topic.subscriptions.count(),
            "q": "",
            "page": 1,
            "has_next": False,
            "may_edit": True,
            "recipients_text": text,
            "errors": shown,
        }
        return render(request, "console/topic_detail.html", context, status=400)
    with transaction.atomic():
        recipients = upsert_recipients([spec_of(item) for item in items])
        before = topic.subscriptions.count()
        TopicSubscription.objects.bulk_create(
            [TopicSubscription(topic=topic, recipient=r) for r in recipients.values()], ignore_conflicts=True
        )
        added = topic.subscriptions.count() - before
    messages.success(request, f"{added} subscriber{'' if added == 1 else 's'} added to {topic.key!r}.")
    return HttpResponseRedirect(reverse("console:topic", args=[topic.key]))


def _line_of(name: str) -> str:
    """`recipients[2].email` -> `line 3, email: `."""
    match = re.match(r"recipients\[(\d+)\]\.?(\w*)", name)
    if not match:
        return "recipients: "
    return f"line {int(match.group(1)) + 1}, {match.group(2) or 'recipient'}: "


@require_POST
@console_view(ADMIN)
def topic_remove(request: HttpRequest, key: str) -> HttpResponse:
    topic = get_object_or_404(Topic, key=key)
    external_ids = [e for e in request.POST.getlist("external_id") if e][:MAX_SUBSCRIBERS_PER_CALL]
    removed, _ = TopicSubscription.objects.filter(
        topic=topic, recipient__external_id__in=external_ids
    ).delete()
    messages.success(
        request, f"{removed} subscriber{'' if removed == 1 else 's'} removed from {topic.key!r}."
    )
    return HttpResponseRedirect(reverse("console:topic", args=[topic.key]))
