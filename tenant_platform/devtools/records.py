"""What the fake SMS and push services of `make run` recorded: one JSON file per message.

The fake Twilio API (tests/fakes/twilio_server.py) writes `<time>-<MessageSid>.json`, the
Twilio message resource plus the status callbacks it posted, and rewrites it after each
callback. The fake push service (tests/fakes/webpush_server.py) writes `<time>-<id>.json` with
the decrypted payload, TTL and Urgency. Both write a temporary file and rename it, but a file
is read here as untrusted input all the same: one that is half written, too big, not JSON or
of an unexpected shape becomes an "unreadable" row, never an error page.
"""

from __future__ import annotations

import datetime
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, TypeVar

MAX_RECORD_BYTES = 1_000_000  # far above what either fake writes for one message
RECORD_SUFFIX = ".json"

Record = TypeVar("Record")


@dataclass(frozen=True)
class RecordFile:
    """One `*.json` file of a record directory."""

    name: str
    path: Path
    modified: datetime.datetime

    @property
    def stamp(self) -> str:
        """The time prefix of the name (`20250101T120000...-<id>.json`), as both fakes write it."""
        return self.name.split("-", 1)[0]


@dataclass(frozen=True)
class SmsRecord:
    name: str
    received: datetime.datetime
    readable: bool = True
    sid: str = ""
    to: str = ""
    sender: str = ""
    body: str = ""
    status: str = ""
    error_code: str = ""
    error_message: str = ""
    segments: str = ""
    status_callback: str = ""
    callbacks: list[tuple[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class PushRecord:
    name: str
    received: datetime.datetime
    readable: bool = True
    message_id: str = ""
    subscription: str = ""
    decrypted: bool = False
    title: str = ""
    body: str = ""
    url: str = ""
    data: str = ""  # the payload's `data` as JSON text, or a payload that is not a JSON object
    delivery_id: str = ""
    ttl: str = ""
    urgency: str = ""
    topic: str = ""
    size: str = ""
    vapid_subject: str = ""


# --- Files ----------------------------------------------------------------------------------


def record_files(directory: Path) -> list[RecordFile]:
    """The directory's `*.json` files, newest first (by the time in their names, then mtime)."""
    files = []
    try:
        entries = list(os.scandir(directory))
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return []
    for entry in entries:
        if entry.name.startswith(".") or not entry.name.endswith(RECORD_SUFFIX):
            continue
        try:
            if not entry.is_file():
                continue
            mtime = entry.stat().st_mtime
        except OSError:  # removed since the listing
            continue
        modified = datetime.datetime.fromtimestamp(mtime, tz=datetime.UTC)
        files.append(RecordFile(name=entry.name, path=Path(entry.path), modified=modified))
    files.sort(key=lambda file: (file.stamp, file.modified, file.name), reverse=True)
    return files


def load_json(path: Path) -> dict[str, Any] | None:
    """The file's JSON object, or None if it is gone, too big, not JSON or not an object."""
    try:
        with path.open("rb") as file:
            raw = file.read(MAX_RECORD_BYTES + 1)
    except OSError:
        return None
    if len(raw) > MAX_RECORD_BYTES:
        return None
    try:
        document = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    return document if isinstance(document, dict) else None


def read_records(
    files: list[RecordFile], parse: Callable[[RecordFile, dict[str, Any]], Record]
) -> dict[str, Record]:
    """File name -> its parsed record, for the files that could be read and made sense."""
    records = {}
    for file in files:
        document = load_json(file.path)
        if document is None:
            continue
        try:
            records[file.name] = parse(file, document)
        except (TypeError, ValueError, AttributeError, KeyError, OverflowError):  # an odd shape
            continue
    return records


def text(value: Any) -> str:
    """A field as text: "" for a missing or null value."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int | float):
        return str(value)
    return json.dumps(value, ensure_ascii=False, default=str)


def stamp_time(stamp: str) -> datetime.datetime | None:
    for pattern in ("%Y%m%dT%H%M%S%f", "%Y%m%dT%H%M%S"):
        try:
            return datetime.datetime.strptime(stamp, pattern).replace(tzinfo=datetime.UTC)
        except ValueError:
            continue
    return None


def file_time(file: RecordFile) -> datetime.datetime:
    """When the message was received, as far as the file's name and mtime tell."""
    return stamp_time(file.stamp) or file.modified


# --- SMS ------------------------------------------------------------------------------------


def sms_received(file: RecordFile, document: dict[str, Any]) -> datetime.datetime:
    """When the fake took the message: date_created, else the name's time, else the mtime."""
    with_seconds = stamp_time(file.stamp)
    try:
        created = parsedate_to_datetime(text(document.get("date_created")))
    except (TypeError, ValueError, IndexError):
        created = None
    if created is not None and created.tzinfo is not None:
        # date_created has whole seconds; the name has microseconds for the same moment.
        return with_seconds if with_seconds and abs(with_seconds - created).total_seconds() < 1 else created
    return with_seconds or file.modified


def parse_sms(file: RecordFile, document: dict[str, Any]) -> SmsRecord:
    listed = document.get("callbacks")
    callbacks = [
        (text(callback.get("status")), text(callback.get("answer")))
        for callback in (listed if isinstance(listed, list) else [])
        if isinstance(callback, dict)
    ]
    return SmsRecord(
        name=file.name,
        received=sms_received(file, document),
        sid=text(document.get("sid")),
        to=text(document.get("to")),
        sender=text(document.get("from") or document.get("messaging_service_sid")),
        body=text(document.get("body")),
        status=text(document.get("status")),
        error_code=text(document.get("error_code")),
        error_message=text(document.get("error_message")),
        segments=text(document.get("num_segments")),
        status_callback=text(document.get("status_callback")),
        callbacks=callbacks,
    )


def sms_records(files: list[RecordFile]) -> list[SmsRecord]:
    """The messages of `files` in their order; a file that cannot be read is an unreadable row."""
    parsed = read_records(files, parse_sms)
    return [parsed.get(file.name) or SmsRecord(file.name, file_time(file), readable=False) for file in files]


# --- Push -----------------------------------------------------------------------------------


def push_received(file: RecordFile, document: dict[str, Any]) -> datetime.datetime:
    value = document.get("received_at")
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return datetime.datetime.fromtimestamp(value, tz=datetime.UTC)
        except (OverflowError, OSError, ValueError):
            pass
    return file_time(file)


def parse_push(file: RecordFile, document: dict[str, Any]) -> PushRecord:
    payload = document.get("payload")
    vapid = document.get("vapid")
    content: dict[str, Any] = payload if isinstance(payload, dict) else {}
    extra = content.get("data") if isinstance(payload, dict) else payload
    return PushRecord(
        name=file.name,
        received=push_received(file, document),
        message_id=text(document.get("id")),
        subscription=text(document.get("subscription")),
        decrypted=document.get("decrypted") is True,
        title=text(content.get("title")),
        body=text(content.get("body")),
        url=text(content.get("url")),
        data="" if extra in (None, {}, "") else text(extra),
        delivery_id=text(content.get("delivery_id")),
        ttl=text(document.get("ttl")),
        urgency=text(document.get("urgency")),
        topic=text(document.get("topic")),
        size=text(document.get("size")),
        vapid_subject=text(vapid.get("sub")) if isinstance(vapid, dict) else "",
    )


def push_records(files: list[RecordFile]) -> list[PushRecord]:
    """The pushes of `files` in their order; a file that cannot be read is an unreadable row."""
    parsed = read_records(files, parse_push)
    return [parsed.get(file.name) or PushRecord(file.name, file_time(file), readable=False) for file in files]
