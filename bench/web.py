"""Web serving: POST /api/v1/notifications req/s and p99 under wrk, per serving setup.

Setups, each against the same fresh database and tenant, one at a time:
  asgi-threads   uvicorn -> tenant_platform.asgi (HTTP through the WSGI app in a fixed thread
                 pool, a2wsgi) -- what `make run` serves on its one origin
  gunicorn-sync  gunicorn sync workers -> tenant_platform.wsgi -- the production API tier
  django-asgi    uvicorn -> Django's own ASGI handler, CONN_MAX_AGE=0 -- for comparison

Each POST is the real thing: key lookup, validation, render check, recipient upsert, notification
+ delivery + event rows in one transaction, and the Celery publish after commit (to a Redis
database that no worker reads, flushed at the end). Needs `wrk` (Debian package wrk).

    .venv/bin/python bench/web.py [--duration 15] [--connections 16]
"""

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg2
import redis

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
DB = "herald_bench_web"
REDIS_URL = "redis://127.0.0.1:6379/13"
BODY = (
    '{"recipient": {"external_id": "u-42", "email": "ana@example.com"}, "channels": ["email"],'
    ' "subject": "Welcome", "body": "Hello {{ name }}", "data": {"name": "Ana"}, "priority": "high"}'
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def admin_sql(sql: str) -> None:
    conn = psycopg2.connect(host="127.0.0.1", user="postgres", dbname="postgres")
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(sql)
    conn.close()


def env_for(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="tenant_platform.settings.dev",
        DEBUG="false",
        DATABASE_URL=f"postgres://postgres@127.0.0.1:5432/{DB}",
        REDIS_URL=REDIS_URL,
        CELERY_BROKER_URL=REDIS_URL,
        SECRET_KEY="bench-only-secret-key-bench-only-secret-key",
        LOG_LEVEL="WARNING",
        PYTHONPATH=str(REPO),
        **extra,
    )
    return env


def prepare() -> str:
    admin_sql(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
    admin_sql(f"CREATE DATABASE {DB}")
    manage = [sys.executable, "manage.py"]
    subprocess.run([*manage, "migrate", "--noinput", "-v", "0"], cwd=REPO, env=env_for(), check=True)
    out = subprocess.run(
        [
            *manage,
            "provision_tenant",
            "bench",
            "--domain",
            "bench.localhost",
            "--admin-email",
            "a@bench.test",
        ],
        cwd=REPO,
        env=env_for(),
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return out.strip().splitlines()[-1]


def wait_http(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"server on {port} did not start")


def server_command(setup: str, port: int) -> tuple[list[str], dict[str, str]]:
    if setup == "asgi-threads":
        cmd = [
            str(BIN / "uvicorn"),
            "tenant_platform.asgi:application",
            "--port",
            str(port),
            "--workers",
            "2",
            "--no-access-log",
            "--log-level",
            "warning",
        ]
        return cmd, env_for(WEB_THREADS="8")
    if setup == "gunicorn-sync":
        cmd = [
            str(BIN / "gunicorn"),
            "tenant_platform.wsgi:application",
            "-b",
            f"127.0.0.1:{port}",
            "-w",
            "4",
            "--log-level",
            "warning",
        ]
        return cmd, env_for()
    if setup == "django-asgi":
        cmd = [
            str(BIN / "uvicorn"),
            "--factory",
            "django.core.asgi:get_asgi_application",
            "--port",
            str(port),
            "--workers",
            "2",
            "--no-access-log",
            "--log-level",
            "warning",
        ]
        return cmd, env_for(DB_CONN_MAX_AGE="0")
    raise ValueError(setup)


def run_wrk(port: int, key: str, duration: int, connections: int, script_dir: Path) -> dict[str, float]:
    script = script_dir / "post.lua"
    # A different recipient per request: one shared external_id would serialise every request
    # on that row's lock (the upsert), which measures lock waits, not serving.
    head, tail = BODY.split('"u-42"')
    script.write_text(
        'wrk.method = "POST"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        f'wrk.headers["Authorization"] = "Bearer {key}"\n'
        "local n = 0\n"
        "request = function()\n"
        "  n = n + 1\n"
        f"  local id = '\"u-' .. math.random(1, 1000000000) .. '-' .. n .. '\"'\n"
        f"  local body = {_lua_str(head)} .. id .. {_lua_str(tail)}\n"
        "  return wrk.format(nil, nil, nil, body)\n"
        "end\n"
    )
    out = subprocess.run(
        [
            "wrk",
            "-t2",
            f"-c{connections}",
            f"-d{duration}s",
            "--latency",
            "-s",
            str(script),
            f"http://127.0.0.1:{port}/api/v1/notifications",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"99%\s+([\d.]+\w+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"50%\s+([\d.]+\w+)", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:.*", out)
    return {
        "rps": rps,
        "p50_ms": p50,
        "p99_ms": p99,
        "non_2xx": float(non2xx.group(1)) if non2xx else 0.0,
        "socket_errors": 1.0 if errors else 0.0,
    }


def _lua_str(text: str) -> str:
    return "[==[" + text + "]==]"


def _ms(text: str) -> float:
    value, unit = re.match(r"([\d.]+)(\w+)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def pg_connections() -> int:
    conn = psycopg2.connect(host="127.0.0.1", user="postgres", dbname="postgres")
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", [DB])
        (count,) = cur.fetchone()  # type: ignore[misc]
    conn.close()
    return int(count)


def measure(setup: str, key: str, args: argparse.Namespace, tmp: Path) -> dict[str, float]:
    port = free_port()
    cmd, env = server_command(setup, port)
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, start_new_session=True)
    try:
        wait_http(port)
        run_wrk(port, key, 3, args.connections, tmp)  # warm-up: imports, connections
        result = run_wrk(port, key, args.duration, args.connections, tmp)
        result["pg_connections"] = float(pg_connections())
        return result
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=15)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--setups", default="asgi-threads,gunicorn-sync,django-asgi")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("bench/web.py needs wrk: apt-get install -y wrk")
    print(
        f"cpus={os.cpu_count()} connections={args.connections} "
        f"duration={args.duration}s (after a 3 s warm-up)"
    )
    key = prepare()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            print(f"{'setup':<15}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'non-2xx':>9}{'pg conns':>10}")
            for setup in args.setups.split(","):
                r = measure(setup, key, args, Path(tmp))
                print(
                    f"{setup:<15}{r['rps']:>9.0f}{r['p50_ms']:>9.1f}{r['p99_ms']:>9.1f}"
                    f"{r['non_2xx']:>9.0f}{r['pg_connections']:>10.0f}",
                    flush=True,
                )
    finally:
        redis.Redis.from_url(REDIS_URL).flushdb()
        admin_sql(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")


if __name__ == "__main__":
    main()
