"""Typed access to django-tenants' schema switching on the default connection.

django-tenants adds `set_tenant`, `set_schema_to_public` and `schema_name` to the connection at
run time; going through these functions keeps that in one place (and visible to mypy).
"""

from typing import Any, cast

from django.db import connection
from django_tenants.utils import get_public_schema_name


def _tenant_connection() -> Any:
    return cast(Any, connection)


def current_schema() -> str:
    return str(getattr(connection, "schema_name", get_public_schema_name()))


def use_tenant(tenant: Any) -> None:
    """Switch the connection to `tenant`'s schema (search_path is set on the next query)."""
    _tenant_connection().set_tenant(tenant)


def use_public() -> None:
    _tenant_connection().set_schema_to_public()


def current_tenant() -> Any:
    return getattr(connection, "tenant", None)
