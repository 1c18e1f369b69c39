"""Tasks the test worker registers (settings.test CELERY_IMPORTS) to show where a task ran.

Each records a Recipient with a marker external_id in whatever schema it runs in: the public
schema has no such table, so a task that ran in public fails instead of recording.
"""

from typing import Any

from celery import shared_task

from notifications.models import Recipient
from tenants.schemas import current_schema


def _record(marker: str) -> str:
    Recipient.objects.get_or_create(external_id=marker)
    return current_schema()


@shared_task(name="tests.record_schema")
def record_schema(marker: str) -> str:
    return _record(marker)


@shared_task(name="tests.record_after")
def record_after(parent_result: Any, marker: str) -> list[Any]:
    return [parent_result, _record(marker)]


@shared_task(name="tests.collect")
def collect(results: list[str], marker: str) -> dict[str, Any]:
    return {"header": results, "callback": _record(marker)}


@shared_task(bind=True, name="tests.record_after_one_retry", max_retries=3)
def record_after_one_retry(self: Any, marker: str) -> dict[str, Any]:
    if self.request.retries == 0:
        raise self.retry(countdown=0.2)
    return {"schema": _record(marker), "retries": self.request.retries}
