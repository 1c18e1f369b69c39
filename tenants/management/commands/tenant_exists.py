import sys
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand

from tenants.models import Tenant


class Command(BaseCommand):
    help = "Exit 0 if a tenant with this slug exists, 1 if not."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("slug")

    def handle(self, *args: Any, **options: Any) -> None:
        if not Tenant.objects.filter(slug=options["slug"]).exists():
            sys.exit(1)
