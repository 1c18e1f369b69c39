"""A local HTTP server that speaks Twilio's Messages API, for tests and for `make run`.

    POST /2010-04-01/Accounts/<AccountSid>/Messages.json   (HTTP basic auth: AccountSid:AuthToken)
    GET  /2010-04-01/Accounts/<AccountSid>/Messages/<MessageSid>.json

It answers as Twilio does: 201 with a message resource (sid "SM" + 32 hex, status "queued"),
or Twilio's error payloads -- 401/20003 for wrong credentials, 400/21211 for a number that is
not E.164, 21602/21603/21604 for a missing field -- and, on demand, fails chosen numbers
(`fail(to, 400|429|500|503, times)`, with Retry-After on 429). It records what it received.

It posts status callbacks as Twilio does: form fields MessageSid, MessageStatus, ErrorCode...
to the message's StatusCallback URL, signed with RequestValidator(auth_token). A *.localhost
host does not resolve in Python, so it connects to 127.0.0.1 (or `callback_target`) and sends
the URL's host in the Host header, as a reverse proxy would.

As a command (`make run`):
    python -m tests.fakes.twilio_server --port 8025 --record-dir .data/sms \
        --account-sid AC... --auth-token ... [--callback-delay 1.5] [--fail +15005550001:400]
it writes each message as JSON into the record dir and reports it delivered a moment later.
"""

import argparse
import base64
import binascii
import http.client
import json
import logging
import math
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote_plus, urlsplit

from twilio.request_validator import RequestValidator

log = logging.getLogger("fake-twilio")

API_VERSION = "2010-04-01"
E164 = re.compile(r"^\+[1-9]\d{1,14}$")
MESSAGES = re.compile(rf"^/{API_VERSION}/Accounts/(?P<account>AC[0-9a-fA-F]{{32}})/Messages\.json$")
ONE_MESSAGE = re.compile(
    rf"^/{API_VERSION}/Accounts/(?P<account>AC[0-9a-fA-F]{{32}})/Messages/(?P<sid>SM[0-9a-f]{{32}})\.json$"
)

# Twilio's own answers for the failures tests ask for: status -> (code, message).
FAILURES: dict[int, tuple[int, str]] = {
    400: (21211, "The 'To' number {to} is not a valid phone number."),
    401: (20003, "Authenticate"),
    404: (20404, "The requested resource was not found"),
    429: (20429, "Too Many Requests"),
    500: (20500, "An internal server error has occurred"),
    503: (20503, "Service Unavailable"),
}


def new_sid(prefix: str) -> str:
    """A Twilio SID: two letters and 32 hex digits."""
    return prefix + secrets.token_hex(16)


def twilio_date(when: datetime | None = None) -> str:
    return (when or datetime.now(UTC)).strftime("%a, %d %b %Y %H:%M:%S +0000")


@dataclass
class Received:
    """One message Twilio accepted: the form it was sent with and the resource it answered."""

    account_sid: str
    form: dict[str, str]
    resource: dict[str, Any]
    callbacks: list[dict[str, Any]] = field(default_factory=list)
    received_at: str = field(default_factory=lambda: datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f"))

    @property
    def sid(self) -> str:
        return str(self.resource["sid"])

    @property
    def to(self) -> str:
        return self.form.get("To", "")

    @property
    def from_(self) -> str:
        return self.form.get("From", "")

    @property
    def body(self) -> str:
        return self.form.get("Body", "")

    @property
    def status_callback(self) -> str:
        return self.form.get("StatusCallback", "")

    @property
    def messaging_service_sid(self) -> str:
        return self.form.get("MessagingServiceSid", "")


@dataclass
class _Rule:
    status: int
    times: int
    code: int | None = None
    message: str | None = None
    retry_after: str | None = None


@dataclass
class CallbackResult:
    status: int
    body: str

    def json(self) -> Any:
        return json.loads(self.body)


class FakeTwilioServer:
    def __init__(
        self,
        accounts: dict[str, str] | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        callback_target: tuple[str, int] | None = None,
        record_dir: Path | None = None,
        callback_delay: float | None = None,
    ) -> None:
        """`accounts`: AccountSid -> AuthToken that may send. `callback_target`: where status
        callbacks connect (host, port), whatever their URL says (its host goes in Host).
        `callback_delay`: report each message sent, then delivered, this many seconds after it."""
        self.accounts = dict(accounts or {})
        self.callback_target = callback_target
        self.record_dir = record_dir
        self.callback_delay = callback_delay
        self.lock = threading.Lock()
        self.messages: list[Received] = []
        self.attempts: dict[str, int] = {}
        self.rules: dict[str, _Rule] = {}
        self.requests = 0
        self._httpd = ThreadingHTTPServer((host, port), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.fake = self  # type: ignore[attr-defined]
        self._thread: threading.Thread | None = None
        self._timers: list[threading.Timer] = []

    # --- life cycle --------------------------------------------------------------------------

    @property
    def port(self) -> int:
        port: int = self._httpd.server_address[1]
        return port

    @property
    def url(self) -> str:
        """What TWILIO_API_BASE_URL should be."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "FakeTwilioServer":
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="fake-twilio", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        for timer in self._timers:
            timer.cancel()
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    # --- what tests set up and read ----------------------------------------------------------

    def add_account(self, account_sid: str | None = None, auth_token: str | None = None) -> tuple[str, str]:
        """Register an account (a new one by default) and return (AccountSid, AuthToken)."""
        sid = account_sid or new_sid("AC")
        token = auth_token or secrets.token_hex(16)
        with self.lock:
            self.accounts[sid] = token
        return sid, token

    def fail(
        self,
        to: str,
        status: int,
        times: int = 1,
        *,
        code: int | None = None,
        message: str | None = None,
        retry_after: float | str | None = None,
    ) -> None:
        """Answer the next `times` messages to `to` with `status` and Twilio's payload for it."""
        with self.lock:
            self.rules[to] = _Rule(
                status, times, code, message, None if retry_after is None else str(retry_after)
            )

    def messages_to(self, to: str) -> list[Received]:
        with self.lock:
            return [m for m in self.messages if m.to == to]

    def attempts_for(self, to: str) -> int:
        with self.lock:
            return self.attempts.get(to, 0)

    def message(self, sid: str) -> Received:
        with self.lock:
            for received in self.messages:
                if received.sid == sid:
                    return received
        raise KeyError(sid)

    # --- status callbacks --------------------------------------------------------------------

    def callback_params(self, sid: str, status: str, error_code: str | int | None = None) -> dict[str, str]:
        """The form Twilio posts for `sid` reaching `status`."""
        received = self.message(sid)
        params = {
            "AccountSid": received.account_sid,
            "ApiVersion": API_VERSION,
            "From": str(received.resource.get("from") or ""),
            "MessageSid": sid,
            "MessageStatus": status,
            "SmsSid": sid,
            "SmsStatus": status,
            "To": received.to,
        }
        if received.messaging_service_sid:
            params["MessagingServiceSid"] = received.messaging_service_sid
        if error_code is not None:
            params["ErrorCode"] = str(error_code)
        return params

    def send_callback(
        self,
        sid: str,
        status: str,
        error_code: str | int | None = None,
        *,
        url: str | None = None,
        signed_url: str | None = None,
        auth_token: str | None = None,
        signature: str | None = None,
        params: dict[str, str] | None = None,
    ) -> CallbackResult:
        """Post a status callback for message `sid`, signed as Twilio signs it.

        Tests can forge one: `url` posts elsewhere than the message's StatusCallback,
        `signed_url` signs another URL than the one posted to, `auth_token` signs with
        another token, `signature` sends that header as given ("" sends none), `params`
        replaces the form.
        """
        received = self.message(sid)
        target = url or received.status_callback
        if not target:
            raise ValueError(f"message {sid} has no StatusCallback")
        form = params if params is not None else self.callback_params(sid, status, error_code)
        if signature is None:
            token = auth_token or self.accounts[received.account_sid]
            signature = RequestValidator(token).compute_signature(signed_url or target, form)
        result = self.post_form(target, form, signature)
        with self.lock:
            received.callbacks.append({"status": status, "answer": result.status})
            if result.status < 300 and params is None:
                received.resource["status"] = status
                received.resource["error_code"] = None if error_code is None else int(error_code)
        self._record(received)
        return result

    def deliver(
        self, sid: str, final: str = "delivered", error_code: str | int | None = None
    ) -> CallbackResult:
        """Report `sid` sent, then `final` (delivered, undelivered, failed), as Twilio does."""
        self.send_callback(sid, "sent")
        return self.send_callback(sid, final, error_code)

    def post_form(self, url: str, form: dict[str, str], signature: str) -> CallbackResult:
        parts = urlsplit(url)
        if parts.scheme != "http":
            raise ValueError(f"the fake posts callbacks over http only, not to {url}")
        host = parts.hostname or "127.0.0.1"
        if self.callback_target is not None:
            connect_host, connect_port = self.callback_target
        else:
            local = host == "localhost" or host.endswith(".localhost")
            connect_host, connect_port = ("127.0.0.1" if local else host), parts.port or 80
        body = "&".join(f"{quote_plus(k)}={quote_plus(v)}" for k, v in form.items())
        headers = {
            "Host": parts.netloc,
            "Content-Type": "application/x-www-form-urlencoded; charset=utf-8",
            "User-Agent": "TwilioProxy/1.1",
            "I-Twilio-Idempotency-Token": secrets.token_hex(16),
        }
        if signature:
            headers["X-Twilio-Signature"] = signature
        connection = http.client.HTTPConnection(connect_host, connect_port, timeout=15)
        try:
            path = parts.path + (f"?{parts.query}" if parts.query else "")
            connection.request("POST", path, body=body.encode(), headers=headers)
            response = connection.getresponse()
            return CallbackResult(response.status, response.read().decode(errors="replace"))
        finally:
            connection.close()

    # --- the API -----------------------------------------------------------------------------

    def create_message(
        self, account_sid: str, form: dict[str, str]
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        """(status, JSON body, extra headers) for POST .../Messages.json."""
        to = form.get("To", "")
        with self.lock:
            self.requests += 1
            self.attempts[to] = self.attempts.get(to, 0) + 1
            rule = self.rules.get(to)
            if rule and rule.times > 0:
                rule.times -= 1
                headers = {"Retry-After": rule.retry_after} if rule.retry_after is not None else {}
                return (*error(rule.status, code=rule.code, message=rule.message, to=to), headers)
        if not to:
            return (*error(400, code=21604, message="A 'To' phone number is required."), {})
        if not E164.match(to):
            return (*error(400, to=to), {})
        service = form.get("MessagingServiceSid", "")
        if not form.get("From") and not service:
            return (*error(400, code=21603, message="A 'From' phone number is required."), {})
        body = form.get("Body", "")
        if not body and not form.get("MediaUrl"):
            return (*error(400, code=21602, message="Message body is required."), {})
        if len(body) > 1600:
            return (
                *error(
                    400, code=21617, message="The concatenated message body exceeds the 1600 character limit."
                ),
                {},
            )
        resource = message_resource(account_sid, form)
        received = Received(account_sid=account_sid, form=dict(form), resource=resource)
        with self.lock:
            self.messages.append(received)
        self._record(received)
        if self.callback_delay is not None and received.status_callback:
            self._schedule_delivery(received.sid)
        return 201, resource, {}

    def fetch_message(self, account_sid: str, sid: str) -> tuple[int, dict[str, Any]]:
        try:
            received = self.message(sid)
        except KeyError:
            return error(404)
        if received.account_sid != account_sid:
            return error(404)
        return 200, received.resource

    def authenticate(self, header: str, account_sid: str) -> bool:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(value, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        with self.lock:
            token = self.accounts.get(user)
        return token is not None and secrets.compare_digest(token, password) and user == account_sid

    # --- make run ----------------------------------------------------------------------------

    def _schedule_delivery(self, sid: str) -> None:
        def report() -> None:
            try:
                result = self.deliver(sid)
                log.info("status callback for %s answered %s", sid, result.status)
            except (OSError, ValueError) as exc:
                log.warning("status callback for %s failed: %s", sid, exc)

        timer = threading.Timer(self.callback_delay or 0.0, report)
        timer.daemon = True
        self._timers.append(timer)
        timer.start()

    def _record(self, received: Received) -> None:
        if self.record_dir is None:
            return
        self.record_dir.mkdir(parents=True, exist_ok=True)
        with self.lock:
            document = {
                **received.resource,
                "status_callback": received.status_callback,
                "callbacks": list(received.callbacks),
            }
        path = self.record_dir / f"{received.received_at}-{received.sid}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(document, indent=2))
        tmp.replace(path)


def error(
    status: int, *, code: int | None = None, message: str | None = None, to: str = ""
) -> tuple[int, dict[str, Any]]:
    """Twilio's error payload for `status` (its legacy format, which the SDK reads)."""
    default_code, default_message = FAILURES.get(status, (status * 100, "Error"))
    code = code or default_code
    return status, {
        "code": code,
        "message": (message or default_message).format(to=to),
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


def message_resource(account_sid: str, form: dict[str, str]) -> dict[str, Any]:
    sid = new_sid("SM")
    body = form.get("Body", "")
    now = datetime.now(UTC)
    service = form.get("MessagingServiceSid") or None
    uri = f"/{API_VERSION}/Accounts/{account_sid}/Messages/{sid}.json"
    return {
        "account_sid": account_sid,
        "api_version": API_VERSION,
        "body": body,
        "date_created": twilio_date(now),
        "date_sent": None,
        "date_updated": twilio_date(now),
        "direction": "outbound-api",
        "error_code": None,
        "error_message": None,
        "from": form.get("From") or None,
        "messaging_service_sid": service,
        "num_media": "0",
        "num_segments": str(segments(body)),
        "price": None,
        "price_unit": "USD",
        "sid": sid,
        # With a Messaging Service and no From, Twilio first picks a sender ("accepted").
        "status": "accepted" if service and not form.get("From") else "queued",
        "subresource_uris": {"media": uri.replace(".json", "/Media.json")},
        "to": form.get("To", ""),
        "uri": uri,
    }


def segments(body: str) -> int:
    """How many SMS segments Twilio bills (GSM-7: 160 alone, 153 each when split; UCS-2: 70/67)."""
    gsm = all(ord(c) < 128 for c in body)
    single, part = (160, 153) if gsm else (70, 67)
    return 1 if len(body) <= single else math.ceil(len(body) / part)


class _Handler(BaseHTTPRequestHandler):
    server_version = "FakeTwilio/1.0"
    protocol_version = "HTTP/1.1"

    @property
    def fake(self) -> FakeTwilioServer:
        fake: FakeTwilioServer = self.server.fake  # type: ignore[attr-defined]
        return fake

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length).decode(errors="replace") if length else ""
        match = MESSAGES.match(self.path.split("?", 1)[0])
        if match is None:
            self._send(*error(404))
            return
        account = match["account"]
        if not self.fake.authenticate(self.headers.get("Authorization", ""), account):
            self._send(*error(401), {"WWW-Authenticate": 'Basic realm="Twilio API"'})
            return
        form = {k: v[-1] for k, v in parse_qs(raw, keep_blank_values=True).items()}
        status, body, headers = self.fake.create_message(account, form)
        self._send(status, body, headers)
        log.info("%s To=%s -> %s", self.path, form.get("To", ""), status)

    def do_GET(self) -> None:
        match = ONE_MESSAGE.match(self.path.split("?", 1)[0])
        if match is None:
            self._send(*error(404))
            return
        if not self.fake.authenticate(self.headers.get("Authorization", ""), match["account"]):
            self._send(*error(401), {"WWW-Authenticate": 'Basic realm="Twilio API"'})
            return
        self._send(*self.fake.fetch_message(match["account"], match["sid"]))

    def _send(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Twilio-Request-Id", new_sid("RQ"))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug(format, *args)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A local server that speaks Twilio's Messages API.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8025)
    parser.add_argument("--record-dir", type=Path, default=Path(".data/sms"))
    parser.add_argument("--account-sid", required=True)
    parser.add_argument("--auth-token", required=True)
    parser.add_argument(
        "--callback-delay", type=float, default=1.5, help="seconds before reporting a message delivered"
    )
    parser.add_argument(
        "--callback-target",
        default="",
        help="host:port that status callbacks connect to (default: the URL's own, *.localhost -> 127.0.0.1)",
    )
    parser.add_argument(
        "--fail",
        action="append",
        default=[],
        metavar="NUMBER:STATUS[:TIMES]",
        help="answer messages to NUMBER with STATUS (400, 429, 500...), TIMES times (default: always)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s fake-twilio %(message)s")
    target = None
    if args.callback_target:
        target_host, _, target_port = args.callback_target.rpartition(":")
        target = (target_host or "127.0.0.1", int(target_port))
    server = FakeTwilioServer(
        {args.account_sid: args.auth_token},
        host=args.host,
        port=args.port,
        callback_target=target,
        record_dir=args.record_dir,
        callback_delay=args.callback_delay,
    )
    for rule in args.fail:
        number, status, *times = rule.split(":")
        server.fail(
            number,
            int(status),
            int(times[0]) if times else 1_000_000,
            retry_after=1 if status == "429" else None,
        )
    server.start()
    log.info("listening on %s, recording into %s", server.url, args.record_dir)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


if __name__ == "__main__":
    main()
