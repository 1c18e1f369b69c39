"""Browser tests: headless Debian Chromium driven by Playwright, against a live Herald server.

- `herald_server`: Herald's ASGI app under uvicorn in a subprocess, on a free port, against the
  test database (so whatever a test commits with `live_db` is what the browser sees).
  `herald_server.url(persona)` is the tenant's origin, e.g. http://alpha.localhost:PORT: Chromium
  resolves every *.localhost name to 127.0.0.1 itself (Python does not: from Python connect to
  127.0.0.1 and send the Host header) and treats it as a secure context, which service workers
  and push need.
- `chromium`: one browser for the session (Debian's /usr/bin/chromium; `apt-get install -y
  chromium` provides it; never `playwright install`, which downloads).
- `browser_context`: a fresh profile per test; `screenshot(page, name)` saves under the test
  output directory (TEST_OUTPUT_DIR or test-output/).
"""

import socket
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.db import connection, connections
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright

from tests.browser import CHROMIUM, CHROMIUM_ARGS, require_chromium
from tests.conftest import OUTPUT, Persona, Personas, Process, service_env
from tests.fakes.smtp_server import FakeSmtpServer, free_port

APPLICATION_NAME = "herald-e2e-server"


@dataclass(frozen=True)
class HeraldServer:
    port: int
    process: Process

    def url(self, persona: Persona, path: str = "") -> str:
        return f"http://{persona.domain}:{self.port}{path}"


def _wait_for_port(port: int, process: Process, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.proc.poll() is not None:
            raise AssertionError(f"live server exited early:\n{process.log()[-3000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"live server not listening on {port} after {timeout}s:\n{process.log()[-3000:]}")


@pytest.fixture(scope="session")
def herald_server(
    personas: Personas, smtp_server: FakeSmtpServer, django_db_blocker: Any
) -> Iterator[HeraldServer]:
    port = free_port()
    env = service_env(smtp_server.url, WEB_THREADS="4")
    env["DATABASE_URL"] += f"?application_name={APPLICATION_NAME}"  # its sessions, by name
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)  # the server under test keeps Django's guard
    uvicorn = str(Path(sys.executable).parent / "uvicorn")
    process = Process(
        "live-server",
        [
            uvicorn,
            "tenant_platform.asgi:application",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--lifespan",
            "off",
        ],
        env,
    )
    _wait_for_port(port, process)
    yield HeraldServer(port, process)
    process.stop()
    with django_db_blocker.unblock():
        _wait_for_sessions_to_end()


def _wait_for_sessions_to_end(timeout: float = 10.0) -> None:
    """PostgreSQL ends a dead client's sessions a moment later; dropping the test database
    before then fails with "being accessed by other users"."""
    deadline = time.monotonic() + timeout
    with connection.cursor() as cursor:
        while time.monotonic() < deadline:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", [APPLICATION_NAME]
            )
            row = cursor.fetchone()
            if row is None or row[0] == 0:
                return
            time.sleep(0.1)


@pytest.fixture(autouse=True)
def _orm_beside_playwright(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Playwright's sync API keeps an event loop running in this thread, and Django refuses ORM
    calls from a thread with a running loop; the tests' ORM calls never overlap a browser call,
    so allow them here (only in this process's e2e tests: servers under test never get this).
    Those calls get a connection of their own (Django keys connections by async context):
    close it afterwards, or the test database cannot be dropped."""
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    yield
    connections.close_all()


# Package scope: Playwright's sync API keeps an event loop running while it is open, and Django
# refuses ORM calls from a thread with a running loop -- so it must be closed before the other
# packages' tests run.
@pytest.fixture(scope="package")
def playwright_driver() -> Iterator[Playwright]:
    require_chromium()
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="package")
def chromium(playwright_driver: Playwright) -> Iterator[Browser]:
    browser = playwright_driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    yield browser
    browser.close()


@pytest.fixture
def browser_context(chromium: Browser) -> Iterator[BrowserContext]:
    context = chromium.new_context()
    yield context
    context.close()


@pytest.fixture
def screenshot(request: pytest.FixtureRequest) -> Callable[[Page, str], Path]:
    def take(page: Page, name: str) -> Path:
        directory = OUTPUT / "screenshots"
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{request.node.name}-{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take
