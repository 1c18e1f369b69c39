from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from tenants.models import ApiKey, Tenant


class Command(BaseCommand):
    help = "Issue a new API key for a tenant; the key is printed once, as the last line."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("slug")
        parser.add_argument("--name", default="CLI key")

    def handle(self, *args: Any, **options: Any) -> None:
        tenant = Tenant.objects.filter(slug=options["slug"]).first()
        if tenant is None:
            raise CommandError(f"no tenant with slug {options['slug']!r}")
        _, raw_key = ApiKey.issue(tenant, name=options["name"])
        self.stdout.write(f"API key {options['name']!r} for {tenant.slug} (shown once):")
        self.stdout.write(raw_key)
