"""A real SMTP server for tests (aiosmtpd) that records mail and fails chosen addresses.

`fail(address, code, times)` makes RCPT TO for that address answer `code` (e.g. 451, 550) the
next `times` times, so tests can drive transient and permanent failures.
"""

import asyncio
import email
import email.message
import email.policy
import socket
import threading
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.controller import Controller


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: email.message.EmailMessage


@dataclass
class _Rule:
    code: int
    times: int


@dataclass
class RecordingHandler:
    messages: list[Received] = field(default_factory=list)
    rules: dict[str, _Rule] = field(default_factory=dict)
    stalls: dict[str, _Rule] = field(default_factory=dict)  # code holds the seconds to hang
    lock: threading.Lock = field(default_factory=threading.Lock)
    rcpt_attempts: dict[str, int] = field(default_factory=dict)

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: Any
    ) -> str:
        with self.lock:
            self.rcpt_attempts[address] = self.rcpt_attempts.get(address, 0) + 1
            stall = self.stalls.get(address)
            if stall and stall.times > 0:
                stall.times -= 1
            else:
                stall = None
        if stall is not None:
            await asyncio.sleep(stall.code)  # a server that hangs mid-conversation
        with self.lock:
            rule = self.rules.get(address)
            if rule and rule.times > 0:
                rule.times -= 1
                text = "Try again later" if rule.code < 500 else "No such user here"
                return f"{rule.code} {text}"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, email.message.EmailMessage)
        with self.lock:
            self.messages.append(Received(envelope.mail_from, list(envelope.rcpt_tos), message))
        return "250 Message accepted for delivery"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class FakeSmtpServer:
    def __init__(self) -> None:
        self.handler = RecordingHandler()
        self.port = free_port()
        self._controller = Controller(self.handler, hostname="127.0.0.1", port=self.port)

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def start(self) -> "FakeSmtpServer":
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    def fail(self, address: str, code: int, times: int = 1) -> None:
        with self.handler.lock:
            self.handler.rules[address] = _Rule(code, times)

    def stall(self, address: str, seconds: int, times: int = 1) -> None:
        """Hang for `seconds` on RCPT TO for `address`, the next `times` times."""
        with self.handler.lock:
            self.handler.stalls[address] = _Rule(seconds, times)

    def messages_to(self, address: str) -> list[email.message.EmailMessage]:
        with self.handler.lock:
            return [r.message for r in self.handler.messages if address in r.rcpt_tos]

    def attempts_for(self, address: str) -> int:
        with self.handler.lock:
            return self.handler.rcpt_attempts.get(address, 0)
