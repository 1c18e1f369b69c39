"""What the console admin-page tests share: members with a role, signed-in clients."""

from typing import Any

from django.contrib.auth import get_user_model
from django.test import Client
from django_tenants.utils import schema_context

from notifications.console.roles import set_role

PASSWORD = "a-long-enough-passphrase"


def member(schema: str, email: str, role: str | None) -> Any:
    """A user of tenant `schema` with `role` (None: signed up, but no role)."""
    with schema_context(schema):
        user = get_user_model().objects.create_user(username=email, email=email, password=PASSWORD)
        if role:
            set_role(user, role)
    return user


def signed_in(domain: str, email: str, password: str = PASSWORD) -> Client:
    client = Client(HTTP_HOST=domain)
    response = client.post("/console/login/", {"username": email, "password": password})
    assert response.status_code == 302, response.content
    return client


def owner(domain: str) -> Client:
    """The tenant's first user (a superuser, so an owner), made when it was provisioned."""
    return signed_in(domain, f"owner@{domain.split('.')[0]}.test", "pw")
