"""The console's 403 page: which role a page needs, the user's own, and who can grant it."""

from django.contrib.auth import get_user_model
from django.db.models import Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views import defaults
from django_tenants.utils import get_public_schema_name

from .roles import OWNER, ROLE_LABELS, RoleRequired, role_of


def owner_emails() -> list[str]:
    """The tenant's owners, the people who can change anyone's role."""
    return list(
        get_user_model()
        .objects.filter(Q(is_superuser=True) | Q(groups__name=OWNER), is_active=True)
        .order_by("email")
        .values_list("email", flat=True)
        .distinct()
    )


def permission_denied(request: HttpRequest, exception: Exception) -> HttpResponse:
    """handler403: the friendly page on a tenant's console, Django's default elsewhere."""
    tenant = getattr(request, "tenant", None)
    on_console = request.path.startswith("/console/")
    if not on_console or tenant is None or tenant.schema_name == get_public_schema_name():
        return defaults.permission_denied(request, exception)
    needed = exception.needed if isinstance(exception, RoleRequired) else None
    role = role_of(request.user)
    context = {
        "needed": ROLE_LABELS[needed] if needed else None,
        "role": ROLE_LABELS[role] if role else None,
        "owners": owner_emails(),
        "reason": str(exception) if not needed else "",
    }
    return render(request, "console/403.html", context, status=403)
