"""Herald's Celery app: tenant-aware base task, JSON only, four queues.

Queues, in order of urgency: critical, high, default, bulk (see settings.base). Each task module
names its queue; `notifications.pipeline` picks the queue from a notification's priority.
"""

import os

from celery import Celery

# Production unless told otherwise: `make run` and the tests name their settings explicitly.
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tenant_platform.settings.production")

app = Celery("herald", task_cls="tenants.task_tenancy:TenantTask")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
