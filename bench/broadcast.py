"""One email broadcast through Herald's API to a local SMTP sink, against plain Celery baselines.

    .venv/bin/python bench/broadcast.py [--recipients 100000] [--per-delivery 3000]

Prints figures, asserts nothing. Everything runs in one go, one phase at a time, against one
throwaway database (dropped at the end, also on Ctrl-C) and a Redis db of its own (12 unless
--redis-url; flushed at the end), with Debian's smtp-sink as the SMTP server (apt-get install
postfix; run as root with -u postfix).

1. Baseline, batched: a plain `celery.Celery` app (bench/_common.py: no Django, no tenancy, no
   rate limit, no events), prefork with as many processes as Herald's bulk pool (-c 2 as
   deploy/Procfile; --baseline-concurrency to differ), prefetch 1. Each task takes 100 delivery ids, loads
   their rows, sends the 100 mails over one SMTP connection and marks the rows sent in one
   `UPDATE ... FROM (VALUES ...)`. N rows of a plain table (same number as the broadcast).
   Timed from handing the pre-published messages to the idle worker (one Redis RENAME) until
   the last UPDATE: consumption only, no publishing.
2. Baseline, one task per delivery: the same worker, a task per delivery, an SMTP connection
   per mail, one UPDATE each, over --per-delivery rows.
3. Herald: its web server (uvicorn on tenant_platform.asgi as deploy/Procfile, 2 processes)
   and its two worker pools as deploy/Procfile (critical,high -c 1; default -c 1; bulk -c 2). The
   tenant's email rate limit is raised to 100,000/s (burst 100,000) for the run, so the limit
   does not pace it. One POST /api/v1/broadcasts with an inline list of N recipients; timed
   from just before the POST until every delivery has left queued/sending (end = the latest
   Delivery.sent_at). Peak memory: the summed RSS of web + workers (all processes), sampled
   every 0.25 s with psutil (the baselines' worker likewise).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench import _common as c  # noqa: E402

SLUG = "bcast"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--recipients", type=int, default=100_000, help="recipients of the broadcast")
    parser.add_argument("--per-delivery", type=int, default=3000, help="deliveries of the one-per-task run")
    parser.add_argument("--timeout", type=float, default=1800, help="give up waiting for Herald after this")
    parser.add_argument(
        "--bulk-concurrency",
        type=int,
        default=c.BULK_CONCURRENCY,
        help="processes of Herald's bulk pool",
    )
    parser.add_argument(
        "--baseline-concurrency",
        type=int,
        default=None,
        help="processes of the baselines' worker (default: the same as Herald's bulk pool)",
    )
    c.add_common_args(parser, "herald_bench_broadcast")
    args = parser.parse_args()
    if args.baseline_concurrency is None:
        args.baseline_concurrency = args.bulk_concurrency
    if min(args.bulk_concurrency, args.baseline_concurrency) < 1:
        parser.error("--bulk-concurrency and --baseline-concurrency take a number of processes, 1 or more")
    return args


def baselines(b: c.Bench, args: argparse.Namespace) -> tuple[c.BaselineRun, c.BaselineRun]:
    conn = b.connect()
    warm = 1000
    ids = c.create_baseline_rows(conn, warm + args.recipients + args.per_delivery + 100)
    worker = b.start_worker("plain", "plain_app", c.PLAIN_QUEUE, args.baseline_concurrency)
    try:
        chunks = [ids[i : i + 100] for i in range(0, warm, 100)]
        c.run_baseline(b, worker, chunks, "bench.send_batch", warm)  # warm-up
        rows = ids[warm : warm + args.recipients]
        chunks = [rows[i : i + 100] for i in range(0, len(rows), 100)]
        batched = c.run_baseline(b, worker, chunks, "bench.send_batch", len(rows))
        print(
            f"baseline, 100 per task:    {batched.deliveries:7d} deliveries in {batched.seconds:7.2f} s = "
            f"{batched.rate:8.0f} deliveries/s  ({batched.tasks} tasks; peak RSS {c.mib(batched.peak_rss)})\n"
            f"                            {batched.cpu}",
            flush=True,
        )
        singles = ids[warm + args.recipients : warm + args.recipients + args.per_delivery]
        c.run_baseline(b, worker, ids[-100:], "bench.send_one", 100)  # warm-up
        one = c.run_baseline(b, worker, singles, "bench.send_one", len(singles))
        print(
            f"baseline, 1 per task:      {one.deliveries:7d} deliveries in {one.seconds:7.2f} s = "
            f"{one.rate:8.0f} deliveries/s  ({one.tasks} tasks; SMTP connection per mail; "
            f"peak RSS {c.mib(one.peak_rss)})\n                            {one.cpu}",
            flush=True,
        )
    finally:
        b.stop(worker)
        conn.close()
    return batched, one


def herald(b: c.Bench, args: argparse.Namespace) -> dict[str, float]:
    tenant = c.provision(SLUG, rate_limits={"email": {"rate": 100_000, "burst": 100_000}})
    web, port = b.start_web(**c.API_LIMIT_ENV)
    workers = b.start_herald_workers(args.bulk_concurrency)
    base = f"http://127.0.0.1:{port}/api/v1"
    session = c.session_for(tenant)
    conn = b.connect()
    # Warm-up: one notification end to end (imports, connections, tenant caches).
    r = session.post(f"{base}/notifications", data=json.dumps(c.notification_body("warm", "bulk")))
    r.raise_for_status()
    wait_settled(conn, tenant.schema, 1, 60)
    recipients = [{"external_id": f"r{i}", "email": f"r{i}@example.com"} for i in range(args.recipients)]
    payload = json.dumps(
        {
            "recipients": recipients,
            "channels": ["email"],
            "subject": c.SUBJECT,
            "body": c.TEXT,
            "data": {"name": "Ana"},
        }
    )
    print(f"Herald: POST /api/v1/broadcasts with {args.recipients} recipients ({len(payload) / 1e6:.1f} MB)")
    pids = [web.proc.pid, *(w.proc.pid for w in workers)]
    roles = {web.proc.pid: "web", **{w.proc.pid: w.label for w in workers}}
    if b.smtp_proc is not None:
        roles[b.smtp_proc.proc.pid] = "smtp-sink"
    with conn.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        (own_backend,) = cur.fetchone() or (0,)
    meter = c.CpuMeter(lambda: roles, b.cfg.db_name, exclude=[own_backend])
    b.redis().delete(c.TASK_CPU_KEY)
    with c.RssSampler(lambda: pids) as rss, meter:
        started = time.time()
        r = session.post(f"{base}/broadcasts", data=payload)
        answered = time.time()
        if r.status_code != 202:
            raise RuntimeError(f"POST /broadcasts answered {r.status_code}: {r.text[:2000]}")
        broadcast_id = r.json()["id"]
        print(f"  POST answered {r.status_code} in {answered - started:.2f} s", flush=True)
        counts = wait_settled(conn, tenant.schema, args.recipients + 1, args.timeout, started)
    with conn.cursor() as cur:
        cur.execute(
            f"""SELECT EXTRACT(EPOCH FROM max(d.sent_at)), EXTRACT(EPOCH FROM min(d.sent_at)),
                       EXTRACT(EPOCH FROM b.fanned_out_at)
                FROM "{tenant.schema}".notifications_delivery d
                JOIN "{tenant.schema}".notifications_notification n ON n.id = d.notification_id
                JOIN "{tenant.schema}".notifications_broadcast b ON b.id = n.broadcast_id
                WHERE b.id = %s GROUP BY b.fanned_out_at""",
            [broadcast_id],
        )
        row = cur.fetchone()
    last_sent, first_sent, fanned_out = (
        float(x) if x is not None else float("nan") for x in row or (None,) * 3
    )
    t0 = time.perf_counter()
    progress = session.get(f"{base}/broadcasts/{broadcast_id}")
    progress_seconds = time.perf_counter() - t0
    sent = counts.get("sent", 0) - 1  # less the warm-up
    seconds = last_sent - started
    print(f"  deliveries by status (incl. 1 warm-up): {counts}")
    print(
        f"  first mail sent {first_sent - started:.2f} s after the POST; fan-out complete "
        f"(fanned_out_at) {fanned_out - started:.2f} s; last sent {seconds:.2f} s"
    )
    print(
        f"  GET /api/v1/broadcasts/<id> took {progress_seconds * 1000:.0f} ms: "
        f"{json.dumps(progress.json())[:400]}"
    )
    by_role = ", ".join(f"{roles[pid]} {c.mib(peak)}" for pid, peak in rss.peak_by_root.items())
    print(
        f"Herald broadcast:          {sent:7d} deliveries in {seconds:7.2f} s = {sent / seconds:8.0f} "
        f"deliveries/s  (peak RSS web + workers {c.mib(rss.peak)}: {by_role})",
        flush=True,
    )
    print(f"                            {meter.describe(sent)} (until every delivery settled)", flush=True)
    print(f"                            {c.describe_task_cpu(c.task_cpu(b.redis()), sent)}", flush=True)
    conn.close()
    return {"rate": sent / seconds, "seconds": seconds, "sent": sent, "peak": rss.peak, "cpu": meter.total}


def wait_settled(
    conn: Any, schema: str, expected: int, timeout: float, started: float | None = None
) -> dict[str, int]:
    """Poll the deliveries' statuses until `expected` have left queued/sending.

    Polls with a query that stops at the first unsettled delivery it finds, and counts every
    status only when none is left (or to print progress every 15 s): a full count over 100,000
    rows every half second took 10-20% of a core from the run it measured. The end time is read
    from the deliveries' `sent_at` afterwards, so the polling interval does not bias it.
    """
    deadline = time.monotonic() + timeout
    last_print = time.monotonic()
    unsettled = f"""SELECT EXISTS (SELECT 1 FROM "{schema}".notifications_delivery
                                   WHERE status IN ('queued', 'sending'))"""
    while True:
        with conn.cursor() as cur:
            cur.execute(unsettled)
            (waiting,) = cur.fetchone()
        if not waiting:
            counts = c.status_counts(conn, schema)
            settled = sum(n for s, n in counts.items() if s not in ("queued", "sending"))
            if settled >= expected:
                return counts
        if time.monotonic() > deadline:
            counts = c.status_counts(conn, schema)
            raise RuntimeError(f"deliveries not settled after {timeout}s: {counts}")
        if started is not None and time.monotonic() - last_print >= 15:
            last_print = time.monotonic()
            print(f"  {time.time() - started:6.0f} s: {c.status_counts(conn, schema)}", flush=True)
        time.sleep(0.5)


def main() -> int:
    args = parse_args()
    with c.Bench(c.config_of(args)) as b:
        b.start_smtp_sink()
        b.migrate_and_setup_django()
        c.print_environment(b)
        print(f"SMTP sink: {b.smtp_kind}")
        print(
            f"web: {args.web} ({'2 processes, WEB_THREADS=8' if args.web == 'uvicorn' else '4 sync workers'})"
        )
        print(
            c.HERALD_WORKERS_TEXT + f"; bulk pool here: --concurrency {args.bulk_concurrency}; "
            f"the baselines' worker: --concurrency {args.baseline_concurrency}"
        )
        print(
            f"tenant {SLUG!r}: rate_limits = {{'email': {{'rate': 100000, 'burst': 100000}}}} for the run "
            "(the default is 500/s, burst 500); " + c.API_LIMIT_TEXT
        )
        print(f"N = {args.recipients} recipients; one-task-per-delivery run over {args.per_delivery}\n")
        print("== Figures ==")
        batched, one = baselines(b, args)
        result = herald(b, args)
        print("\n== Against the targets ==")
        print(
            f"Herald / baseline (100 per task): {result['rate'] / batched.rate * 100:.0f}% (target >= 60%); "
            f"Herald / one task per delivery: {result['rate'] / one.rate:.1f}x (target >= 5x)"
        )
        per = {
            "Herald": result["cpu"] / max(result["sent"], 1),
            "batched": batched.cpu_seconds / batched.deliveries,
            "one": one.cpu_seconds / one.deliveries,
        }
        print(
            f"CPU per delivery (robust to the machine's other load): Herald {per['Herald'] * 1000:.2f} ms, "
            f"baseline 100 per task {per['batched'] * 1000:.2f} ms "
            f"({per['batched'] / per['Herald'] * 100:.0f}% of Herald's), "
            f"1 per task {per['one'] * 1000:.2f} ms ({per['one'] / per['Herald']:.1f}x Herald's)"
        )
        print(
            "Note: Herald's time includes the POST (validating the list), the fan-out (chunk tasks writing "
            "notifications and deliveries) and enqueueing; the baselines' is consumption of pre-published "
            "messages over pre-written rows."
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
