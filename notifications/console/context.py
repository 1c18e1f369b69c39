"""Template context for console pages."""

from typing import Any

from django.db.models import Max
from django.http import HttpRequest
from django_tenants.utils import get_public_schema_name


def live(request: HttpRequest) -> dict[str, Any]:
    """Where the page's live stream starts: the newest delivery event when the page was rendered.

    The page's data was read from the database just before this, so asking the socket for what
    came after this id (HeraldLive, data-live-after) misses nothing that happened in between.
    """
    tenant = getattr(request, "tenant", None)
    user = getattr(request, "user", None)
    if tenant is None or tenant.schema_name == get_public_schema_name():
        return {}
    if user is None or not user.is_authenticated or not request.path.startswith("/console/"):
        return {}

    def last_event() -> int:
        from ..models import DeliveryEvent

        last: int | None = DeliveryEvent.objects.aggregate(last=Max("id"))["last"]
        return last or 0

    return {"live_after": last_event}  # evaluated only where a template uses it
