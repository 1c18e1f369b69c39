"""What every provider shares: one error type, and the shape of a send's outcome."""

from dataclasses import dataclass


class ProviderError(Exception):
    """A send failed. `permanent` means trying again cannot help (bad address, rejected)."""

    def __init__(self, reason: str, *, permanent: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent


@dataclass(frozen=True)
class Message:
    """What a provider sends for one delivery, already rendered."""

    delivery_id: str
    to: str
    subject: str
    text: str


@dataclass(frozen=True)
class Outcome:
    """The provider's answer for one message: an id on success, an error otherwise."""

    delivery_id: str
    provider_message_id: str = ""
    error: ProviderError | None = None
