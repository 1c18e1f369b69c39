"""Per-tenant send rate limit: a tenant limited to 50 email/s sends 5,000; another is unaffected.

    .venv/bin/python bench/rate_limit.py [--rate 50] [--batches 5] [--batch-size 1000]

Prints figures, asserts nothing. One throwaway database (dropped at the end, also on Ctrl-C),
a Redis db of its own (12 unless --redis-url; flushed at the end), Debian's smtp-sink as the
SMTP server, Herald's web server (uvicorn on tenant_platform.asgi as deploy/Procfile) and its
worker pools as deploy/Procfile (critical,high -c 1; default -c 1; bulk -c 2).

- Tenant L has rate_limits = {"email": {"rate": 50, "burst": 50}}. It POSTs 5 batches of 1,000
  (POST /api/v1/notifications/batch, normal priority, one recipient each), back to back.
  Measured from L's Delivery.sent_at: the rate over the run (sent / (last sent_at - first POST)),
  the steady rate after the burst ((sent - burst) / (last - first sent_at)), the rate per 10 s
  window, and how many were sent / failed / still pending (none may be dropped).
- Tenant O (the default limit, 500/s) sends --other normal notifications one at a time, paced
  every 0.2 s: first alone, then while L's 5,000 are being paced. Its latency from accept
  (Notification.created_at) to provider hand-off (first DeliveryAttempt.started_at).
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


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument(
        "--rate", type=float, default=50.0, help="L's email limit (per second; burst the same)"
    )
    parser.add_argument("--batches", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--other", type=int, default=100, help="O's sends in each phase")
    c.add_common_args(parser, "herald_bench_rate_limit")
    return parser.parse_args()


def send_o(session: Any, base: str, n: int, tag: str) -> list[str]:
    ids = []
    for i in range(n):
        t0 = time.monotonic()
        r = session.post(f"{base}/notifications", data=json.dumps(c.notification_body(f"o-{tag}-{i}")))
        if r.status_code != 202:
            raise RuntimeError(f"O's POST answered {r.status_code}: {r.text[:500]}")
        ids.append(r.json()["id"])
        time.sleep(max(0.0, 0.2 - (time.monotonic() - t0)))
    return ids


def wait_handed_off(conn: Any, schema: str, ids: list[str], timeout: float) -> dict[str, float]:
    deadline = time.monotonic() + timeout
    while True:
        latencies = c.handoff_latencies(conn, schema, ids)
        if len(latencies) >= len(ids) or time.monotonic() > deadline:
            return latencies
        time.sleep(0.25)


def main() -> int:
    args = parse_args()
    total = args.batches * args.batch_size
    burst = int(args.rate)
    with c.Bench(c.config_of(args)) as b:
        b.start_smtp_sink()
        b.migrate_and_setup_django()
        c.print_environment(b)
        limited = c.provision("limited", rate_limits={"email": {"rate": args.rate, "burst": burst}})
        other = c.provision("other")
        _, port = b.start_web(**c.API_LIMIT_ENV)
        b.start_herald_workers()
        print(f"SMTP sink: {b.smtp_kind}")
        print(f"web: {args.web}; " + c.HERALD_WORKERS_TEXT)
        print(
            f"tenant L: rate_limits = {{'email': {{'rate': {args.rate:g}, 'burst': {burst}}}}}; "
            "tenant O: the "
            f"default (500/s, burst 500); {c.API_LIMIT_TEXT}"
        )
        print(
            f"L sends {args.batches} x {args.batch_size} (batch endpoint); O sends {args.other} per phase\n"
        )
        base = f"http://127.0.0.1:{port}/api/v1"
        conn = b.connect()
        sl, so = c.session_for(limited), c.session_for(other)
        warm = send_o(so, base, 3, "warm")
        wait_handed_off(conn, other.schema, warm, 60)

        print("== Figures ==")
        alone_ids = send_o(so, base, args.other, "alone")
        alone = wait_handed_off(conn, other.schema, alone_ids, 120)
        print(f"O alone:            accept -> hand-off {c.describe_ms(list(alone.values()))}", flush=True)

        started = time.time()
        post_times = []
        for k in range(args.batches):
            items = [c.notification_body(f"l-{k}-{i}") for i in range(args.batch_size)]
            t0 = time.perf_counter()
            r = sl.post(f"{base}/notifications/batch", data=json.dumps({"notifications": items}))
            post_times.append(time.perf_counter() - t0)
            if r.status_code != 202 or r.json()["accepted"] != args.batch_size:
                raise RuntimeError(f"L's batch answered {r.status_code}: {r.text[:1000]}")
        print(
            f"L's {args.batches} batch POSTs took " + ", ".join(f"{s:.2f} s" for s in post_times), flush=True
        )
        busy_ids = send_o(so, base, args.other, "busy")
        busy = wait_handed_off(conn, other.schema, busy_ids, 120)
        o_done = time.time()
        deadline = time.monotonic() + total / args.rate * 2 + 120
        last_print = time.monotonic()
        while True:
            counts = c.status_counts(conn, limited.schema)
            pending = counts.get("queued", 0) + counts.get("sending", 0)
            if not pending or time.monotonic() > deadline:
                break
            if time.monotonic() - last_print > 15:
                last_print = time.monotonic()
                print(f"  {time.time() - started:5.0f} s: L {counts}", flush=True)
            time.sleep(0.5)
        with conn.cursor() as cur:
            cur.execute(
                f'SELECT EXTRACT(EPOCH FROM sent_at) FROM "{limited.schema}".notifications_delivery '
                "WHERE sent_at IS NOT NULL ORDER BY sent_at"
            )
            sent_at = [float(t) for (t,) in cur.fetchall()]
        sent = len(sent_at)
        print(f"L's deliveries by status: {counts} (of {total})")
        overall = sent / (sent_at[-1] - started)
        steady = (sent - burst) / (sent_at[-1] - sent_at[0])
        print(
            f"L: first sent {sent_at[0] - started:.2f} s after its first POST, "
            f"last {sent_at[-1] - started:.2f} s; "
            f"rate over the run {overall:.2f}/s (sent / (last sent_at - first POST)); steady after the "
            f"burst {steady:.2f}/s ((sent - {burst}) / (last - first sent_at))"
        )
        windows: dict[int, int] = {}
        for t in sent_at:
            windows[int((t - started) // 10)] = windows.get(int((t - started) // 10), 0) + 1
        print(
            "L per 10 s window (mails/s): "
            + " ".join(f"{windows.get(w, 0) / 10:.0f}" for w in range(max(windows) + 1))
        )
        print(
            f"O during L's run (O's sends ended {o_done - started:.0f} s into L's "
            f"{sent_at[-1] - started:.0f} s): "
            f"accept -> hand-off {c.describe_ms(list(busy.values()))}"
        )
        print("\n== Against the targets ==")
        print(
            f"L's rate over the run {overall:.2f}/s = {(overall / args.rate - 1) * 100:+.1f}% "
            f"of {args.rate:g}/s "
            f"(steady {(steady / args.rate - 1) * 100:+.1f}%) (target within +-5%); sent {sent} of {total}, "
            f"failed {counts.get('failed', 0)}, pending {pending} (target: none dropped)"
        )
        p99a = c.percentile(list(alone.values()), 99)
        p99b = c.percentile(list(busy.values()), 99)
        print(
            f"O's p99 accept -> hand-off: alone {p99a * 1000:.1f} ms, during L's run {p99b * 1000:.1f} ms "
            f"({p99b / p99a:.1f}x); p50 {c.percentile(list(alone.values()), 50) * 1000:.1f} -> "
            f"{c.percentile(list(busy.values()), 50) * 1000:.1f} ms (target: unaffected)"
        )
        conn.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
