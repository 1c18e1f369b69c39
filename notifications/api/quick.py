"""The field checks of NotificationCreate in plain Python, for the bodies that pass them.

DRF builds and deep-copies every field of a serializer (and of its nested serializers) for each
instance, then runs each field through several layers: about a millisecond a notification, most
of a 1,000-item batch's time. `notification_fields` does the same checks as NotificationCreate's
fields for a well-formed body and returns the same values. Whenever it is not sure (a value of
another type, whitespace DRF would trim, a null character, a channel that is not available...)
it returns None and the caller runs the serializer, so every error a client sees is still DRF's,
worded and keyed exactly as before. tests/notifications/test_quick_validation.py holds it to the
serializer's answers.
"""

import re
from collections.abc import Callable
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import validate_email
from rest_framework import serializers

from ..models import Channel, Priority
from .serializers import MAX_BODY, Lookups, NotificationCreate, check_notification, e164

# DRF's CharField refuses null characters and lone surrogates (ProhibitNull/SurrogateCharacters).
_UNSAFE = re.compile("[\x00\ud800-\udfff]")
_SLUG = re.compile(r"[-a-zA-Z0-9_]+")  # DRF's SlugField (ASCII)
_LOCALE = re.compile(r"[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})*")  # the serializers' locale pattern
_CHANNELS = frozenset(Channel.values)
_PRIORITIES = frozenset(Priority.values)
_NO_VALUE = object()


def _text(value: Any, max_length: int, *, blank: bool = False, trim: bool = True) -> str | None:
    """`value` if a CharField with these options takes it unchanged, else None."""
    if type(value) is not str:
        return None
    if value == "":
        return value if blank else None
    if (trim and value != value.strip()) or len(value) > max_length or _UNSAFE.search(value):
        return None
    return value


def _slug(value: Any) -> str | None:
    text = _text(value, 64)  # template and category keys
    return text if text is not None and _SLUG.fullmatch(text) else None


def _locale(value: Any) -> str | None:
    text = _text(value, 16)
    return text if text is not None and _LOCALE.fullmatch(text) else None


def _email(value: Any) -> str | None:
    text = _text(value, 254)
    if text is None:
        return None
    try:
        validate_email(text)
    except DjangoValidationError:
        return None
    return text


def _phone(value: Any) -> str | None:
    text = _text(value, 10_000)  # DRF checks the length of the E.164 result, not of the input
    return e164(text) if text is not None else None


def _recipient(value: Any) -> dict[str, str] | None:
    if type(value) is not dict:
        return None
    external_id = _text(value.get("external_id"), 255)
    if external_id is None:
        return None
    recipient = {"external_id": external_id}
    for name, check in (("email", _email), ("phone", _phone), ("locale", _locale)):
        given = value.get(name, _NO_VALUE)
        if given is _NO_VALUE:
            continue
        checked = check(given)
        if checked is None:
            return None
        recipient[name] = checked
    return recipient


def _channels(value: Any, lookups: Lookups) -> list[str] | None:
    if type(value) is not list or not value or len(set(map(str, value))) != len(value):
        return None
    if not all(type(c) is str and c in _CHANNELS for c in value):
        return None
    if any(lookups.channel_problem(c) for c in value):
        return None
    return list(value)


def notification_fields(data: Any, lookups: Lookups) -> dict[str, Any] | None:
    """What NotificationCreate's fields make of `data` (its attrs before `validate()`), or
    None when the serializer should decide."""
    if type(data) is not dict:
        return None
    recipient = _recipient(data.get("recipient"))
    channels = _channels(data.get("channels"), lookups) if recipient is not None else None
    if recipient is None or channels is None:
        return None
    attrs: dict[str, Any] = {"recipient": recipient, "channels": channels}
    for name, max_length, trim in (
        ("subject", 998, True),
        ("body", MAX_BODY, False),
        ("html", MAX_BODY, False),
        ("url", 2048, True),
    ):
        text = _text(data.get(name, ""), max_length, blank=True, trim=trim)
        if text is None:
            return None
        attrs[name] = text
    given: Any = data.get("data", _NO_VALUE)
    if given is _NO_VALUE:
        attrs["data"] = {}
    elif type(given) is dict:
        attrs["data"] = {str(k): v for k, v in given.items()}
    else:
        return None
    priority = data.get("priority", _NO_VALUE)
    if priority is _NO_VALUE:
        attrs["priority"] = Priority.NORMAL
    elif type(priority) is str and priority in _PRIORITIES:
        attrs["priority"] = priority
    else:
        return None
    checks: tuple[tuple[str, Callable[[Any], str | None]], ...] = (
        ("template", _slug),
        ("category", _slug),
        ("locale", _locale),
    )
    for name, check in checks:
        value = data.get(name, _NO_VALUE)
        if value is _NO_VALUE:
            continue
        checked = check(value)
        if checked is None:
            return None
        attrs[name] = checked
    return attrs


def validated_notification(data: Any, lookups: Lookups) -> dict[str, Any]:
    """NotificationCreate's validated_data for `data`; raises its ValidationError if invalid."""
    attrs = notification_fields(data, lookups)
    if attrs is not None:
        try:
            return check_notification(attrs, lookups)
        except serializers.ValidationError:
            pass  # the serializer below says it again, in its own shape
    serializer = NotificationCreate(data=data, context={"lookups": lookups})
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)
