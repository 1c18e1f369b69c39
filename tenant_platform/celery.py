"""Herald's Celery app: tenant-aware base task, JSON only, five queues.

Queues, in order of urgency: critical, high, default, bulk (see settings.base), and beside them
webhooks (WEBHOOK_QUEUE: sends to tenants' backends, their schedule). Each task module names its
queue; `notifications.pipeline` picks the queue from a notification's priority.
"""

import os

from celery import Celery

# Production unless told otherwise: `make run` and the tests name their settings explicitly.
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tenant_platform.settings.production")

app = Celery("herald", task_cls="tenants.task_tenancy:TenantTask")
app.config_from_object("django.conf:settings", namespace="CELERY")
# Celery's Django fixup closes every database connection before and after every task unless
# this is set, which made each task open a new connection (half the throughput). Keep them;
# tenants.task_tenancy closes the unusable or obsolete ones (CONN_MAX_AGE) before each task,
# as Django does per request. (Celery reads this key by its old name only.)
app.conf["CELERY_DB_REUSE_MAX"] = 10**9
app.autodiscover_tasks()
