"""Creating a tenant: schema, domain, first admin user and first API key, all or nothing."""

import ipaddress
import re
import secrets
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django_tenants.utils import schema_context

from notifications.push.keys import ensure_vapid_keys

from .models import ApiKey, Domain, Tenant
from .naming import InvalidSlug, schema_for_slug

HOSTNAME_RE = re.compile(
    r"^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$"
)


class ProvisioningError(Exception):
    """Provisioning refused; the message names the problem in one line."""


@dataclass(frozen=True)
class ProvisionedTenant:
    tenant: Tenant
    domain: str
    admin_email: str
    admin_password: str | None  # set only when Herald generated it
    api_key: str


def provision_tenant(
    slug: str,
    domain: str,
    admin_email: str,
    admin_password: str | None = None,
    name: str | None = None,
) -> ProvisionedTenant:
    schema = _check_slug(slug)
    domain = _check_domain(domain)
    admin_email = _check_email(admin_email)
    generated_password = None
    if not admin_password:
        generated_password = admin_password = secrets.token_urlsafe(12)

    # PostgreSQL DDL is transactional: a failure anywhere below leaves no schema, row or user.
    with transaction.atomic():
        tenant = Tenant(slug=slug, name=name or slug, schema_name=schema)
        tenant.save(verbosity=0)
        Domain.objects.create(tenant=tenant, domain=domain, is_primary=True)
        with schema_context(schema):
            get_user_model().objects.create_user(
                username=admin_email, email=admin_email, password=admin_password, is_superuser=True
            )
            ensure_vapid_keys()  # the tenant's own Web Push identity
        _, raw_key = ApiKey.issue(tenant, name="Default key")
    return ProvisionedTenant(tenant, domain, admin_email, generated_password, raw_key)


def _check_slug(slug: str) -> str:
    try:
        schema = schema_for_slug(slug)
    except InvalidSlug as exc:
        raise ProvisioningError(str(exc)) from None
    if Tenant.objects.filter(slug=slug).exists() or Tenant.objects.filter(schema_name=schema).exists():
        raise ProvisioningError(f"slug {slug!r} is already taken")
    return schema


def _check_domain(domain: str) -> str:
    domain = domain.strip().lower()
    if not HOSTNAME_RE.fullmatch(domain) or _is_ip_address(domain):
        raise ProvisioningError(f"domain {domain!r} is not a valid host name")
    if domain in {settings.BASE_DOMAIN.lower(), "localhost"}:
        raise ProvisioningError(f"domain {domain!r} is the API host; give the tenant a host of its own")
    if Domain.objects.filter(domain=domain).exists():
        raise ProvisioningError(f"domain {domain!r} is already taken")
    return domain


def _is_ip_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _check_email(email: str) -> str:
    try:
        validate_email(email)
    except ValidationError:
        raise ProvisioningError(f"admin email {email!r} is not a valid email address") from None
    return email.strip().lower()
