"""Which tenant a request's host name serves, cached per process.

django-tenants reads the Domain row and its tenant on every request; the answer changes only
when a domain or a tenant does, so each process keeps it (`tenants.process_cache`), "no tenant
here" included (the bare API host is one such name, and most API requests arrive on it). The
cache shares the tenant cache's generation: a save or delete of a domain or a tenant (a domain
moved, a tenant suspended or deleted) drops it in this process at once and in every other within
TENANT_CACHE_CHECK_INTERVAL seconds (tenants.signals bumps the counter after commit). An entry is
read again after HOST_CACHE_MAX_AGE seconds in any case (a raw UPDATE that skipped the signals).

The cached Tenant is shared by the requests of this process: read it, never change it in place.
"""

from typing import Any, Final

from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from .models import Domain, Tenant
from .process_cache import ProcessCache
from .registry import GENERATION_KEY

HOST_CACHE_MAX_AGE = 30.0  # seconds; the generation counter normally drops an entry much sooner
# Host names come from the outside (any subdomain of BASE_DOMAIN is allowed): bound the cache.
HOST_CACHE_MAX_ENTRIES = 10_000


class _NoTenant:
    """What the cache keeps for a host name that no domain names."""


NO_TENANT: Final = _NoTenant()

_hosts: ProcessCache[str, Tenant | _NoTenant] = ProcessCache(
    GENERATION_KEY, max_age=HOST_CACHE_MAX_AGE, max_entries=HOST_CACHE_MAX_ENTRIES
)


@receiver(post_save, sender=Domain)
@receiver(post_delete, sender=Domain)
@receiver(post_save, sender=Tenant)
@receiver(post_delete, sender=Tenant)
def _forget_cached_hosts(sender: Any, **kwargs: Any) -> None:
    """At once in this process, even before commit (tenants.signals tells the others after it)."""
    _hosts.clear()


def tenant_for_host(hostname: str) -> Tenant | None:
    """The tenant (active or not) whose domain is `hostname`, or None. Read in the public schema:
    the caller has switched to it (as django-tenants' middleware does first)."""
    found = _hosts.get_or_load(hostname, lambda: _load(hostname))
    return found if isinstance(found, Tenant) else None


def _load(hostname: str) -> Tenant | _NoTenant:
    domain = Domain.objects.select_related("tenant").filter(domain=hostname).first()
    if domain is None:
        return NO_TENANT
    tenant: Tenant = domain.tenant
    return tenant
