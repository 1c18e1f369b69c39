import signal
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand

from notifications.dispatch import BOUND, Dispatcher


class Command(BaseCommand):
    help = (
        "Release bulk work, and critical, high and normal work while its queue is contended, to the broker "
        "round-robin across tenants (run one per deployment)."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--bound", type=int, default=BOUND, help="messages allowed in the broker queue")

    def handle(self, *args: Any, **options: Any) -> None:
        dispatcher = Dispatcher(bound=options["bound"])
        # A clean stop takes its heartbeats down, so work is published directly at once.
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: dispatcher.stop())
        dispatcher.run_forever()
