"""End users' own pages: one-click unsubscribe (RFC 8058) and the preference page.

No account: the unsubscribe link carries a signed token (recipient + category) without expiry,
the preference page a recipient token. Both only work on the domain of the tenant that made them.
A GET never changes anything (mail scanners follow links); the one-click POST a mail client
sends, or the button on the page, does.
"""

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from ..links import BadToken, read_recipient_token, read_unsubscribe_token, recipient_token
from ..models import Category, Channel, Recipient
from . import service


def _recipient(recipient_id: str) -> Recipient | None:
    return Recipient.objects.filter(id=recipient_id).first()


def _invalid(request: HttpRequest, message: str) -> HttpResponse:
    return render(request, "preferences/invalid.html", {"message": message}, status=404)


@csrf_exempt  # the token in the URL is the credential; mail clients POST without a CSRF token
@require_http_methods(["GET", "POST"])
def unsubscribe(request: HttpRequest, token: str) -> HttpResponse:
    try:
        claim = read_unsubscribe_token(token)
    except BadToken:
        return _invalid(request, "This unsubscribe link is not valid.")
    recipient = _recipient(claim.recipient_id)
    category = Category.objects.filter(key=claim.category).first()
    if recipient is None or category is None:
        return _invalid(request, "This unsubscribe link is no longer valid.")
    context: dict[str, Any] = {
        "category": category,
        "preferences_url": f"/u/preferences/?token={recipient_token(str(recipient.id))}",
    }
    if category.required:
        return render(request, "preferences/unsubscribe.html", {**context, "required": True})
    if request.method == "POST":
        service.unsubscribe(recipient, category)
        return render(request, "preferences/unsubscribe.html", {**context, "done": True})
    return render(request, "preferences/unsubscribe.html", {**context, "token": token})


@require_http_methods(["GET", "POST"])
def preferences(request: HttpRequest) -> HttpResponse:
    token = request.GET.get("token") or request.POST.get("token", "")
    try:
        claim = read_recipient_token(token)
    except BadToken:
        return _invalid(request, "This preferences link is not valid or has expired.")
    recipient = _recipient(claim.recipient_id)
    if recipient is None:
        return _invalid(request, "This preferences link is no longer valid.")
    saved = False
    if request.method == "POST":
        for category in Category.objects.filter(required=False):
            choices = {ch: request.POST.get(f"{category.key}:{ch}") == "on" for ch in Channel.values}
            service.set_preferences(recipient, category, choices)
        saved = True
    return render(
        request,
        "preferences/preferences.html",
        {
            "table": service.preference_table(recipient),
            "channels": Channel.choices,
            "token": token,
            "saved": saved,
        },
    )
