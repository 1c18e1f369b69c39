"""A tenant's backend receiving Herald's webhooks, on a free local port, for tests.

It checks each request's `Herald-Signature` with Herald's own verify helper (against `secrets`),
records what it got, and answers as told: `fail(times, status)` answers the next `times`
requests with `status` (with Retry-After or a Location if asked), `delay` holds each answer,
`on_receive` (if set) is called with each request before it is answered.
"""

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from notifications.webhooks.signing import verify


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    verified: bool
    at: float = field(default_factory=time.monotonic)

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def attempt(self) -> int:
        return int(self.headers["Herald-Delivery-Attempt"])


@dataclass
class _Plan:
    status: int
    times: int
    headers: dict[str, str]


class WebhookReceiver:
    def __init__(self) -> None:
        self.secrets: list[str] = []
        self.delay = 0.0
        self.on_receive: Callable[[Received], None] | None = None
        self.lock = threading.Lock()
        self.received: list[Received] = []
        self.plans: list[_Plan] = []
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.receiver = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="webhook-receiver", daemon=True
        )

    def start(self) -> "WebhookReceiver":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    @property
    def port(self) -> int:
        port: int = self._httpd.server_address[1]
        return port

    def url(self, path: str = "/hooks") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def fail(self, times: int, status: int = 500, **headers: str) -> None:
        with self.lock:
            self.plans.append(_Plan(status, times, {k.replace("_", "-"): v for k, v in headers.items()}))

    def at(self, path: str) -> list[Received]:
        with self.lock:
            return [r for r in self.received if r.path == path]

    def _answer(self) -> tuple[int, dict[str, str]]:
        with self.lock:
            while self.plans and self.plans[0].times <= 0:
                self.plans.pop(0)
            if not self.plans:
                return 200, {}
            plan = self.plans[0]
            plan.times -= 1
            return plan.status, plan.headers


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        receiver: WebhookReceiver = self.server.receiver  # type: ignore[attr-defined]
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        header = self.headers.get("Herald-Signature", "")
        verified = any(verify(body, header, secret) for secret in receiver.secrets)
        request = Received(self.path, dict(self.headers.items()), body, verified)
        with receiver.lock:
            receiver.received.append(request)
        if receiver.on_receive is not None:
            receiver.on_receive(request)
        if receiver.delay:
            time.sleep(receiver.delay)
        status, headers = receiver._answer()
        if not verified and status == 200:
            status = 400
        answer = b'{"ok": true}' if status < 300 else b'{"error": "receiver says no"}'
        try:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)
        except (BrokenPipeError, ConnectionResetError):  # the sender timed out and hung up
            pass
