from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from tenants.provisioning import ProvisioningError, provision_tenant


class Command(BaseCommand):
    help = "Create a tenant (schema, domain, admin user) and print its first API key last."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("slug")
        parser.add_argument("--domain", required=True)
        parser.add_argument("--admin-email", required=True)
        parser.add_argument("--admin-password")
        parser.add_argument("--name")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            result = provision_tenant(
                options["slug"],
                domain=options["domain"],
                admin_email=options["admin_email"],
                admin_password=options["admin_password"],
                name=options["name"],
            )
        except ProvisioningError as exc:
            raise CommandError(str(exc)) from None
        out = self.stdout
        out.write(f"Tenant {result.tenant.slug!r} created (schema {result.tenant.schema_name}).")
        out.write(f"Domain: {result.domain}")
        out.write(f"Admin: {result.admin_email}")
        if result.admin_password:
            out.write(f"Admin password (generated, shown once): {result.admin_password}")
        out.write("API key (shown once, store it now):")
        out.write(result.api_key)
