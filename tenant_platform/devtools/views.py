"""The dev pages: what the local mail catcher, fake Twilio API and fake push service received.

- /dev/        an index of the three, with how many messages each holds;
- /dev/mail/   the mails the catcher (deploy/dev/mailcatcher.py) stored in DEV_MAILBOX_DIR;
- /dev/sms/    the messages the fake Twilio API recorded in DEV_SMS_DIR, with their callbacks;
- /dev/push/   the pushes the fake push service decrypted into DEV_PUSH_DIR, and a button that
               gives a recipient a subscription there (push_demo.py), so a push can arrive.

`make run` sets the three directories; when one is None its page says the server is not in
use. Everything is only read, and shown escaped: a mail's HTML in a sandboxed iframe (no
scripts, no same-origin access), never inline; a push's URL as text, never as a link.
"""

from __future__ import annotations

import datetime
import functools
import mailbox
import os
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesHeaderParser, BytesParser
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.middleware.csrf import get_token
from django.template import Context, Engine
from django.urls import reverse
from django.utils.http import urlencode
from django.views.decorators.http import require_GET, require_POST

from . import push_demo, records

PAGE_SIZE = 50
TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"


@dataclass(frozen=True)
class StoredMail:
    """One message file of the Maildir."""

    key: str
    path: Path
    received: datetime.datetime


@dataclass(frozen=True)
class MailSummary:
    key: str
    date: datetime.datetime
    sender: str
    recipients: str
    subject: str


@dataclass(frozen=True)
class MailPart:
    content_type: str
    kind: str  # "text", "html" or "attachment"
    content: str = ""
    filename: str = ""
    size: int = 0


@dataclass
class MailDetail:
    summary: MailSummary
    headers: list[tuple[str, str]] = field(default_factory=list)
    parts: list[MailPart] = field(default_factory=list)

    @property
    def bodies(self) -> list[MailPart]:
        return [part for part in self.parts if part.kind != "attachment"]

    @property
    def attachments(self) -> list[MailPart]:
        return [part for part in self.parts if part.kind == "attachment"]


# --- Reading the Maildir ------------------------------------------------------------------


def mailbox_dir() -> Path | None:
    value = getattr(settings, "DEV_MAILBOX_DIR", None)
    return Path(value) if value else None


def stored_mails(maildir: Path) -> list[StoredMail]:
    """Every message in the Maildir, newest delivery first (delivery time = file mtime)."""
    mails = []
    for subdir in ("new", "cur"):
        try:
            entries = list(os.scandir(maildir / subdir))
        except FileNotFoundError:
            continue
        for entry in entries:
            if entry.name.startswith(".") or not entry.is_file():
                continue
            key = entry.name.split(mailbox.Maildir.colon, 1)[0]
            received = datetime.datetime.fromtimestamp(entry.stat().st_mtime, tz=datetime.UTC)
            mails.append(StoredMail(key=key, path=Path(entry.path), received=received))
    mails.sort(key=lambda mail: (mail.received, mail.key), reverse=True)
    return mails


def find_mail(maildir: Path, key: str) -> StoredMail:
    for mail in stored_mails(maildir):
        if mail.key == key:
            return mail
    raise Http404("No such mail in the dev mailbox.")


def header(message: EmailMessage, name: str) -> str:
    try:
        return str(message.get(name, ""))
    except (ValueError, IndexError, TypeError):  # a header too malformed to decode
        return ""


def all_headers(message: EmailMessage) -> list[tuple[str, str]]:
    """Every header in order, repeated ones (Received, ...) included."""
    headers = []
    for name in dict.fromkeys(message.keys()):
        try:
            values = [str(value) for value in message.get_all(name, [])]
        except (ValueError, IndexError, TypeError):  # a header too malformed to decode
            values = [""]
        headers += [(name, value) for value in values]
    return headers


def sent_date(message: EmailMessage, fallback: datetime.datetime) -> datetime.datetime:
    """The Date header as an aware datetime, or `fallback` if it is missing or invalid."""
    try:
        date = parsedate_to_datetime(header(message, "Date"))
    except (TypeError, ValueError):
        return fallback
    return date if date.tzinfo is not None else date.replace(tzinfo=datetime.UTC)


def summarize(mail: StoredMail, message: EmailMessage) -> MailSummary:
    return MailSummary(
        key=mail.key,
        date=sent_date(message, mail.received),
        sender=header(message, "From") or header(message, "Return-Path").strip("<>"),
        # The envelope (recorded by the catcher) stands in for missing headers, e.g. Bcc only.
        recipients=header(message, "To") or header(message, "X-Envelope-To"),
        subject=header(message, "Subject"),
    )


def read_summary(mail: StoredMail) -> MailSummary:
    with mail.path.open("rb") as file:
        message = BytesHeaderParser(policy=policy.default).parse(file)
    assert isinstance(message, EmailMessage)
    return summarize(mail, message)


def read_message(mail: StoredMail) -> EmailMessage:
    message = BytesParser(policy=policy.default).parsebytes(mail.path.read_bytes())
    assert isinstance(message, EmailMessage)
    return message


def part_text(part: EmailMessage) -> str:
    try:
        content = part.get_content()
    except (LookupError, UnicodeError, KeyError):  # unknown charset or a broken encoding
        content = None
    if isinstance(content, str):
        return content
    payload = part.get_payload(decode=True)
    return payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""


def describe_part(part: EmailMessage) -> MailPart:
    content_type = part.get_content_type()
    attached = part.get_content_disposition() == "attachment"
    if content_type in ("text/plain", "text/html") and not attached:
        kind = "html" if content_type == "text/html" else "text"
        return MailPart(content_type=content_type, kind=kind, content=part_text(part))
    payload = part.get_payload(decode=True)
    return MailPart(
        content_type=content_type,
        kind="attachment",
        filename=part.get_filename() or "",
        size=len(payload) if isinstance(payload, bytes) else 0,
    )


def read_detail(mail: StoredMail) -> MailDetail:
    message = read_message(mail)
    parts = [describe_part(part) for part in message.walk() if not part.is_multipart()]
    return MailDetail(summary=summarize(mail, message), headers=all_headers(message), parts=parts)


# --- Views --------------------------------------------------------------------------------


@functools.cache
def template_engine() -> Engine:
    # An engine of its own: the pages work whether or not this package is in INSTALLED_APPS.
    return Engine(dirs=[str(TEMPLATE_DIR)], autoescape=True)


def render_page(template_name: str, context: dict[str, Any], status: int = 200) -> HttpResponse:
    template = template_engine().get_template(f"devtools/{template_name}")
    return HttpResponse(template.render(Context(context)), status=status)


def mailbox_index(request: HttpRequest) -> HttpResponse:
    """Every caught mail, newest first: date, from, to, subject."""
    maildir = mailbox_dir()
    if maildir is None:
        return render_page("mail_list.html", {"maildir": None})
    page = Paginator(stored_mails(maildir), PAGE_SIZE).get_page(request.GET.get("page"))
    return render_page(
        "mail_list.html",
        {
            "maildir": maildir,
            "page": page,
            "mails": [read_summary(mail) for mail in page.object_list],
        },
    )


def mail_detail(request: HttpRequest, key: str) -> HttpResponse:
    """One mail: its headers, its text and HTML parts, and a list of its attachments."""
    maildir = mailbox_dir()
    if maildir is None:
        raise Http404("The mail catcher is not in use.")
    return render_page("mail_detail.html", {"mail": read_detail(find_mail(maildir, key))})


def mail_raw(request: HttpRequest, key: str) -> HttpResponse:
    """One mail's source, as the catcher stored it."""
    maildir = mailbox_dir()
    if maildir is None:
        raise Http404("The mail catcher is not in use.")
    return HttpResponse(find_mail(maildir, key).path.read_bytes(), content_type="text/plain; charset=utf-8")


# --- SMS and push ---------------------------------------------------------------------------

DEMO_TENANT = "demo"
DEMO_RECIPIENT = "u-42"
MAX_EXTERNAL_ID = 255


def setting_dir(name: str) -> Path | None:
    value = getattr(settings, name, None)
    return Path(value) if value else None


def live(request: HttpRequest) -> bool:
    """?live=1: the page reloads itself every few seconds (to watch a delivery report arrive)."""
    return request.GET.get("live") == "1"


@require_GET
def dev_index(request: HttpRequest) -> HttpResponse:
    """Links to the three pages, with how many messages each server received."""
    maildir, sms_dir, push_dir = mailbox_dir(), setting_dir("DEV_SMS_DIR"), push_demo.push_dir()
    pages = [
        {
            "name": "Mail",
            "url": reverse("devtools:mailbox"),
            "what": "mails caught by the local SMTP catcher",
            "directory": maildir,
            "count": len(stored_mails(maildir)) if maildir else None,
        },
        {
            "name": "SMS",
            "url": reverse("devtools:sms"),
            "what": "messages sent to the fake Twilio API, with its delivery reports",
            "directory": sms_dir,
            "count": len(records.record_files(sms_dir)) if sms_dir else None,
        },
        {
            "name": "Push",
            "url": reverse("devtools:push"),
            "what": "web pushes the fake push service received and decrypted",
            "directory": push_dir,
            "count": len(records.record_files(push_dir)) if push_dir else None,
        },
    ]
    return render_page("index.html", {"pages": pages})


@require_GET
def sms_index(request: HttpRequest) -> HttpResponse:
    """Every SMS the fake Twilio API took, newest first: time, to, from, body, status, callbacks."""
    directory = setting_dir("DEV_SMS_DIR")
    if directory is None:
        return render_page("sms_list.html", {"directory": None})
    page = Paginator(records.record_files(directory), PAGE_SIZE).get_page(request.GET.get("page"))
    return render_page(
        "sms_list.html",
        {
            "directory": directory,
            "page": page,
            "messages": records.sms_records(list(page.object_list)),
            "live": live(request),
        },
    )


def push_page(request: HttpRequest, error: str = "", status: int = 200) -> HttpResponse:
    directory = push_demo.push_dir()
    context: dict[str, Any] = {
        "directory": directory,
        "service_url": push_demo.push_service_url(),
        "csrf_token": get_token(request),
        "error": error,
        "tenant": request.POST.get("tenant", DEMO_TENANT) if error else DEMO_TENANT,
        "external_id": request.POST.get("external_id", DEMO_RECIPIENT) if error else DEMO_RECIPIENT,
        "subscribed": request.GET.get("subscribed", ""),
        "subscribed_tenant": request.GET.get("tenant", ""),
        "live": live(request),
    }
    if directory is not None:
        page = Paginator(records.record_files(directory), PAGE_SIZE).get_page(request.GET.get("page"))
        context.update(page=page, pushes=records.push_records(list(page.object_list)))
    return render_page("push_list.html", context, status=status)


@require_GET
def push_index(request: HttpRequest) -> HttpResponse:
    """Every push the fake push service received, newest first; and the "subscribe" form."""
    return push_page(request)


def web_port(request: HttpRequest) -> int:
    """The port this web server listens on (the one this request reached it on)."""
    port = str(request.META.get("SERVER_PORT", ""))
    return int(port) if port.isdigit() and 0 < int(port) < 65536 else int(settings.PORT)


@require_POST
def push_subscribe(request: HttpRequest) -> HttpResponse:
    """Give a recipient of a tenant a subscription on the fake push service (push_demo.py)."""
    tenant = request.POST.get("tenant", "").strip()
    external_id = request.POST.get("external_id", "").strip()
    if not tenant or not external_id or len(external_id) > MAX_EXTERNAL_ID:
        return push_page(request, "Give a tenant (e.g. demo) and a recipient's external_id (e.g. u-42).", 400)
    try:
        done = push_demo.subscribe(tenant, external_id, web_port(request))
    except push_demo.SubscribeError as exc:
        return push_page(request, str(exc), exc.status)
    query = urlencode({"subscribed": done.external_id, "tenant": done.tenant})
    return HttpResponseRedirect(f"{reverse('devtools:push')}?{query}")
