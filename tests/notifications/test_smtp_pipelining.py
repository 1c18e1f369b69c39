"""SMTP PIPELINING (RFC 2920): with a server that offers it, a batch sends MAIL, RCPT and DATA in
one write, and refusals are still each message's own, permanent or transient as before."""

from collections.abc import Iterator
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from notifications.providers import smtp
from notifications.providers.base import OutgoingMessage
from notifications.providers.smtp import SmtpProvider
from tests.fakes.smtp_server import RecordingHandler, _Rule, free_port


class PipeliningHandler(RecordingHandler):
    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        return [*responses[:-1], "250-PIPELINING", responses[-1]]


@pytest.fixture
def pipelining_server() -> Iterator[tuple[PipeliningHandler, int]]:
    handler = PipeliningHandler()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


@pytest.fixture
def pipelined_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The recipients sent through pipelined_sendmail (a spy: the real function runs)."""
    calls: list[str] = []
    real = smtp.pipelined_sendmail

    def spy(connection: Any, envelope_from: str, to: str, data: bytes) -> None:
        calls.append(to)
        real(connection, envelope_from, to, data)

    monkeypatch.setattr(smtp, "pipelined_sendmail", spy)
    return calls


def test_a_batch_is_pipelined_and_each_refusal_stays_with_its_own_message(
    pipelining_server: tuple[PipeliningHandler, int], pipelined_calls: list[str]
) -> None:
    handler, port = pipelining_server
    handler.rules["gone@example.com"] = _Rule(550, 1)
    handler.rules["busy@example.com"] = _Rule(451, 1)
    provider = SmtpProvider({"host": "127.0.0.1", "port": port, "from_email": "n@herald.test"})
    messages = [
        OutgoingMessage("d-1", "email", "ok@example.com", subject="One", text="Hi\n.leading dot\nbye"),
        OutgoingMessage("d-2", "email", "gone@example.com", subject="Two", text="Hi"),
        OutgoingMessage("d-3", "email", "busy@example.com", subject="Three", text="Hi"),
        OutgoingMessage("d-4", "email", "ok2@example.com", subject="Four", text="Hi", html="<p>Hi</p>"),
    ]
    outcomes = provider.send_batch(messages)
    assert pipelined_calls == [m.to for m in messages]
    assert [o.ok for o in outcomes] == [True, False, False, True]
    gone, busy = outcomes[1].error, outcomes[2].error
    assert gone is not None
    assert gone.permanent
    assert "550" in gone.reason
    assert busy is not None
    assert not busy.permanent
    received = {m.rcpt_tos[0]: m for m in handler.messages}
    assert sorted(received) == ["ok2@example.com", "ok@example.com"]
    assert received["ok@example.com"].message.get_content().replace("\r\n", "\n") == "Hi\n.leading dot\nbye\n"
    assert received["ok@example.com"].message["Message-ID"] == outcomes[0].provider_message_id
    html = received["ok2@example.com"].message.get_body(("html",))
    assert html is not None
    assert html.get_content().strip() == "<p>Hi</p>"


def test_without_pipelining_on_offer_a_batch_is_sent_one_command_at_a_time(
    pipelined_calls: list[str],
) -> None:
    handler = RecordingHandler()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        provider = SmtpProvider({"host": "127.0.0.1", "port": port})
        outcomes = provider.send_batch(
            [OutgoingMessage("d-1", "email", "a@example.com", subject="S", text="T")]
        )
    finally:
        controller.stop()
    assert [o.ok for o in outcomes] == [True]
    assert pipelined_calls == []
    assert [m.rcpt_tos for m in handler.messages] == [["a@example.com"]]
