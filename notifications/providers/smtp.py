"""Email through SMTP (the platform's EMAIL_URL, or a tenant's own server), or any Django backend.

One recipient per message: when some RCPTs of a message are refused and others accepted,
Django's SMTP backend reports success and drops the refusal, so a shared message would hide a
bounce. A batch shares one connection. SMTP 4xx is transient, 5xx permanent.
"""

import smtplib
import socket
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any, ClassVar

from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection
from django.core.mail.backends.base import BaseEmailBackend

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

    def build(self, message: OutgoingMessage) -> EmailMultiAlternatives:
        email = EmailMultiAlternatives(
            subject=message.subject,
            body=message.text,
            from_email=self.settings.get("from_email") or settings.DEFAULT_FROM_EMAIL,
            to=[message.to],
            headers={"Message-ID": message_id_for(message.delivery_id), **message.headers},
            connection=self.connection,
        )
        if message.html:
            email.attach_alternative(message.html, "text/html")
        return email

    def post(self, payload: EmailMultiAlternatives) -> str:
        try:
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
