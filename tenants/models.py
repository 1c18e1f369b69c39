"""Public-schema models: tenants, their domains and their API keys."""

import hashlib
import secrets
from typing import Any

from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone
from django_tenants.models import DomainMixin, TenantMixin

from .naming import is_valid_schema_name


class Tenant(TenantMixin):  # type: ignore[misc]  # django-tenants ships no types
    slug = models.SlugField(max_length=40, unique=True)
    name = models.CharField(max_length=200)
    is_active = models.BooleanField(default=True)
    # Per channel {"email": {"rate": 50, "burst": 50}}: overrides the platform's SEND_RATE_LIMITS.
    rate_limits = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    auto_create_schema = True
    auto_drop_schema = False

    def __str__(self) -> str:
        return self.slug

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not is_valid_schema_name(self.schema_name) and self.schema_name != "public":
            raise ValidationError({"schema_name": f"invalid schema name {self.schema_name!r}"})
        super().save(*args, **kwargs)


class Domain(DomainMixin):  # type: ignore[misc]
    pass


class ApiKeyQuerySet(models.QuerySet["ApiKey"]):
    def active(self) -> "ApiKeyQuerySet":
        return self.filter(revoked_at__isnull=True)


class ApiKey(models.Model):
    """A tenant backend's credential. Only a SHA-256 of the key is stored.

    The key is `hk_<prefix>_<secret>`: the prefix is stored in clear to find the row and to show
    in the console; the secret has 256 bits of entropy, so a fast hash is enough (no stretching).
    """

    PREFIX_LEN = 8

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, unique=True)
    key_hash = models.CharField(max_length=64)
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = ApiKeyQuerySet.as_manager()

    def __str__(self) -> str:
        return f"{self.name} (hk_{self.prefix}_...)"

    @staticmethod
    def hash_key(raw_key: str) -> str:
        return hashlib.sha256(raw_key.encode()).hexdigest()

    @classmethod
    def issue(cls, tenant: Tenant, name: str) -> tuple["ApiKey", str]:
        """Create a key; the raw key is returned once and never stored."""
        prefix = secrets.token_hex(cls.PREFIX_LEN // 2)
        raw_key = f"hk_{prefix}_{secrets.token_urlsafe(32)}"
        key = cls.objects.create(tenant=tenant, name=name, prefix=prefix, key_hash=cls.hash_key(raw_key))
        return key, raw_key

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None

    def revoke(self) -> None:
        self.revoked_at = timezone.now()
        self.save(update_fields=["revoked_at"])
