"""pytest: real PostgreSQL and Redis, isolated from a running dev stack."""

from .base import *  # noqa: F403
from .base import broker_transport, broker_transport_options, env

DEBUG = False
SECRET_KEY = SECRET_KEY or "test-only-secret-key-not-for-production"  # noqa: F405
ALLOWED_HOSTS = ["*"]
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast hashing in tests
# Parallel test sessions on one machine each name their own database and Redis db index.
DATABASES["default"]["TEST"] = {"NAME": env.str("TEST_DB_NAME", default="test_herald")}  # noqa: F405
# Redis database 15 keeps test queues and caches apart from a dev stack on the same server.
REDIS_URL = env.str("TEST_REDIS_URL", default="redis://127.0.0.1:6379/15")
CACHES["default"]["LOCATION"] = REDIS_URL  # noqa: F405
CHANNEL_LAYERS["default"]["CONFIG"] = {"hosts": [{"address": REDIS_URL, "socket_timeout": 30}]}  # noqa: F405
CELERY_BROKER_URL = env.str("TEST_CELERY_BROKER_URL", default=REDIS_URL)
CELERY_BROKER_TRANSPORT = broker_transport(CELERY_BROKER_URL)
CELERY_BROKER_TRANSPORT_OPTIONS = broker_transport_options(CELERY_BROKER_URL)
CELERY_RESULT_BACKEND = REDIS_URL
TENANT_CACHE_CHECK_INTERVAL = 0.0
CELERY_IMPORTS = ["tests.probe_tasks"]
DEV_MAILBOX_DIR = None
# Static files straight from the apps (no collectstatic needed outside production).
STATIC_ROOT = None
WHITENOISE_USE_FINDERS = True
WEBPUSH_ALLOW_LOCAL_HTTP = True  # the tests' push service listens on http://127.0.0.1
PUBLIC_SCHEME = "http"
PUBLIC_PORT = 8000
# Webhooks: a receiver on 127.0.0.1, and retries in fractions of a second.
WEBHOOKS = {
    **WEBHOOKS,  # noqa: F405
    "max_attempts": 4,
    "retry_base": 0.3,
    "retry_factor": 2.0,
    "retry_cap": 2.0,
    "connect_timeout": 2.0,
    "read_timeout": 2.0,
    "allow_local": True,
}
