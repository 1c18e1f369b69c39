"""Noisy neighbour: tenant B's latency while tenant A's bulk broadcast runs, against B alone.

    .venv/bin/python bench/noisy_neighbour.py [--recipients 100000] [--each 300]

Prints figures, asserts nothing. One throwaway database (dropped at the end, also on Ctrl-C),
a Redis db of its own (12 unless --redis-url; flushed at the end), Debian's smtp-sink as the
SMTP server, Herald's web server (uvicorn on tenant_platform.asgi as deploy/Procfile) and its
worker pools as deploy/Procfile: critical,high (-c 1), default (-c 1) and bulk (-c 2).

Tenant B sends --each critical and --each normal email notifications one at a time (sequential
POST /api/v1/notifications, alternating critical and normal, each to its own recipient):
1. alone, with A idle;
2. while tenant A's bulk broadcast of --recipients recipients (POST /api/v1/broadcasts) is being
   fanned out and sent. B starts once A's first mails have gone out.
Latency of one of B's notifications = its first DeliveryAttempt.started_at (written by the
worker when the SMTP server has taken the message) minus Notification.created_at (written in
the request that accepted it): accept to provider hand-off, both on the server's clock.
Tenant A's email rate limit is raised to 100,000/s for the run (else its default 500/s would
pace A); B keeps the default (500/s, burst 500). The API's per-key limit is raised too.
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
    parser.add_argument("--recipients", type=int, default=100_000, help="recipients of A's broadcast")
    parser.add_argument("--each", type=int, default=300, help="B's critical sends, and as many normal")
    parser.add_argument("--timeout", type=float, default=1800)
    c.add_common_args(parser, "herald_bench_noisy")
    return parser.parse_args()


def send_b(session: Any, base: str, each: int, tag: str) -> tuple[dict[str, list[str]], list[float]]:
    """B's sends, one at a time, alternating critical and normal: notification ids per priority."""
    ids: dict[str, list[str]] = {"critical": [], "normal": []}
    round_trips: list[float] = []
    for i in range(each * 2):
        priority = "critical" if i % 2 == 0 else "normal"
        body = json.dumps(c.notification_body(f"b-{tag}-{i}", priority))
        t0 = time.perf_counter()
        r = session.post(f"{base}/notifications", data=body)
        round_trips.append(time.perf_counter() - t0)
        if r.status_code != 202:
            raise RuntimeError(f"B's POST answered {r.status_code}: {r.text[:500]}")
        ids[priority].append(r.json()["id"])
    return ids, round_trips


def wait_b(conn: Any, schema: str, ids: list[str], timeout: float) -> dict[str, float]:
    deadline = time.monotonic() + timeout
    while True:
        latencies = c.handoff_latencies(conn, schema, ids)
        if len(latencies) >= len(ids):
            return latencies
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {len(latencies)} of B's {len(ids)} notifications reached the provider")
        time.sleep(0.25)


def a_counts(conn: Any, schema: str) -> dict[str, int]:
    return c.status_counts(conn, schema)


def main() -> int:
    args = parse_args()
    with c.Bench(c.config_of(args)) as b:
        b.start_smtp_sink()
        b.migrate_and_setup_django()
        c.print_environment(b)
        a = c.provision("tenanta", rate_limits={"email": {"rate": 100_000, "burst": 100_000}})
        tb = c.provision("tenantb")
        _, port = b.start_web(**c.API_LIMIT_ENV)
        b.start_herald_workers()
        print(f"SMTP sink: {b.smtp_kind}")
        print(f"web: {args.web}; " + c.HERALD_WORKERS_TEXT)
        print(
            "tenant A: rate_limits = {'email': {'rate': 100000, 'burst': 100000}} for the run; tenant B: "
            "the default (500/s, burst 500); " + c.API_LIMIT_TEXT
        )
        print(
            f"A: one bulk broadcast of {args.recipients} recipients; B: {args.each} critical + {args.each} "
            "normal, sequential POSTs, alternating\n"
        )
        base = f"http://127.0.0.1:{port}/api/v1"
        conn = b.connect()
        sa, sb = c.session_for(a), c.session_for(tb)
        # Warm-up: a few of B's and one of A's, end to end.
        warm, _ = send_b(sb, base, 5, "warm")
        sa.post(
            f"{base}/notifications", data=json.dumps(c.notification_body("a-warm", "bulk"))
        ).raise_for_status()
        wait_b(conn, tb.schema, warm["critical"] + warm["normal"], 60)

        print("== Figures ==")
        alone_ids, alone_rt = send_b(sb, base, args.each, "alone")
        alone = wait_b(conn, tb.schema, alone_ids["critical"] + alone_ids["normal"], args.timeout)
        print("B alone (A idle):")
        for priority in ("critical", "normal"):
            print(
                f"  {priority:8} accept -> hand-off: {c.describe_ms([alone[i] for i in alone_ids[priority]])}"
            )
        print(f"  POST round trip:           {c.describe_ms(alone_rt)}", flush=True)
        for priority in ("critical", "normal"):
            stages = c.latency_stages(conn, tb.schema, alone_ids[priority])
            print(f"  {priority:8} stages: {c.describe_stages(stages)}", flush=True)

        recipients = [{"external_id": f"a{i}", "email": f"a{i}@example.com"} for i in range(args.recipients)]
        payload = json.dumps(
            {
                "recipients": recipients,
                "channels": ["email"],
                "subject": c.SUBJECT,
                "body": c.TEXT,
                "data": {"name": "Ana"},
                "priority": "bulk",
            }
        )
        started = time.time()
        r = sa.post(f"{base}/broadcasts", data=payload)
        if r.status_code != 202:
            raise RuntimeError(f"A's broadcast answered {r.status_code}: {r.text[:1000]}")
        print(f"A's broadcast POST answered in {time.time() - started:.2f} s", flush=True)
        while a_counts(conn, a.schema).get("sent", 0) < 2:  # its warm-up + the broadcast's first
            if time.time() - started > args.timeout:
                raise RuntimeError("A's broadcast sent nothing")
            time.sleep(0.2)
        at_b_start = a_counts(conn, a.schema)
        b_start = time.time()
        busy_ids, busy_rt = send_b(sb, base, args.each, "busy")
        b_posted = time.time()
        at_b_end = a_counts(conn, a.schema)
        busy = wait_b(conn, tb.schema, busy_ids["critical"] + busy_ids["normal"], args.timeout)
        b_done = time.time()
        at_b_done = a_counts(conn, a.schema)
        # A's own pace while B sends, against the same length of time right after B stopped:
        # bulk work steps aside for B's, but must keep going (BULK_YIELD_SHARE).
        window = max(3.0, b_done - b_start)
        time.sleep(window)
        after = a_counts(conn, a.schema)
        after_done = time.time()
        print(
            f"B with A's broadcast running (B started {b_start - started:.1f} s after A's POST, posted for "
            f"{b_posted - b_start:.1f} s, all handed off {b_done - b_start:.1f} s after its first POST):"
        )
        for priority in ("critical", "normal"):
            print(
                f"  {priority:8} accept -> hand-off: {c.describe_ms([busy[i] for i in busy_ids[priority]])}"
            )
        print(f"  POST round trip:           {c.describe_ms(busy_rt)}")
        for priority in ("critical", "normal"):
            stages = c.latency_stages(conn, tb.schema, busy_ids[priority])
            print(f"  {priority:8} stages: {c.describe_stages(stages)}", flush=True)
        print(f"A's deliveries (incl. 1 warm-up) when B's last POST answered: {at_b_end}")
        print(f"A's deliveries when B's last notification was handed off:    {at_b_done}")
        pending = at_b_end.get("queued", 0) + at_b_end.get("sending", 0)
        unfanned = args.recipients - (sum(at_b_end.values()) - 1)
        print(
            f"  => when B's last POST answered, A still had {pending} deliveries queued/sending and "
            f"{unfanned} recipients not yet fanned out: "
            + (
                "A's load lasted the whole of B's sends."
                if pending or unfanned
                else "A HAD FINISHED BEFORE B'S SENDS DID: use more --recipients."
            )
        )
        a_with_b = (at_b_done.get("sent", 0) - at_b_start.get("sent", 0)) / (b_done - b_start)
        a_after_b = (after.get("sent", 0) - at_b_done.get("sent", 0)) / (after_done - b_done)
        still = after.get("queued", 0) + after.get("sending", 0)
        print(
            f"A's pace: {a_with_b:.0f} sent/s while B sent, {a_after_b:.0f} sent/s in the {window:.1f} s "
            f"after (= {a_with_b / a_after_b:.0%} of it)"
            if a_after_b
            else "A's pace: A sent nothing after B stopped"
        )
        if not still:
            print("  (A finished within that window, so its pace after B is understated)")
        print("\n== Against the targets ==")
        for priority, factor in (("critical", 2), ("normal", 3)):
            p99_alone = c.percentile([alone[i] for i in alone_ids[priority]], 99)
            p99_busy = c.percentile([busy[i] for i in busy_ids[priority]], 99)
            print(
                f"B {priority:8} p99: alone {p99_alone * 1000:.1f} ms, with A {p99_busy * 1000:.1f} ms = "
                f"{p99_busy / p99_alone:.1f}x (target <= {factor}x)"
            )
        conn.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
