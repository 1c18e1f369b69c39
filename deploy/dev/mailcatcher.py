"""A local SMTP server that accepts every mail and keeps it in a Maildir.

Used by `make run` when no EMAIL_URL is set, so that the mails Herald sends in
development land in `.data/mail` (listed at /dev/mail/) instead of the Internet.

    python deploy/dev/mailcatcher.py --port 1025 --maildir .data/mail

It runs until SIGTERM or SIGINT. Tests can reuse it in-process:

    controller = start_catcher("127.0.0.1", 0, tmp_path / "mail")  # 0: any free port
    ...  # send to controller.hostname, controller.port
    controller.stop()
"""

from __future__ import annotations

import argparse
import mailbox
import signal
import socket
import sys
import threading
import warnings
from email import policy
from email.parser import BytesHeaderParser
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, Session

# aiosmtpd itself warns on every successful AUTH (it still sets the legacy field).
warnings.filterwarnings("ignore", message="Session.login_data is deprecated", category=DeprecationWarning)

STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


class MaildirHandler:
    """aiosmtpd handler that stores each accepted mail as one Maildir message."""

    def __init__(self, maildir: Path) -> None:
        self.maildir = maildir
        maildir.parent.mkdir(parents=True, exist_ok=True)
        self._mailbox = mailbox.Maildir(maildir, create=True)
        self._lock = threading.Lock()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        stored = envelope_headers(envelope) + content.replace(b"\r\n", b"\n")
        with self._lock:
            key = self._mailbox.add(stored)
        log_accepted(key, envelope, content)
        return "250 Message accepted for delivery"


def envelope_headers(envelope: Envelope) -> bytes:
    """Headers recording the SMTP envelope, which Bcc recipients only appear in."""
    return (
        f"Return-Path: <{envelope.mail_from or ''}>\nX-Envelope-To: {', '.join(envelope.rcpt_tos)}\n"
    ).encode()


def log_accepted(key: str, envelope: Envelope, content: bytes) -> None:
    try:
        subject = str(BytesHeaderParser(policy=policy.default).parsebytes(content).get("Subject", ""))
    except (ValueError, IndexError, TypeError):  # an undecodable Subject: the mail is kept anyway
        subject = "?"
    recipients = ", ".join(envelope.rcpt_tos)
    print(f"accepted {key}: {envelope.mail_from} -> {recipients}: {subject!r}", flush=True)


def accept_any_login(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: object
) -> AuthResult:
    """Accept any credentials, so an EMAIL_URL with a user and password works too."""
    return AuthResult(success=True, auth_data=auth_data)


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def start_catcher(host: str, port: int, maildir: Path | str) -> Controller:
    """Start the catcher in a background thread and return its running Controller.

    `port=0` picks a free port (aiosmtpd's Controller cannot do that itself); the
    chosen one is `controller.port`. Call `controller.stop()` when done.
    """
    handler = MaildirHandler(Path(maildir))
    controller = Controller(
        handler,
        hostname=host,
        port=port or free_port(host),
        server_hostname="herald-mailcatcher",
        authenticator=accept_any_login,
        auth_require_tls=False,
    )
    controller.start()
    return controller


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Local SMTP server that stores every mail in a Maildir.")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument(
        "--port", type=int, default=1025, help="port to listen on, 0 for any free one (default 1025)"
    )
    parser.add_argument("--maildir", type=Path, required=True, help="Maildir to store the mails in")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    # Block the stop signals before the server thread starts, so they wait for sigwait below.
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    controller = start_catcher(args.host, args.port, args.maildir)
    print(
        f"catching mail on smtp://{controller.hostname}:{controller.port} into {args.maildir.resolve()}",
        flush=True,
    )
    received = signal.sigwait(STOP_SIGNALS)
    controller.stop()
    print(f"stopped ({signal.Signals(received).name})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
