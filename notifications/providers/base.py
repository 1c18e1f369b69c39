"""What every provider shares: the steps of a send, one error type, one outcome shape.

A provider is one small module with one class. The channel's base class fixes the steps of a
send -- check -> build -> post -> parse -- and the provider fills in the ones it differs on:

    class AcmeSms(SmsProvider):
        name = "acme"
        secret_fields = ("api_key",)
        def build(self, message): ...   # the provider's request
        def post(self, payload): ...    # call the provider; raise ProviderError on failure
        def parse(self, answer): ...    # -> (provider_message_id, short answer text)

`send_batch` runs the steps for each message inside `session()` (one SMTP connection, one HTTP
session) and returns one Outcome per message, never raising for a single message's failure.
"""

import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar

from tenants.crypto import mask


class ProviderError(Exception):
    """A send failed. `permanent`: trying again cannot help (bad address, rejected, too big).

    `retry_after` (seconds) is the provider's own hint, e.g. from a 429. `response` is the
    provider's answer as far as it is safe to store and show (no credentials).
    """

    def __init__(
        self, reason: str, *, permanent: bool, retry_after: float | None = None, response: str = ""
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent
        self.retry_after = retry_after
        self.response = response or reason


@dataclass(frozen=True)
class OutgoingMessage:
    """One delivery, rendered, as the provider sends it.

    `to` is the address on the channel: an email address, an E.164 number, or (push, in-app)
    the recipient's id. `subject` is the email subject or the push / in-app title.
    """

    delivery_id: str
    channel: str
    to: str
    subject: str = ""
    text: str = ""
    html: str = ""
    priority: str = "normal"
    headers: Mapping[str, str] = field(default_factory=dict)
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Outcome:
    """The provider's answer for one message: an id on success, an error otherwise."""

    delivery_id: str
    provider: str
    provider_message_id: str = ""
    error: ProviderError | None = None
    response: str = ""
    duration_ms: int = 0
    started_at: datetime | None = None  # when the provider call began (None: not called)

    @property
    def ok(self) -> bool:
        return self.error is None


class Provider(ABC):
    """Base of every provider; subclass the channel's base class, not this one."""

    name: ClassVar[str]
    channel: ClassVar[str]
    #: settings keys that are credentials: stored encrypted, shown masked
    secret_fields: ClassVar[tuple[str, ...]] = ()
    #: settings keys that may be shown in clear
    setting_fields: ClassVar[tuple[str, ...]] = ()
    #: longest text the provider accepts (characters), None for no limit of ours
    max_text: ClassVar[int | None] = None
    #: how many messages one send_batch call should get (one session, e.g. one SMTP connection):
    #: at least a send task's batch (fanout.SEND_BATCH, 250), or a task opens a second session
    #: for its last few
    batch_size: ClassVar[int] = 250

    def __init__(self, settings: Mapping[str, Any] | None = None, secrets: Mapping[str, str] | None = None):
        self.settings = dict(settings or {})
        self.secrets = dict(secrets or {})

    # --- the steps ---------------------------------------------------------------------------

    def check(self, message: OutgoingMessage) -> None:
        """Refuse what the provider would refuse anyway, before spending a call on it."""
        if self.max_text is not None and len(message.text) > self.max_text:
            raise ProviderError(
                f"text is {len(message.text)} characters; {self.name} takes at most {self.max_text}",
                permanent=True,
            )

    @abstractmethod
    def build(self, message: OutgoingMessage) -> Any:
        """The provider's request for this message."""

    @abstractmethod
    def post(self, payload: Any) -> Any:
        """Call the provider. Raise ProviderError (with `permanent` set right) on failure."""

    def parse(self, answer: Any) -> tuple[str, str]:
        """(provider_message_id, short answer text) from what `post` returned."""
        return str(answer or ""), str(answer or "")

    @contextmanager
    def session(self) -> Iterator[None]:
        """Shared resources for a batch (a connection, an HTTP session)."""
        yield

    # --- the fixed part ----------------------------------------------------------------------

    def send_batch(self, messages: Sequence[OutgoingMessage]) -> list[Outcome]:
        try:
            with self.session():
                return [self.send_one(m) for m in messages]
        except ProviderError as exc:  # the session itself failed: every message failed with it
            return [Outcome(m.delivery_id, self.name, error=exc, response=exc.response) for m in messages]

    def send_one(self, message: OutgoingMessage) -> Outcome:
        started_at = datetime.now(UTC)
        started = time.monotonic()
        try:
            self.check(message)
            answer = self.post(self.build(message))
            message_id, response = self.parse(answer)
        except ProviderError as exc:
            return Outcome(
                message.delivery_id,
                self.name,
                error=exc,
                response=exc.response[:2000],
                duration_ms=_ms_since(started),
                started_at=started_at,
            )
        return Outcome(
            message.delivery_id,
            self.name,
            provider_message_id=message_id,
            response=response[:2000],
            duration_ms=_ms_since(started),
            started_at=started_at,
        )

    # --- presentation ------------------------------------------------------------------------

    @classmethod
    def masked(cls, secrets: Mapping[str, str]) -> dict[str, str]:
        return {k: mask(str(v)) for k, v in secrets.items()}


def parse_retry_after(value: str | None) -> float | None:
    """A Retry-After header as seconds from now (RFC 9110: delay-seconds or an HTTP date);
    None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # an HTTP date is GMT
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _ms_since(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


class EmailProvider(Provider):
    channel = "email"


class SmsProvider(Provider):
    channel = "sms"
    max_text = 1600  # Twilio's limit for one message (it splits into segments itself)


class PushProvider(Provider):
    channel = "push"
    max_payload_bytes: ClassVar[int] = 4096  # what push services accept (RFC 8030 practice)


class InAppProvider(Provider):
    channel = "in_app"
