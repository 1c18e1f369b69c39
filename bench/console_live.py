"""The console under a live load: 1,000 deliveries/s moving, one browser page watching.

    .venv/bin/python bench/console_live.py [--rate 1000] [--seconds 20] [--page /console/]

Prints figures, asserts nothing. A throwaway database (dropped at the end), a Redis db of its own
(13 unless --redis-url; flushed at the end), Herald's web server (uvicorn on tenant_platform.asgi
as deploy/Procfile, 2 processes) and headless Debian Chromium (Playwright) signed in to the
console of tenant "live".

The load: --rate deliveries per second go queued -> sending -> sent through Herald's own code for
those steps (notifications.tasks.claim and mark_sent inside live.batched(), as a send task runs
them), in batches of 100 every 100/rate seconds, so each delivery makes two state changes that
the publisher reads back and pushes to the tenant's channel-layer group: 2 x rate events/s. The
provider call is left out (this measures the console path, not SMTP): the full send pipeline does
not reach 1,000 deliveries/s on this 2-core machine (bench/broadcast.py), the console must still
keep up with it. The deliveries are written beforehand (pipeline.accept_many), before the page opens.

Measured in the page over --seconds, after a warm-up:
- events/s and messages/s the socket carried (HeraldLive.stats);
- the renderer main thread's busy time (Chrome's Performance.getMetrics TaskDuration, also script,
  layout and style) as seconds per second;
- long tasks (> 50 ms, PerformanceObserver) and the lag of a 50 ms timer (how late the page
  answers: what a user feels as jank);
and on the load side the delivery rate achieved and the publish cost per batch.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench import _common as c  # noqa: E402

BATCH = 100
PASSWORD = "bench-console-pw"

PROBE_JS = """
() => {
  window.__bench = {lags: [], longTasks: 0, longTaskMs: 0};
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      window.__bench.longTasks += 1;
      window.__bench.longTaskMs += e.duration;
    }
  }).observe({type: "longtask", buffered: false});
  let expected = performance.now() + 50;
  setInterval(() => {
    const now = performance.now();
    window.__bench.lags.push(Math.max(0, now - expected));
    expected = now + 50;
  }, 50);
}
"""


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--rate", type=int, default=1000, help="deliveries per second")
    parser.add_argument("--seconds", type=float, default=20.0, help="measured window")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--threads", type=int, default=3, help="load threads sharing the rate")
    parser.add_argument("--page", default="/console/", help="the console page to watch")
    parser.add_argument("--screenshot", default="", help="save a screenshot of the page at the end")
    c.add_common_args(parser, "herald_bench_console_live", redis_db=13)
    return parser.parse_args()


def prepare(tenant: c.Tenant, n: int) -> list[str]:
    """n queued email deliveries (notifications written as the API writes them)."""
    from django.contrib.auth import get_user_model
    from django_tenants.utils import schema_context

    from notifications.compose import Source
    from notifications.models import Delivery
    from notifications.pipeline import NotificationSpec, RecipientSpec, accept_many

    with schema_context(tenant.schema):
        owner = get_user_model().objects.get(email=f"owner@{tenant.slug}.test")
        owner.set_password(PASSWORD)
        owner.save()
        source = Source(subject=c.SUBJECT, text=c.TEXT)
        for start in range(0, n, 1000):
            specs = [
                NotificationSpec(
                    recipient=RecipientSpec(external_id=f"r-{i}", email=f"r-{i}@example.com"),
                    channels=["email"],
                    sources={"email": source},
                    data={"name": "Ana"},
                    priority="bulk",
                    subject=c.SUBJECT,
                    body=c.TEXT,
                )
                for i in range(start, min(n, start + 1000))
            ]
            accept_many(specs)
        return [str(i) for i in Delivery.objects.filter(status="queued").values_list("id", flat=True)]


class Load(threading.Thread):
    """Moves deliveries queued -> sending -> sent at `rate`/s with Herald's own claim and mark_sent
    (each thread its own database connection and its own share of the deliveries)."""

    def __init__(self, schema: str, ids: list[str], rate: float) -> None:
        super().__init__(daemon=True)
        self.schema, self.ids, self.rate = schema, ids, rate
        self.moved = 0
        self.batch_seconds: list[float] = []
        self.late = 0
        self.stop_event = threading.Event()

    def run(self) -> None:
        from django.db import connection
        from django_tenants.utils import schema_context

        from notifications import live
        from notifications.providers.base import Outcome
        from notifications.tasks import claim, mark_sent

        interval = BATCH / self.rate
        next_at = time.monotonic()
        with schema_context(self.schema):
            for start in range(0, len(self.ids), BATCH):
                if self.stop_event.is_set():
                    break
                t0 = time.monotonic()
                with live.batched():
                    claimed = claim(self.ids[start : start + BATCH])
                    mark_sent(
                        [
                            Outcome(delivery_id=str(d.id), provider="bench", provider_message_id="x")
                            for d in claimed
                        ],
                        {d.id: d for d in claimed},
                    )
                self.batch_seconds.append(time.monotonic() - t0)
                self.moved += len(claimed)
                next_at += interval
                pause = next_at - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                else:
                    self.late += 1
        connection.close()


def main() -> None:
    args = parse_args()
    from playwright.sync_api import sync_playwright

    from tests.browser import CHROMIUM, CHROMIUM_ARGS

    total = int(args.rate * (args.seconds + args.warmup + 10))
    with c.Bench(c.config_of(args)) as b:
        b.migrate_and_setup_django()
        tenant = c.provision("live")
        t0 = time.monotonic()
        ids = prepare(tenant, total)
        print(f"prepared {len(ids):,} queued deliveries in {time.monotonic() - t0:.1f} s")
        b.redis().flushdb()  # the send messages accept_many enqueued: no worker runs here
        _, port = b.start_web()
        origin = f"http://{tenant.slug}.localhost:{port}"

        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(f"{origin}/console/login/")
            page.fill("input[name=username]", f"owner@{tenant.slug}.test")
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_load_state("networkidle")
            page.goto(f"{origin}{args.page}")
            page.wait_for_function("window.HeraldLive && window.HeraldLive.state === 'live'", timeout=15000)
            page.evaluate(PROBE_JS)
            cdp = page.context.new_cdp_session(page)
            cdp.send("Performance.enable")

            loads = [
                Load(tenant.schema, ids[i :: args.threads], args.rate / args.threads)
                for i in range(args.threads)
            ]
            for load in loads:
                load.start()
            time.sleep(args.warmup)
            before = metrics(cdp), page.evaluate("() => ({...HeraldLive.stats})"), moved(loads)
            page.evaluate("() => Object.assign(window.__bench, {lags: [], longTasks: 0, longTaskMs: 0})")
            w0 = time.monotonic()
            time.sleep(args.seconds)
            window = time.monotonic() - w0
            after = metrics(cdp), page.evaluate("() => ({...HeraldLive.stats})"), moved(loads)
            probe: dict[str, Any] = page.evaluate("() => window.__bench")
            state = page.evaluate("() => HeraldLive.state")
            if args.screenshot:
                page.screenshot(path=args.screenshot, full_page=True)
            for load in loads:
                load.stop_event.set()
            for load in loads:
                load.join(timeout=30)
            browser.close()

    report(args, window, before, after, probe, loads, state)


def moved(loads: list[Load]) -> int:
    return sum(load.moved for load in loads)


def metrics(cdp: Any) -> dict[str, float]:
    return {m["name"]: float(m["value"]) for m in cdp.send("Performance.getMetrics")["metrics"]}


def report(
    args: argparse.Namespace,
    window: float,
    before: tuple[dict[str, float], dict[str, Any], int],
    after: tuple[dict[str, float], dict[str, Any], int],
    probe: dict[str, Any],
    loads: list[Load],
    state: str,
) -> None:
    (m0, s0, moved0), (m1, s1, moved1) = before, after

    def per_s(name: str) -> float:
        return (m1.get(name, 0.0) - m0.get(name, 0.0)) / window

    lags = sorted(probe["lags"]) or [0.0]
    print(
        f"\n== console under load: {args.page}, {window:.1f} s measured after {args.warmup:.0f} s warm-up =="
    )
    print(
        f"load: {(moved1 - moved0) / window:,.0f} deliveries/s moved queued -> sending -> sent "
        f"(target {args.rate:,})"
    )
    print(
        f"      publish side: batch of {BATCH} claim+mark_sent+publish p50 "
        f"{statistics.median([t for load in loads for t in load.batch_seconds]) * 1000:.1f} ms, "
        f"late batches {sum(load.late for load in loads)} ({len(loads)} load threads)"
    )
    print(
        f"socket: {(s1['events'] - s0['events']) / window:,.0f} events/s in "
        f"{(s1['messages'] - s0['messages']) / window:,.1f} messages/s; state at the end: {state}"
    )
    print(
        f"main thread busy: {per_s('TaskDuration') * 1000:.0f} ms per s "
        f"(script {per_s('ScriptDuration') * 1000:.0f}, layout {per_s('LayoutDuration') * 1000:.0f}, "
        f"style {per_s('RecalcStyleDuration') * 1000:.0f})"
    )
    print(
        f"responsiveness: long tasks (>50 ms) {probe['longTasks']} totalling {probe['longTaskMs']:.0f} ms; "
        f"50 ms timer lag p50 {c.percentile(lags, 50):.1f} ms, p99 {c.percentile(lags, 99):.1f} ms, "
        f"max {max(lags):.1f} ms"
    )


if __name__ == "__main__":
    main()
