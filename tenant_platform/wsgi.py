"""WSGI entry point (gunicorn): the HTTP API and console."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tenant_platform.settings.production")

application = get_wsgi_application()
