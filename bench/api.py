"""API: POST /api/v1/notifications under wrk against a bare DRF view, and a 1,000-item batch.

    .venv/bin/python bench/api.py [--duration 15] [--connections 16] [--rounds 2] [--web uvicorn]

Prints figures, asserts nothing. Needs wrk. One throwaway database (dropped at the end, also on
Ctrl-C), a Redis db of its own (12 unless --redis-url; flushed at the end).

One server process group serves both endpoints with the same settings: Herald's web server as
deploy/Procfile runs it (uvicorn on tenant_platform.asgi, 2 processes, WEB_THREADS=8; or
--web gunicorn: 4 sync workers on tenant_platform.wsgi), with DJANGO_SETTINGS_MODULE=
bench.api_settings, which is tenant_platform.settings.dev (DEBUG=0) with ROOT_URLCONF =
bench._common: Herald's routes plus /bench/bare.
- Herald: POST /api/v1/notifications, the real thing (API key, per-key rate limit, idempotency
  hook, validation, recipient upsert, notification + delivery + event rows, the Celery publish
  after commit to a Redis db that no worker reads).
- Bare: a DRF APIView (no authentication, permission or throttle classes) that parses the same
  JSON body and INSERTs it as one row (public.bench_bare_row), answering 202.
- Floor: only the I/O the issue asks of every accepted notification: Herald's API key
  authentication, per-key rate limit and Idempotency-Key hook, the body parsed, two rows (a
  notification and a delivery) in one transaction, one LPUSH after the commit. No validation,
  recipient, rendering, events or live update: what the API would cost if all of that were free,
  so its ratio to the bare view bounds what Herald's own can reach on this server.
wrk -t2 -c16, a Lua script giving each request its own external_id; a 3 s warm-up each, then
--rounds alternating timed runs of --duration seconds. The API's per-key limit is raised.
Then 3 POST /api/v1/notifications/batch of 1,000 items (each its own recipient), timed.
Each timed run also reports the CPU the web server's processes and the bench database's
PostgreSQL backends spent per request (psutil): on a shared, busy machine req/s and latency swing
with the neighbours' load, the CPU a request costs much less.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from importlib.util import find_spec
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench import _common as c  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=15)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batches", type=int, default=3)
    c.add_common_args(parser, "herald_bench_api")
    return parser.parse_args()


Readings = dict[int, tuple[str, float]]  # pid -> ("web" or "pg", CPU seconds so far)


def cpu_by_process(web_pid: int, db_name: str) -> Readings:
    """CPU time used so far by each of the web server's processes and each PostgreSQL backend
    connected to the bench's database (the web server's connections are kept open), by pid."""
    import psutil

    found: Readings = {}

    def add(process: psutil.Process, kind: str) -> None:
        try:
            times = process.cpu_times()
        except psutil.Error:
            return  # gone since it was listed
        found[process.pid] = (kind, float(times.user + times.system))

    root = psutil.Process(web_pid)
    for p in [root, *root.children(recursive=True)]:
        add(p, "web")
    for p in psutil.process_iter(["cmdline"]):
        if f" {db_name} " in " ".join(p.info["cmdline"] or []):
            add(p, "pg")
    return found


def cpu_used(before: Readings, after: Readings) -> tuple[float, float]:
    """(web, PostgreSQL) CPU seconds between two readings. Per process, so one that ended in
    between (a backend whose connection closed) takes nothing away; what it spent after the first
    reading is not counted."""
    used = {"web": 0.0, "pg": 0.0}
    for pid, (kind, seconds) in after.items():
        used[kind] += seconds - before.get(pid, (kind, 0.0))[1]
    return used["web"], used["pg"]


def main() -> int:
    args = parse_args()
    if not shutil.which("wrk"):
        sys.exit("bench/api.py needs wrk: apt-get install -y wrk")
    with c.Bench(c.config_of(args)) as b, tempfile.TemporaryDirectory() as tmp:
        b.migrate_and_setup_django()
        c.print_environment(b)
        tenant = c.provision("apibench")
        conn = b.connect()
        with conn.cursor() as cur:
            cur.execute(
                f"CREATE TABLE public.{c.BARE_TABLE} (id uuid PRIMARY KEY, body jsonb NOT NULL, "
                "created_at timestamptz NOT NULL)"
            )
        web, port = b.start_web(DJANGO_SETTINGS_MODULE="bench.api_settings", **c.API_LIMIT_ENV)
        shape = "2 processes, WEB_THREADS=8" if args.web == "uvicorn" else "4 sync workers"
        print(f"web: {args.web} ({shape}), DJANGO_SETTINGS_MODULE=bench.api_settings; {c.API_LIMIT_TEXT}")
        if args.web == "uvicorn":
            # uvicorn takes these when they are installed (requirements/base.txt pins both).
            http = "httptools" if find_spec("httptools") else "h11 (pure Python)"
            loop = "uvloop" if find_spec("uvloop") else "asyncio"
            print(f"uvicorn: HTTP parser {http}, event loop {loop}")
        print(
            f"wrk -t2 -c{args.connections}, {args.rounds} rounds of {args.duration} s per endpoint, "
            "alternating, after a 3 s warm-up each; no Celery worker runs (messages wait in Redis)\n"
        )
        body = json.dumps(c.notification_body("u-42", "high"))
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {tenant.key}"}
        urls = {
            "herald": f"http://127.0.0.1:{port}/api/v1/notifications",
            "bare": f"http://127.0.0.1:{port}/bench/bare",
            "floor": f"http://127.0.0.1:{port}/bench/floor",
        }
        tmp_path = Path(tmp)
        for url in urls.values():
            c.run_wrk(url, body, headers, 3, args.connections, tmp_path)
        print("== Figures ==")
        print(
            f"{'endpoint':<10}{'round':>6}{'req/s':>9}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'non-2xx':>9}"
            f"{'web CPU':>10}{'PG CPU':>9}  (CPU: ms per request)"
        )
        results: dict[str, list[dict[str, float]]] = {name: [] for name in urls}
        for round_no in range(1, args.rounds + 1):
            for name, url in urls.items():
                before = cpu_by_process(web.proc.pid, args.db_name)
                r = c.run_wrk(url, body, headers, args.duration, args.connections, tmp_path)
                web_cpu, pg_cpu = cpu_used(before, cpu_by_process(web.proc.pid, args.db_name))
                served = max(r["requests"], 1.0)
                r["web_cpu_ms"] = web_cpu / served * 1000
                r["pg_cpu_ms"] = pg_cpu / served * 1000
                results[name].append(r)
                print(
                    f"{name:<10}{round_no:>6}{r['rps']:>9.0f}{r['p50_ms']:>9.1f}{r['p90_ms']:>9.1f}"
                    f"{r['p99_ms']:>9.1f}{r['non_2xx']:>9.0f}{r['web_cpu_ms']:>10.2f}{r['pg_cpu_ms']:>9.2f}"
                    + ("  socket errors" if r["socket_errors"] else ""),
                    flush=True,
                )
        session = c.session_for(tenant)
        batch_times = []
        for k in range(args.batches):
            items = [c.notification_body(f"batch-{k}-{i}") for i in range(1000)]
            payload = json.dumps({"notifications": items})
            t0 = time.perf_counter()
            r = session.post(f"http://127.0.0.1:{port}/api/v1/notifications/batch", data=payload)
            batch_times.append(time.perf_counter() - t0)
            answer = r.json()
            print(
                f"batch {k + 1}: 1,000 items ({len(payload) / 1e3:.0f} kB) answered {r.status_code} in "
                f"{batch_times[-1] * 1000:.0f} ms (accepted {answer.get('accepted')}, "
                f"failed {answer.get('failed')})",
                flush=True,
            )
        print("\n== Against the targets ==")
        h_rps = statistics.median(r["rps"] for r in results["herald"])
        b_rps = statistics.median(r["rps"] for r in results["bare"])
        h_p99 = statistics.median(r["p99_ms"] for r in results["herald"])
        b_p99 = statistics.median(r["p99_ms"] for r in results["bare"])
        print(
            f"POST /api/v1/notifications {h_rps:.0f} req/s, p99 {h_p99:.1f} ms; bare view {b_rps:.0f} req/s, "
            f"p99 {b_p99:.1f} ms (medians over rounds) => {h_rps / b_rps * 100:.0f}% of the bare view "
            "(target >= 85%, with p99 < 50 ms)"
        )
        h_cpu = statistics.median(r["web_cpu_ms"] + r["pg_cpu_ms"] for r in results["herald"])
        b_cpu = statistics.median(r["web_cpu_ms"] + r["pg_cpu_ms"] for r in results["bare"])
        print(
            f"CPU per request, web server + PostgreSQL: herald {h_cpu:.2f} ms, bare view {b_cpu:.2f} ms "
            f"=> the bare view's cost is {b_cpu / h_cpu * 100:.0f}% of Herald's (steadier than req/s on a "
            "busy machine; wrk's and Redis's CPU not counted)"
        )
        f_rps = statistics.median(r["rps"] for r in results["floor"])
        f_p99 = statistics.median(r["p99_ms"] for r in results["floor"])
        f_cpu = statistics.median(r["web_cpu_ms"] + r["pg_cpu_ms"] for r in results["floor"])
        print(
            f"floor (key, per-key limit, two rows in a transaction, one LPUSH; nothing else): {f_rps:.0f} "
            f"req/s, p99 {f_p99:.1f} ms => {f_rps / b_rps * 100:.0f}% of the bare view; CPU {f_cpu:.2f} ms "
            f"per request (the bare view's cost is {b_cpu / f_cpu * 100:.0f}% of it)"
        )
        print(
            f"1,000-item batch: median {statistics.median(batch_times) * 1000:.0f} ms "
            f"(runs: {', '.join(f'{t * 1000:.0f}' for t in batch_times)} ms) (target < 1 s)"
        )
        with conn.cursor() as cur:
            cur.execute(f"SELECT count(*) FROM public.{c.BARE_TABLE}")
            row = cur.fetchone()
        print(f"(rows written by the bare view: {row[0] if row else 0})")
        conn.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
