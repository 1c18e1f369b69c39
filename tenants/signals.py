"""Keep per-process tenant caches honest when a tenant changes."""

from typing import Any

from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from . import registry
from .models import ApiKey, Domain, Tenant


@receiver(post_save, sender=Tenant)
@receiver(post_delete, sender=Tenant)
# API keys are cached with the tenants (tenants.api_auth): a revoked key stops working everywhere.
@receiver(post_save, sender=ApiKey)
@receiver(post_delete, sender=ApiKey)
# So are host names (tenants.hosts): a domain moved or removed stops serving its tenant everywhere.
@receiver(post_save, sender=Domain)
@receiver(post_delete, sender=Domain)
def tenant_changed(
    sender: type[Tenant] | type[ApiKey] | type[Domain], instance: Tenant | ApiKey | Domain, **kwargs: Any
) -> None:
    transaction.on_commit(registry.invalidate)
