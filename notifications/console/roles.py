"""Who may do what in the console: three roles, held as auth groups in the tenant's schema.

- viewer: reads everything (notifications, broadcasts, templates, usage), changes nothing;
- admin: also sends, retries, edits templates, manages API keys, providers and webhooks;
- owner: also manages the team (invites, roles, removal).

A role is a Django auth group named after it, in the tenant's own schema, so a user and a role
of one tenant mean nothing on another tenant's domain. The tenant's first user (created when the
tenant is provisioned, a superuser) is an owner. A signed-in user with no role sees nothing.
"""

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, Group
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponseBase
from django_tenants.utils import get_public_schema_name

VIEWER, ADMIN, OWNER = "viewer", "admin", "owner"
ROLES: tuple[str, ...] = (VIEWER, ADMIN, OWNER)  # each includes the ones before it
ROLE_LABELS = {VIEWER: "Viewer", ADMIN: "Admin", OWNER: "Owner"}

View = Callable[..., HttpResponseBase]


class RoleRequired(PermissionDenied):
    """A console page or action needs a role the user lacks; the 403 page names it."""

    def __init__(self, needed: str) -> None:
        super().__init__(f"This needs the {ROLE_LABELS[needed]} role.")
        self.needed = needed


def role_of(user: AbstractBaseUser | AnonymousUser) -> str | None:
    """The user's highest role in this tenant, or None (cached on the user object per request)."""
    if not user.is_authenticated or not user.is_active:
        return None
    cached: str | None = getattr(user, "_herald_role", "")
    if cached != "":
        return cached
    if getattr(user, "is_superuser", False):
        role: str | None = OWNER
    else:
        names = set(user.groups.values_list("name", flat=True))  # type: ignore[attr-defined]
        role = next((r for r in reversed(ROLES) if r in names), None)
    user._herald_role = role  # type: ignore[attr-defined]
    return role


def has_role(user: AbstractBaseUser | AnonymousUser, needed: str) -> bool:
    role = role_of(user)
    return role is not None and ROLES.index(role) >= ROLES.index(needed)


def set_role(user: Any, role: str) -> None:
    """Give the user exactly this role (replacing any other)."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    groups = [Group.objects.get_or_create(name=name)[0] for name in ROLES]
    user.groups.remove(*[g for g in groups if g.name != role])
    user.groups.add(next(g for g in groups if g.name == role))
    user.__dict__.pop("_herald_role", None)


def tenant_host_only(view: View) -> View:
    """The console exists on tenant domains only; on the API host it is not found."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        tenant = getattr(request, "tenant", None)
        if tenant is None or tenant.schema_name == get_public_schema_name():
            raise Http404("The console is on your tenant's own domain.")
        return view(request, *args, **kwargs)

    return wrapper


def console_view(needed: str = VIEWER) -> Callable[[View], View]:
    """Console pages: tenant domain only, signed in, and at least `needed` (else 403)."""

    def decorate(view: View) -> View:
        @wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            if not has_role(request.user, needed):
                raise RoleRequired(needed)
            return view(request, *args, **kwargs)

        return tenant_host_only(login_required(login_url="console:login")(wrapper))

    return decorate


def can(request: HttpRequest, needed: str) -> bool:
    """For templates and views that show a control only to those who may use it."""
    return has_role(request.user, needed)
