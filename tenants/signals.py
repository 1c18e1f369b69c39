"""Keep per-process tenant caches honest when a tenant changes."""

from typing import Any

from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from . import registry
from .models import ApiKey, Tenant


@receiver(post_save, sender=Tenant)
@receiver(post_delete, sender=Tenant)
# API keys are cached with the tenants (tenants.api_auth): a revoked key stops working everywhere.
@receiver(post_save, sender=ApiKey)
@receiver(post_delete, sender=ApiKey)
def tenant_changed(sender: type[Tenant] | type[ApiKey], instance: Tenant | ApiKey, **kwargs: Any) -> None:
    transaction.on_commit(registry.invalidate)
