"""Email through Django's email backend (SMTP to the server EMAIL_URL names).

One recipient per message: when some RCPTs of a message are refused and others accepted,
Django's SMTP backend reports success and drops the refusal, so a shared message would hide
a bounce. Messages of a batch share one SMTP connection.
"""

import contextlib
import smtplib
import socket
from collections.abc import Iterable

from django.conf import settings
from django.core.mail import EmailMessage, get_connection

from .base import Message, Outcome, ProviderError

NAME = "smtp"


def send_batch(messages: Iterable[Message]) -> list[Outcome]:
    outcomes: list[Outcome] = []
    try:
        connection = get_connection(fail_silently=False)
        connection.open()
    except (OSError, smtplib.SMTPException) as exc:
        error = classify(exc)
        return [Outcome(m.delivery_id, error=error) for m in messages]
    try:
        for message in messages:
            outcomes.append(_send_one(connection, message))
    finally:
        with contextlib.suppress(OSError, smtplib.SMTPException):
            connection.close()
    return outcomes


def _send_one(connection: object, message: Message) -> Outcome:
    message_id = f"<{message.delivery_id}@{settings.BASE_DOMAIN}>"
    email = EmailMessage(
        subject=message.subject,
        body=message.text,
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[message.to],
        headers={"Message-ID": message_id},
        connection=connection,  # type: ignore[arg-type]
    )
    try:
        email.send(fail_silently=False)
    except (OSError, smtplib.SMTPException) as exc:
        return Outcome(message.delivery_id, error=classify(exc))
    return Outcome(message.delivery_id, provider_message_id=message_id)


def classify(exc: BaseException) -> ProviderError:
    """SMTP 5xx is permanent, 4xx and network trouble are transient."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in exc.recipients.values()]
        code = codes[0] if codes else 0
        text = "; ".join(f"{c} {m.decode(errors='replace')}" for c, m in exc.recipients.values())
        return ProviderError(f"SMTP refused recipient: {text}", permanent=500 <= code < 600)
    if isinstance(exc, smtplib.SMTPResponseException):
        detail = (
            exc.smtp_error.decode(errors="replace")
            if isinstance(exc.smtp_error, bytes)
            else str(exc.smtp_error)
        )
        return ProviderError(f"SMTP {exc.smtp_code} {detail}", permanent=500 <= exc.smtp_code < 600)
    if isinstance(exc, socket.timeout | TimeoutError):
        return ProviderError("SMTP server timed out", permanent=False)
    return ProviderError(f"SMTP connection failed: {exc.__class__.__name__}: {exc}", permanent=False)
