"""A local Web Push service (RFC 8030) that checks VAPID and decrypts what it receives.

Tests make subscriptions here (`new_subscription()`: a P-256 key pair and a 16-byte auth secret,
as a browser would), hand `subscription.as_json()` to Herald, and read back what arrived:

    service = FakePushService().start()
    sub = service.new_subscription()
    ... Herald sends ...
    (push,) = service.received(sub)
    push.json()["title"], push.ttl, push.urgency, push.claims["sub"]

For each `POST /push/<id>` the service, like a real one:
- answers 404 for a subscription it does not know;
- needs `Authorization: vapid t=<JWT>, k=<public key>` (401 without): the JWT must be ES256-signed
  by that key, with `aud` = this service's origin, `exp` in the future (at most 24 h ahead) and a
  `sub` (403 otherwise); a subscription made with an applicationServerKey takes only that key;
- needs a `TTL` header, and `Urgency` (when sent) in very-low|low|normal|high (400 otherwise);
- answers 413 for a body over 4096 bytes, and 400 for a body that is not aes128gcm or does not
  decrypt with the subscription's keys;
- otherwise records the plaintext with TTL and Urgency and answers 201 with a Location.
`answer(sub, status, times, retry_after)` makes it answer a chosen status (404, 410, 413, 429 with
Retry-After, 500...) the next `times` times, after the VAPID check.

Also runnable for `make run`:
    python -m tests.fakes.webpush_server --port 8026 --record-dir .data/push
writes each received message to <record-dir>/<time>-<id>.json (decrypted where it knows the
subscription's keys, else its size), and offers `POST /subscriptions` to make a subscription whose
JSON can be registered with Herald at /u/push/subscriptions, so a push can be seen to arrive.
"""

import argparse
import base64
import binascii
import json
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import http_ece
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

MAX_BODY = 4096  # what a push service must accept (RFC 8030 7.2); more is 413
MAX_JWT_LIFETIME = 24 * 3600  # RFC 8292 2: exp no more than 24 hours ahead
URGENCIES = ("very-low", "low", "normal", "high")


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class FakeSubscription:
    """What a browser holds after pushManager.subscribe(): an endpoint and the keys to decrypt."""

    id: str
    endpoint: str
    private_key: ec.EllipticCurvePrivateKey
    auth_secret: bytes
    application_server_key: str | None = None

    @property
    def p256dh(self) -> str:
        public = self.private_key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return b64url(public)

    @property
    def auth(self) -> str:
        return b64url(self.auth_secret)

    def as_json(self) -> dict[str, Any]:
        """The browser's PushSubscription.toJSON()."""
        return {
            "endpoint": self.endpoint,
            "expirationTime": None,
            "keys": {"p256dh": self.p256dh, "auth": self.auth},
        }


@dataclass(frozen=True)
class ReceivedPush:
    """A push message the service accepted."""

    subscription_id: str
    message_id: str
    location: str
    plaintext: bytes | None  # None when the service does not know the subscription's keys
    size: int
    ttl: int
    urgency: str | None
    topic: str | None
    claims: dict[str, Any]
    vapid_key: str
    received_at: float

    def json(self) -> Any:
        assert self.plaintext is not None, "this message's keys are unknown: it was not decrypted"
        return json.loads(self.plaintext)

    def record(self) -> dict[str, Any]:
        """As written to the record dir (and listed by GET /messages)."""
        content: Any
        if self.plaintext is None:
            content = None
        else:
            try:
                content = json.loads(self.plaintext)
            except ValueError:
                content = self.plaintext.decode(errors="replace")
        return {
            "id": self.message_id,
            "subscription": self.subscription_id,
            "received_at": self.received_at,
            "ttl": self.ttl,
            "urgency": self.urgency,
            "topic": self.topic,
            "vapid": {
                "sub": self.claims.get("sub"),
                "aud": self.claims.get("aud"),
                "exp": self.claims.get("exp"),
            },
            "size": self.size,
            "decrypted": self.plaintext is not None,
            "payload": content,
        }


@dataclass
class _Rule:
    status: int
    times: int
    retry_after: str | None


class Refused(Exception):
    def __init__(self, status: int, reason: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = headers or {}


@dataclass
class _State:
    subscriptions: dict[str, FakeSubscription] = field(default_factory=dict)
    received: list[ReceivedPush] = field(default_factory=list)
    attempts: dict[str, list[int]] = field(default_factory=dict)
    rules: dict[str, _Rule] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


class FakePushService:
    def __init__(self, port: int = 0, record_dir: Path | None = None, accept_unknown: bool = False) -> None:
        self.port = port or free_port()
        self.record_dir = record_dir
        # Dev mode: accept pushes for subscriptions made elsewhere (recorded by size, not decrypted).
        self.accept_unknown = accept_unknown
        self.state = _State()
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), _handler_for(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None
        self._load_subscriptions()

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "FakePushService":
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-push", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # --- what tests use ----------------------------------------------------------------------

    def new_subscription(self, application_server_key: str | None = None) -> FakeSubscription:
        sub_id = uuid.uuid4().hex
        sub = FakeSubscription(
            id=sub_id,
            endpoint=f"{self.origin}/push/{sub_id}",
            private_key=ec.generate_private_key(ec.SECP256R1()),
            auth_secret=os.urandom(16),
            application_server_key=application_server_key,
        )
        with self.state.lock:
            self.state.subscriptions[sub_id] = sub
        self._save_subscriptions()
        return sub

    def answer(
        self, sub: FakeSubscription, status: int, times: int = 1, retry_after: str | None = None
    ) -> None:
        """Answer `status` to the next `times` pushes for `sub` that pass the VAPID check."""
        with self.state.lock:
            self.state.rules[sub.id] = _Rule(status, times, retry_after)

    def received(self, sub: FakeSubscription) -> list[ReceivedPush]:
        with self.state.lock:
            return [r for r in self.state.received if r.subscription_id == sub.id]

    def attempts(self, sub: FakeSubscription) -> list[int]:
        """The status answered to each push for `sub`, in order."""
        with self.state.lock:
            return list(self.state.attempts.get(sub.id, []))

    # --- the protocol ------------------------------------------------------------------------

    def handle_push(
        self, sub_id: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], str]:
        try:
            status, out_headers = self._push(sub_id, headers, body)
            reason = ""
        except Refused as refused:
            status, out_headers, reason = refused.status, refused.headers, refused.reason
        with self.state.lock:
            self.state.attempts.setdefault(sub_id, []).append(status)
        return status, out_headers, reason

    def _push(self, sub_id: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str]]:
        with self.state.lock:
            sub = self.state.subscriptions.get(sub_id)
        if sub is None and not self.accept_unknown:
            raise Refused(404, "no such subscription")
        claims, vapid_key = self._check_vapid(headers.get("authorization", ""), sub)
        ttl, urgency = self._check_headers(headers)
        self._apply_rule(sub_id)
        if len(body) > MAX_BODY:
            raise Refused(413, f"payload of {len(body)} bytes exceeds {MAX_BODY}")
        plaintext = self._decrypt(sub, headers, body) if sub is not None else None
        message_id = uuid.uuid4().hex
        push = ReceivedPush(
            subscription_id=sub_id,
            message_id=message_id,
            location=f"{self.origin}/message/{message_id}",
            plaintext=plaintext,
            size=len(body),
            ttl=ttl,
            urgency=urgency,
            topic=headers.get("topic"),
            claims=claims,
            vapid_key=vapid_key,
            received_at=time.time(),
        )
        with self.state.lock:
            self.state.received.append(push)
        self._write_record(push)
        return 201, {"Location": push.location}

    def _check_vapid(self, authorization: str, sub: FakeSubscription | None) -> tuple[dict[str, Any], str]:
        scheme, _, params_text = authorization.partition(" ")
        if scheme.lower() != "vapid":
            raise Refused(401, "missing 'Authorization: vapid t=..., k=...'")
        params = {}
        for part in params_text.split(","):
            name, _, value = part.strip().partition("=")
            params[name.strip()] = value.strip()
        token, key = params.get("t", ""), params.get("k", "")
        if not token or not key:
            raise Refused(401, "vapid authorization needs t= and k=")
        try:
            header_b64, claims_b64, signature_b64 = token.split(".")
            header = json.loads(b64url_decode(header_b64))
            claims = json.loads(b64url_decode(claims_b64))
            signature = b64url_decode(signature_b64)
            public_key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b64url_decode(key))
        except (ValueError, binascii.Error, UnicodeDecodeError):
            raise Refused(401, "malformed vapid token or key") from None
        if header.get("alg") != "ES256" or len(signature) != 64:
            raise Refused(403, "vapid token is not ES256")
        der = encode_dss_signature(
            int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
        )
        try:
            public_key.verify(der, f"{header_b64}.{claims_b64}".encode(), ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            raise Refused(403, "vapid signature does not verify with k") from None
        if not isinstance(claims, dict):
            raise Refused(403, "vapid claims are not an object")
        if claims.get("aud") != self.origin:
            raise Refused(403, f"vapid aud {claims.get('aud')!r} is not {self.origin!r}")
        exp = claims.get("exp")
        now = time.time()
        if not isinstance(exp, int) or exp <= now or exp > now + MAX_JWT_LIFETIME + 60:
            raise Refused(403, f"vapid exp {exp!r} is not within the next 24 hours")
        if not claims.get("sub"):
            raise Refused(403, "vapid claims have no sub")
        if sub is not None and sub.application_server_key and key != sub.application_server_key:
            raise Refused(403, "vapid key is not the subscription's applicationServerKey")
        return claims, key

    def _check_headers(self, headers: dict[str, str]) -> tuple[int, str | None]:
        try:
            ttl = int(headers["ttl"])
        except (KeyError, ValueError):
            raise Refused(400, "TTL header missing or not a number") from None
        urgency = headers.get("urgency")
        if urgency is not None and urgency not in URGENCIES:
            raise Refused(400, f"Urgency {urgency!r} is not one of {', '.join(URGENCIES)}")
        return ttl, urgency

    def _apply_rule(self, sub_id: str) -> None:
        with self.state.lock:
            rule = self.state.rules.get(sub_id)
            if rule is None or rule.times <= 0:
                return
            rule.times -= 1
        extra = {"Retry-After": rule.retry_after} if rule.retry_after is not None else {}
        raise Refused(rule.status, HTTPStatus(rule.status).phrase, extra)

    def _decrypt(self, sub: FakeSubscription, headers: dict[str, str], body: bytes) -> bytes:
        if headers.get("content-encoding") != "aes128gcm":
            raise Refused(400, "Content-Encoding must be aes128gcm")
        try:
            plaintext: bytes = http_ece.decrypt(
                body, private_key=sub.private_key, auth_secret=sub.auth_secret, version="aes128gcm"
            )
        except Exception as exc:  # http_ece raises several types for a body that does not decrypt
            raise Refused(400, f"payload does not decrypt: {exc.__class__.__name__}") from None
        return plaintext

    def _write_record(self, push: ReceivedPush) -> None:
        if self.record_dir is None:
            return
        self.record_dir.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(push.received_at))
        path = self.record_dir / f"{stamp}-{push.message_id}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(push.record(), indent=2))
        tmp.rename(path)  # a reader never sees half a file

    # In dev the subscriptions' keys outlive a restart, so later pushes still decrypt.

    def _subscriptions_file(self) -> Path | None:
        return self.record_dir / "subscriptions.keys" if self.record_dir is not None else None

    def _save_subscriptions(self) -> None:
        path = self._subscriptions_file()
        if path is None:
            return
        with self.state.lock:
            keys = {
                sub.id: {
                    "private_key": b64url(
                        sub.private_key.private_numbers().private_value.to_bytes(32, "big")
                    ),
                    "auth": sub.auth,
                    "application_server_key": sub.application_server_key,
                }
                for sub in self.state.subscriptions.values()
            }
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(keys))

    def _load_subscriptions(self) -> None:
        path = self._subscriptions_file()
        if path is None or not path.exists():
            return
        for sub_id, keys in json.loads(path.read_text()).items():
            private_value = int.from_bytes(b64url_decode(keys["private_key"]), "big")
            self.state.subscriptions[sub_id] = FakeSubscription(
                id=sub_id,
                endpoint=f"{self.origin}/push/{sub_id}",
                private_key=ec.derive_private_key(private_value, ec.SECP256R1()),
                auth_secret=b64url_decode(keys["auth"]),
                application_server_key=keys.get("application_server_key"),
            )

    def messages(self) -> list[dict[str, Any]]:
        with self.state.lock:
            return [push.record() for push in self.state.received]


def _handler_for(service: FakePushService) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            parts = self.path.strip("/").split("/")
            if len(parts) == 2 and parts[0] == "push":
                headers = {k.lower(): v for k, v in self.headers.items()}
                status, out_headers, reason = service.handle_push(parts[1], headers, body)
                self._reply(status, {"error": reason} if reason else None, out_headers)
            elif parts == ["subscriptions"]:
                options = json.loads(body or b"{}")
                sub = service.new_subscription(options.get("applicationServerKey"))
                self._reply(201, sub.as_json())
            else:
                self._reply(404, {"error": "no such route"})

        def do_GET(self) -> None:
            if self.path.rstrip("/") == "/messages":
                self._reply(200, {"messages": service.messages()})
            else:
                self._reply(404, {"error": "no such route"})

        def _reply(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
            data = json.dumps(body).encode() if body is not None else b""
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            if data:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # quiet in tests
            pass

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description="A local Web Push service that records what it receives.")
    parser.add_argument("--port", type=int, default=8026)
    parser.add_argument("--record-dir", type=Path, default=Path(".data/push"))
    args = parser.parse_args()
    service = FakePushService(port=args.port, record_dir=args.record_dir, accept_unknown=True)
    print(f"fake push service on {service.origin}, recording to {args.record_dir}", flush=True)
    try:
        service._server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        service._server.server_close()


if __name__ == "__main__":
    main()
