"""Email through SMTP (the platform's EMAIL_URL, or a tenant's own server), or any Django backend.

One recipient per message: when some RCPTs of a message are refused and others accepted,
Django's SMTP backend reports success and drops the refusal, so a shared message would hide a
bounce. A batch shares one connection. SMTP 4xx is transient, 5xx permanent.

Over Django's SMTP backend, a message whose addresses and headers are plain ASCII on one line
is formatted here (`plain_email`) and handed to the open SMTP connection: Django's MIME classes
and header folding cost about twice the SMTP exchange itself, which mattered for a 100,000
recipient broadcast. Anything else (non-ASCII headers, display names in the recipient, another
backend) goes through Django's EmailMultiAlternatives as before.
"""

import re
import smtplib
import socket
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from email import quoprimime
from email.utils import formatdate, parseaddr
from functools import lru_cache
from typing import Any, ClassVar

from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection
from django.core.mail.backends.base import BaseEmailBackend
from django.core.mail.backends.smtp import EmailBackend as DjangoSmtpBackend

from .base import EmailProvider, OutgoingMessage, ProviderError


class SmtpProvider(EmailProvider):
    name = "smtp"
    setting_fields: ClassVar[tuple[str, ...]] = (
        "host",
        "port",
        "username",
        "use_tls",
        "use_ssl",
        "from_email",
    )
    secret_fields: ClassVar[tuple[str, ...]] = ("password",)
    backend_path: ClassVar[str] = "django.core.mail.backends.smtp.EmailBackend"

    connection: BaseEmailBackend | None = None

    def backend_options(self) -> dict[str, Any]:
        """The tenant's server if it configured one; else the platform's (EMAIL_URL)."""
        s = self.settings
        if not s.get("host"):
            return {}
        return {
            "host": s["host"],
            "port": int(s.get("port", 587)),
            "username": s.get("username") or None,
            "password": self.secrets.get("password") or None,
            "use_tls": bool(s.get("use_tls", False)),
            "use_ssl": bool(s.get("use_ssl", False)),
            "timeout": settings.EMAIL_TIMEOUT,
        }

    @contextmanager
    def session(self) -> Iterator[None]:
        connection = get_connection(self.backend_path, fail_silently=False, **self.backend_options())
        try:
            connection.open()
        except (OSError, smtplib.SMTPException) as exc:
            raise classify(exc) from None
        self.connection = connection
        try:
            yield
        finally:
            with suppress(OSError, smtplib.SMTPException):
                connection.close()
            self.connection = None

    def build(self, message: OutgoingMessage) -> "EmailMultiAlternatives | PlainEmail":
        from_email = self.settings.get("from_email") or settings.DEFAULT_FROM_EMAIL
        headers = {"Message-ID": message_id_for(message.delivery_id), **message.headers}
        if isinstance(self.connection, DjangoSmtpBackend):
            plain = plain_email(from_email, message, headers)
            if plain is not None:
                return plain
        email = EmailMultiAlternatives(
            subject=message.subject,
            body=message.text,
            from_email=from_email,
            to=[message.to],
            headers=headers,
            connection=self.connection,
        )
        if message.html:
            email.attach_alternative(message.html, "text/html")
        return email

    def post(self, payload: "EmailMultiAlternatives | PlainEmail") -> str:
        try:
            if isinstance(payload, PlainEmail):
                smtp = getattr(self.connection, "connection", None)
                if not isinstance(smtp, smtplib.SMTP):
                    raise smtplib.SMTPServerDisconnected("the SMTP connection is closed")
                smtp.ehlo_or_helo_if_needed()
                if smtp.has_extn("pipelining"):
                    pipelined_sendmail(smtp, payload.envelope_from, payload.to, payload.data)
                else:
                    smtp.sendmail(payload.envelope_from, [payload.to], payload.data)
                return payload.message_id
            payload.send(fail_silently=False)
        except (OSError, smtplib.SMTPException) as exc:
            raise classify(exc) from None
        return str(payload.extra_headers["Message-ID"])

    def parse(self, answer: Any) -> tuple[str, str]:
        return str(answer), "250 accepted"


class DjangoBackendProvider(SmtpProvider):
    """Any Django email backend a tenant names (e.g. an API-based one): settings["backend"]."""

    name = "django_email"
    setting_fields = ("backend", "from_email")
    secret_fields = ()

    @property
    def backend_path(self) -> str:  # type: ignore[override]
        return str(self.settings.get("backend") or settings.EMAIL_BACKEND)

    def backend_options(self) -> dict[str, Any]:
        return {k: v for k, v in self.settings.items() if k not in ("backend", "from_email")} | self.secrets


@dataclass(frozen=True)
class PlainEmail:
    """A message formatted by `plain_email`, ready for SMTP DATA."""

    envelope_from: str
    to: str
    message_id: str
    data: bytes


# A bare address: what the API's email validation lets through, minus anything that would need
# quoting or encoding in a header.
_BARE_ADDRESS = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9.-]+")
_MAX_HEADER = 900  # characters of a header value kept on one line (RFC 5322 allows 998 a line)


def _one_line(value: str) -> bool:
    return value.isascii() and len(value) <= _MAX_HEADER and "\n" not in value and "\r" not in value


def plain_email(from_email: str, message: OutgoingMessage, headers: Mapping[str, str]) -> PlainEmail | None:
    """The message as Django would send it (same headers, utf-8 text/plain, or a text/html
    alternative), formatted by hand; None when it needs more than plain ASCII one-line headers
    and a bare recipient address, so that Django's classes handle it."""
    if not _BARE_ADDRESS.fullmatch(message.to) or not _one_line(from_email) or not _one_line(message.subject):
        return None
    if not all(_one_line(k) and ":" not in k and _one_line(v) for k, v in headers.items()):
        return None
    envelope_from = _envelope_address(from_email)
    if not _BARE_ADDRESS.fullmatch(envelope_from):
        return None
    lines = [
        f"Subject: {message.subject}",
        f"From: {from_email}",
        f"To: {message.to}",
        f"Date: {formatdate(localtime=settings.EMAIL_USE_LOCALTIME)}",
        *(f"{k}: {v}" for k, v in headers.items()),
    ]
    if message.html:
        boundary = f"===============herald{uuid.uuid4().hex}=="
        head = [
            f'Content-Type: multipart/alternative;\r\n boundary="{boundary}"',
            "MIME-Version: 1.0",
            *lines,
        ]
        body = (
            f"--{boundary}\r\n{_part(message.text, 'plain')}\r\n"
            f"--{boundary}\r\n{_part(message.html, 'html')}\r\n"
            f"--{boundary}--\r\n"
        )
        text = "\r\n".join(head) + "\r\n\r\n" + body
    else:
        text = "\r\n".join(lines) + "\r\n" + _part(message.text, "plain")
    return PlainEmail(envelope_from, message.to, headers["Message-ID"], text.encode("ascii"))


@lru_cache(maxsize=64)
def _envelope_address(from_email: str) -> str:
    return parseaddr(from_email)[1]


def pipelined_sendmail(smtp: smtplib.SMTP, envelope_from: str, to: str, data: bytes) -> None:
    """smtplib's sendmail for one recipient, with MAIL, RCPT and DATA sent in one write (RFC 2920
    PIPELINING): two round trips per message instead of four, and the same exceptions."""
    options = f" SIZE={len(data)}" if smtp.has_extn("size") else ""
    # Both are bare addresses (plain_email checked them), so <address> is how quoteaddr writes them.
    smtp.send(f"MAIL FROM:<{envelope_from}>{options}\r\nRCPT TO:<{to}>\r\nDATA\r\n")
    mail, rcpt, start = smtp.getreply(), smtp.getreply(), smtp.getreply()
    if start[0] == 354 and (mail[0] != 250 or rcpt[0] not in (250, 251)):
        # The server took DATA although MAIL or RCPT failed: end that empty message first.
        smtp.send(".\r\n")
        smtp.getreply()
    if mail[0] != 250:
        _give_up(smtp, mail[0])
        raise smtplib.SMTPSenderRefused(mail[0], mail[1], envelope_from)
    if rcpt[0] not in (250, 251):
        _give_up(smtp, rcpt[0])
        raise smtplib.SMTPRecipientsRefused({to: rcpt})
    if start[0] != 354:
        _give_up(smtp, start[0])
        raise smtplib.SMTPDataError(*start)
    body = _LEADING_DOT.sub(b"..", data)
    if not body.endswith(b"\r\n"):
        body += b"\r\n"
    smtp.send(body + b".\r\n")
    code, reply = smtp.getreply()
    if code != 250:
        _give_up(smtp, code)
        raise smtplib.SMTPDataError(code, reply)


_LEADING_DOT = re.compile(rb"(?m)^\.")


def _give_up(smtp: smtplib.SMTP, code: int) -> None:
    """As smtplib after a refusal: 421 means the server is closing; else reset the transaction."""
    if code == 421:
        smtp.close()
    else:
        with suppress(smtplib.SMTPServerDisconnected):
            smtp.rset()


def _part(text: str, subtype: str) -> str:
    """One utf-8 text part with its own headers: 7bit when ASCII with short lines, else
    quoted-printable (ASCII on the wire whatever the server supports)."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if text.isascii() and all(len(line) <= 998 for line in lines):
        encoding, body = "7bit", "\r\n".join(lines)
    else:
        encoding = "quoted-printable"
        body = quoprimime.body_encode("\n".join(lines).encode("utf-8").decode("latin-1"), eol="\r\n")
    return (
        f'Content-Type: text/{subtype}; charset="utf-8"\r\nMIME-Version: 1.0\r\n'
        f"Content-Transfer-Encoding: {encoding}\r\n\r\n{body}\r\n"
    )


def message_id_for(delivery_id: str) -> str:
    """Derived from the delivery, so a repeated send is recognisable as the same message."""
    return f"<{delivery_id}@{settings.BASE_DOMAIN}>"


def classify(exc: BaseException) -> ProviderError:
    """SMTP 5xx is permanent, 4xx and network trouble are transient."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        answers = list(exc.recipients.values())
        code = answers[0][0] if answers else 0
        text = "; ".join(f"{c} {m.decode(errors='replace')}" for c, m in answers)
        return ProviderError(f"SMTP refused recipient: {text}", permanent=500 <= code < 600)
    if isinstance(exc, smtplib.SMTPResponseException):
        raw = exc.smtp_error
        detail = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
        return ProviderError(f"SMTP {exc.smtp_code} {detail}", permanent=500 <= exc.smtp_code < 600)
    if isinstance(exc, socket.timeout | TimeoutError):
        return ProviderError("SMTP server timed out", permanent=False)
    return ProviderError(f"SMTP connection failed: {exc.__class__.__name__}: {exc}", permanent=False)
