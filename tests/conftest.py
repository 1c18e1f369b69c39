"""Shared fixtures: two tenants and an inactive one, a real SMTP server, a real Celery worker.

Personas: `alpha` and `beta` are tenants with API keys; an outsider has no key (or the other
tenant's key). Tenants are provisioned once per session in the test database and committed.
"""

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from django.conf import settings
from django.db import connection
from django.test import Client

from tenants.models import Tenant
from tenants.provisioning import provision_tenant
from tenants.schemas import use_public
from tests.fakes.smtp_server import FakeSmtpServer, free_port
from tests.fakes.twilio_server import FakeTwilioServer

REPO = Path(__file__).resolve().parent.parent
OUTPUT = Path(os.environ.get("TEST_OUTPUT_DIR", REPO / "test-output"))


@dataclass
class Persona:
    tenant: Tenant
    domain: str
    api_key: str

    def client(self, host: str | None = None) -> Client:
        """A Django test client speaking to `host` (default: this tenant's domain) with our key."""
        return Client(HTTP_HOST=host or self.domain, HTTP_AUTHORIZATION=f"Bearer {self.api_key}")


@dataclass
class Personas:
    alpha: Persona
    beta: Persona
    inactive: Persona


def _provision(slug: str) -> Persona:
    result = provision_tenant(
        slug, domain=f"{slug}.localhost", admin_email=f"owner@{slug}.test", admin_password="pw"
    )
    return Persona(tenant=result.tenant, domain=result.domain, api_key=result.api_key)


@pytest.fixture(scope="session")
def django_db_setup(request: pytest.FixtureRequest, django_db_blocker: Any) -> Iterator[Personas]:
    """Create the test database for every session (pytest-django's own fixture only does so when
    a collected test is marked django_db, and the worker tests use committed data instead)."""
    from django.test.utils import setup_databases, teardown_databases

    with django_db_blocker.unblock():
        db_cfg = setup_databases(verbosity=0, interactive=False, aliases={"default": True})
        assert connection.settings_dict["NAME"].startswith("test_"), "refusing to test on a real database"
        personas = Personas(alpha=_provision("alpha"), beta=_provision("beta"), inactive=_provision("gamma"))
        personas.inactive.tenant.is_active = False
        personas.inactive.tenant.save()
    yield personas
    with django_db_blocker.unblock():
        connection.close()
        teardown_databases(db_cfg, verbosity=0)


@pytest.fixture(scope="session")
def personas(django_db_setup: Personas) -> Personas:
    return django_db_setup


@pytest.fixture(autouse=True)
def _back_to_public() -> Iterator[None]:
    use_public()
    yield
    use_public()


@pytest.fixture
def live_db(django_db_setup: Personas, django_db_blocker: Any) -> Iterator[None]:
    """Database access in autocommit, so a separate worker process sees what the test writes."""
    with django_db_blocker.unblock():
        yield


@pytest.fixture(scope="session")
def smtp_server() -> Iterator[FakeSmtpServer]:
    server = FakeSmtpServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def twilio_server() -> Iterator[FakeTwilioServer]:
    """Twilio's Messages API on a free port; the worker's TWILIO_API_BASE_URL points here."""
    server = FakeTwilioServer().start()
    yield server
    server.stop()


def _test_database_url() -> str:
    db = connection.settings_dict
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def service_env(smtp_url: str, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="tenant_platform.settings.test",
        DATABASE_URL=_test_database_url(),
        EMAIL_URL=smtp_url,
        PYTHONPATH=str(REPO),
        **extra,
    )
    return env


class Process:
    """A child process (worker, beat) whose log the tests can wait on."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        OUTPUT.mkdir(parents=True, exist_ok=True)
        self.log_path = OUTPUT / f"{name}.log"
        self._log = self.log_path.open("w")
        self.proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=self._log, stderr=subprocess.STDOUT)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, text: str, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            log = self.log()
            if text in log:
                return log
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.log_path.name} exited early:\n{log[-3000:]}")
            time.sleep(0.1)
        raise AssertionError(f"{text!r} not in {self.log_path.name} after {timeout}s:\n{self.log()[-3000:]}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


def celery_bin() -> str:
    return str(Path(sys.executable).parent / "celery")


@pytest.fixture(scope="session")
def worker(
    django_db_setup: Personas, smtp_server: FakeSmtpServer, twilio_server: FakeTwilioServer
) -> Iterator[Process]:
    """A real Celery worker (prefork, 2 processes) on every queue, against the test database."""
    redis.Redis.from_url(settings.REDIS_URL).flushdb()  # no stale messages from an earlier run
    # Every queue the settings declare, the webhook queue among them (whatever WEBHOOK_QUEUE names).
    queues = ",".join(queue.name for queue in settings.CELERY_TASK_QUEUES)
    proc = Process(
        "worker",
        [
            celery_bin(),
            "-A",
            "tenant_platform",
            "worker",
            "-Q",
            queues,
            "-c",
            "2",
            "-l",
            "info",
            "-n",
            f"test-{os.getpid()}@%h",
            "--without-gossip",
            "--without-mingle",
        ],
        service_env(smtp_server.url, TWILIO_API_BASE_URL=twilio_server.url),
    )
    proc.wait_for_log("ready.", timeout=60)
    # The fair dispatcher, as in production: bulk batches (and normal ones while their queue is
    # contended) reach the broker through it.
    dispatcher = Process(
        "dispatcher",
        [sys.executable, "manage.py", "dispatch"],
        service_env(smtp_server.url, TWILIO_API_BASE_URL=twilio_server.url),
    )
    wait_until(lambda: redis.Redis.from_url(settings.REDIS_URL).exists("herald:fair:heartbeat"), timeout=30)
    yield proc
    dispatcher.stop()
    proc.stop()


def wait_until(predicate: Callable[[], Any], timeout: float = 20.0, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


class Broker:
    """A Redis server of the test's own: it can be stopped without touching anything else, and no
    worker but the test's own reads what is published to it."""

    def __init__(self) -> None:
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> "Broker":
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
        )
        wait_until(lambda: port_open(self.port), timeout=10)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None

    @contextmanager
    def frozen(self) -> Iterator[None]:
        """The server stopped in its tracks (SIGSTOP), its connections open: the kernel still
        completes new ones and takes what is written, and nothing answers."""
        assert self.proc is not None, "start it first"
        self.proc.send_signal(signal.SIGSTOP)
        try:
            yield
        finally:
            self.proc.send_signal(signal.SIGCONT)


def port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def broker() -> Iterator[Broker]:
    b = Broker().start()
    yield b
    b.stop()


@pytest.fixture
def silent_broker() -> Iterator[str]:
    """A Redis broker URL whose server takes connections and never answers (a frozen server).
    Closing it at the end resets the connections it never read, so a publish still waiting on
    one fails then."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)  # connections complete in the kernel; nothing ever reads them
    try:
        yield f"redis://127.0.0.1:{server.getsockname()[1]}/0"
    finally:
        server.close()
