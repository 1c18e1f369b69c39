"""The `Herald-Signature` header: `t=<unix seconds>,v1=<hex HMAC-SHA256>`.

v1 = HMAC-SHA256(key = the endpoint's secret as UTF-8, message = f"{t}.{raw body}"). Signing the
timestamp with the body lets a receiver refuse a replayed message (`tolerance`). During a secret's
rotation the header carries one `v1` per valid secret; a receiver accepts any that matches.

Receivers can use this module as it is (it needs only the standard library):

    from notifications.webhooks.signing import verify
    if not verify(request.body, request.headers["Herald-Signature"], SECRET):
        return 400
"""

import hashlib
import hmac
import time
from collections.abc import Sequence

HEADER = "Herald-Signature"
SCHEME = "v1"


class SignatureError(Exception):
    """The header does not prove that Herald sent this body recently; the message says why."""


def _as_bytes(payload: bytes | str) -> bytes:
    return payload.encode() if isinstance(payload, str) else payload


def compute(payload: bytes | str, secret: str, timestamp: int) -> str:
    signed = str(timestamp).encode() + b"." + _as_bytes(payload)
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def sign(payload: bytes | str, secrets: Sequence[str], timestamp: int | None = None) -> str:
    """The header value for `payload`, with a v1 for each secret (the current one first)."""
    t = int(time.time()) if timestamp is None else timestamp
    parts = [f"t={t}"] + [f"{SCHEME}={compute(payload, s, t)}" for s in secrets]
    return ",".join(parts)


def check(
    payload: bytes | str, header: str, secret: str, tolerance: int = 300, now: float | None = None
) -> None:
    """Raise SignatureError unless `header` signs `payload` with `secret` within `tolerance` seconds."""
    timestamp: int | None = None
    candidates: list[str] = []
    for item in (header or "").split(","):
        key, _, value = item.strip().partition("=")
        if key == "t":
            try:
                timestamp = int(value)
            except ValueError:
                raise SignatureError("the timestamp is not a number") from None
        elif key == SCHEME:
            candidates.append(value)
    if timestamp is None:
        raise SignatureError("no timestamp (t=) in the header")
    if not candidates:
        raise SignatureError(f"no {SCHEME} signature in the header")
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        raise SignatureError(f"the timestamp is more than {tolerance} s away from now")
    expected = compute(payload, secret, timestamp)
    if not any(hmac.compare_digest(expected, c) for c in candidates):
        raise SignatureError("no signature matches this body and secret")


def verify(
    payload: bytes | str, header: str, secret: str, tolerance: int = 300, now: float | None = None
) -> bool:
    """Whether `header` signs the raw `payload` with `secret`, made within `tolerance` seconds."""
    try:
        check(payload, header, secret, tolerance, now)
    except SignatureError:
        return False
    return True
