"""Platform tasks: they run in the public schema (tenant_scope = "public")."""

import logging
from typing import Any

from celery import current_app, shared_task
from django_tenants.utils import schema_context

from .models import Tenant
from .task_tenancy import PlatformTask

log = logging.getLogger(__name__)


@shared_task(base=PlatformTask, name="tenants.for_each_tenant", soft_time_limit=60, time_limit=90)
def for_each_tenant(task_name: str, args: list[Any] | None = None, queue: str | None = None) -> int:
    """Fan a tenant task out to every active tenant (beat schedules call this).

    Each message is published inside the tenant's schema context, so it is stamped and signed
    for that tenant and runs there.
    """
    task = current_app.tasks.get(task_name)
    if task is None or getattr(task, "tenant_scope", "tenant") != "tenant":
        raise ValueError(f"{task_name!r} is not a registered tenant task")
    sent = 0
    for schema in (
        Tenant.objects.filter(is_active=True)
        .exclude(schema_name="public")
        .values_list("schema_name", flat=True)
    ):
        with schema_context(schema):
            if queue:
                task.apply_async(args=tuple(args or ()), queue=queue)
            else:
                task.apply_async(args=tuple(args or ()))
        sent += 1
    log.info("fanned %s out to %d tenants", task_name, sent)
    return sent
