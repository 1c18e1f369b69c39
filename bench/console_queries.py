"""What the console's pages cost on the server with a tenant's history behind them.

    .venv/bin/python bench/console_queries.py [--deliveries 100000] [--rounds 5]

Prints figures, asserts nothing. A throwaway database (dropped at the end) and a Redis db of its
own (11 unless --redis-url; flushed at the end). One tenant gets a broadcast of --deliveries
email deliveries with three events each: queued and sending three days ago, and sent spread over
the last 50 minutes (so the dashboard's hour and day windows hold --deliveries events, and the
table three times as many). Pages are requested in this process with Django's test client,
signed in as the tenant's owner (settings.dev, DEBUG=0); the best of --rounds is printed, with the
number of SQL statements.

Baseline, in the same run: the dashboard's counts as one grouped query over DeliveryEvent by
created_at (no id range, nothing cached), what a first version of the dashboard ran per window.
The dashboard is measured cold (its closed-bucket cache emptied before each request) and warm.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench import _common as c  # noqa: E402

PASSWORD = "bench-console-pw"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--deliveries", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    c.add_common_args(parser, "herald_bench_console_queries", redis_db=11)
    return parser.parse_args()


def fill(schema: str, n: int) -> None:
    from django.contrib.auth import get_user_model
    from django.utils import timezone
    from django_tenants.utils import schema_context

    from notifications.models import Broadcast, Delivery, DeliveryEvent, Notification, Recipient

    with schema_context(schema):
        owner = get_user_model().objects.get(email=f"owner@{schema}.test")
        owner.set_password(PASSWORD)
        owner.save()
        now = timezone.now()
        old = now - timedelta(days=3)
        broadcast = Broadcast.objects.create(
            status="fanned_out", message={"channels": ["email"], "subject": "Spring"}, recipient_count=n
        )
        for start in range(0, n, 10_000):
            size = min(10_000, n - start)
            recipients = Recipient.objects.bulk_create(
                [Recipient(external_id=f"r-{uuid.uuid4().hex}", email="r@example.com") for _ in range(size)]
            )
            notifications = Notification.objects.bulk_create(
                [
                    Notification(recipient=r, body="Hello", broadcast=broadcast, channels=["email"])
                    for r in recipients
                ]
            )
            deliveries = Delivery.objects.bulk_create(
                [
                    Delivery(notification=x, channel="email", address="r@example.com", status="sent")
                    for x in notifications
                ]
            )
            events = [DeliveryEvent(delivery=d, status="queued", created_at=old) for d in deliveries]
            events += [DeliveryEvent(delivery=d, status="sending", created_at=old) for d in deliveries]
            DeliveryEvent.objects.bulk_create(events, batch_size=5000)
        recent = Delivery.objects.order_by("id").values_list("id", flat=True)
        DeliveryEvent.objects.bulk_create(
            (
                DeliveryEvent(
                    delivery_id=d, status="sent", created_at=now - timedelta(seconds=(n - i) * 3000 / n)
                )
                for i, d in enumerate(recent.iterator())
            ),
            batch_size=5000,
        )
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")


def best(rounds: int, fn: Callable[[], Any]) -> tuple[float, int]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    times = []
    queries = 0
    for _ in range(rounds):
        with CaptureQueriesContext(connection) as captured:
            started = time.perf_counter()
            fn()
            times.append(time.perf_counter() - started)
        queries = len(captured.captured_queries)
    return min(times) * 1000, queries


def main() -> int:
    args = parse_args()
    with c.Bench(c.config_of(args)) as b:
        c.print_environment(b)
        b.migrate_and_setup_django()
        tenant = c.provision("cq")
        started = time.monotonic()
        fill(tenant.schema, args.deliveries)
        took = time.monotonic() - started
        print(f"filled {args.deliveries:,} deliveries, {3 * args.deliveries:,} events in {took:.0f} s")

        from django.db.models import Count
        from django.test import Client
        from django.utils import timezone
        from django_tenants.utils import schema_context

        from notifications.models import Broadcast, DeliveryEvent

        with schema_context(tenant.schema):
            broadcast_id = Broadcast.objects.values_list("id", flat=True).get()
        client = Client(HTTP_HOST=f"{tenant.slug}.localhost")
        assert (
            client.post(
                "/console/login/", {"username": f"owner@{tenant.slug}.test", "password": PASSWORD}
            ).status_code
            == 302
        )

        def baseline() -> None:
            with schema_context(tenant.schema):
                for hours in (1, 24):
                    since = timezone.now() - timedelta(hours=hours)
                    list(
                        DeliveryEvent.objects.filter(created_at__gte=since)
                        .values_list("delivery__channel", "status")
                        .annotate(n=Count("id"))
                    )

        def cold() -> None:
            for key in b.redis().scan_iter("*console:events:*"):
                b.redis().delete(key)
            assert client.get("/console/").status_code == 200

        def page(path: str) -> Callable[[], None]:
            def get() -> None:
                assert client.get(path).status_code == 200, path

            return get

        rows: list[tuple[str, Callable[[], Any]]] = [
            ("baseline: grouped count by created_at, hour + day", baseline),
            ("GET /console/ (dashboard), cache cold", cold),
            ("GET /console/ (dashboard), warm", page("/console/")),
            ("GET /console/dashboard/data/ (its 30 s re-read), warm", page("/console/dashboard/data/")),
            ("GET /console/notifications/", page("/console/notifications/")),
            (
                "GET /console/notifications/?status=failed (none)",
                page("/console/notifications/?status=failed"),
            ),
            ("GET /console/notifications/?q=zzz (no match: a scan)", page("/console/notifications/?q=zzz")),
            ("GET /console/broadcasts/ (a finished one's counts cached)", page("/console/broadcasts/")),
            ("GET /console/broadcasts/<id>/ (fanout.progress)", page(f"/console/broadcasts/{broadcast_id}/")),
            ("GET /console/recipients/", page("/console/recipients/")),
        ]
        print(f"\n== server time per request, best of {args.rounds} (statements) ==")
        for label, fn in rows:
            ms, queries = best(args.rounds, fn)
            print(f"{label:<58} {ms:8.1f} ms  ({queries} statements)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
