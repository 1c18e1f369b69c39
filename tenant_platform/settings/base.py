"""Settings shared by every environment; every value comes from the environment.

Environment variables (see README): DATABASE_URL, REDIS_URL, CELERY_BROKER_URL, EMAIL_URL,
SECRET_KEY (or SECRET_KEY_FILE), TASK_SIGNING_KEY (or _FILE), BASE_DOMAIN, PORT.
"""

from pathlib import Path
from typing import Any

import environ
from kombu import Exchange, Queue

BASE_DIR = Path(__file__).resolve().parent.parent.parent

env = environ.Env()


def secret(name: str, default: str | None = None) -> str:
    """Read a secret from NAME, or from the file NAME_FILE names (for mounted secrets)."""
    file_path = env.str(f"{name}_FILE", default="")
    if file_path:
        return Path(file_path).read_text().strip()
    if default is None:
        return str(env.str(name))
    return str(env.str(name, default=default))


# --- Core ---------------------------------------------------------------------------------
# Empty here; each environment's settings decide what an unset key means.
SECRET_KEY = secret("SECRET_KEY", default="")
DEBUG = env.bool("DEBUG", default=False)
BASE_DOMAIN = env.str("BASE_DOMAIN", default="localhost")
PORT = env.int("PORT", default=8000)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=[BASE_DOMAIN, f".{BASE_DOMAIN}", "127.0.0.1"])

# --- Apps ---------------------------------------------------------------------------------
# Public schema: tenants, API keys, billing, beat's schedules (kept in public only).
SHARED_APPS = [
    "django_tenants",
    "tenants",
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_celery_beat",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
]
# Each tenant's schema: its users (console), recipients, notifications and deliveries.
TENANT_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "notifications",
    "notifications.console",
    "notifications.webhooks",
]
INSTALLED_APPS = SHARED_APPS + [app for app in TENANT_APPS if app not in SHARED_APPS]

TENANT_MODEL = "tenants.Tenant"
TENANT_DOMAIN_MODEL = "tenants.Domain"
# A host that names no tenant (127.0.0.1, the bare BASE_DOMAIN) is served from public.
SHOW_PUBLIC_IF_NO_TENANT_FOUND = True
# Set search_path once per tenant switch rather than on every cursor.
TENANT_LIMIT_SET_CALLS = True

MIDDLEWARE = [
    "tenants.middleware.TenantMainMiddleware",  # django-tenants' own, host names cached per process
    "tenants.middleware.SuspendedTenantMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "tenant_platform.urls"
LOGIN_URL = "console:login"
LOGIN_REDIRECT_URL = "console:dashboard"
# Passwords the console's users choose (accepting an invitation) are checked by Django's validators.
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
WSGI_APPLICATION = "tenant_platform.wsgi.application"
ASGI_APPLICATION = "tenant_platform.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "notifications.console.context.live",
            ],
        },
    },
]

# --- Database -----------------------------------------------------------------------------
DATABASES = {
    "default": env.db_url(
        "DATABASE_URL",
        default="postgres://postgres@127.0.0.1:5432/herald",
        engine="tenants.db",  # django-tenants' backend without repeated SET search_path
    )
}
# Threads serving HTTP are a fixed pool (see asgi.py), so persistent connections are bounded.
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DB_CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DATABASE_ROUTERS = ("django_tenants.routers.TenantSyncRouter",)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis, cache, channel layer ----------------------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="redis://127.0.0.1:6379/0")
CACHES = {
    "default": {
        "BACKEND": "tenant_platform.cache.RedisCache",  # Django's, one client kept per pool
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "herald",
    }
}
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "tenant_platform.channel_layer.ChannelLayer",  # channels_redis, fewer round trips
        # The layer blocks 5 s per Redis read and redis-py 8 times reads out after 5 s by default:
        # without a longer timeout every idle WebSocket is dropped after about 5 s.
        "CONFIG": {"hosts": [{"address": REDIS_URL, "socket_timeout": 30}]},
    }
}

# --- Email --------------------------------------------------------------------------------
# EMAIL_URL such as smtp://user:pass@host:587/?tls=True; `make run` points it at a local catcher.
vars().update(env.email_url("EMAIL_URL", default="smtp://127.0.0.1:1025"))
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default=f"Herald <notifications@{BASE_DOMAIN}>")
EMAIL_TIMEOUT = env.int("EMAIL_TIMEOUT", default=15)

# --- Celery -------------------------------------------------------------------------------
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL)


def broker_transport(url: str) -> str | None:
    """A redis:// broker: kombu's Redis transport keeping one client per channel, not one per
    message (tenant_platform.broker). Any other (amqp://, rediss://, sentinel://): kombu's own."""
    return "tenant_platform.broker:Transport" if url.startswith("redis://") else None


CELERY_BROKER_TRANSPORT = broker_transport(CELERY_BROKER_URL)  # again wherever the URL changes
# How long talking to the broker may take (seconds). kombu's Redis transport sets no socket
# timeouts at all (it passes None, overriding redis-py's own 5 s): against a broker that takes
# connections and never answers (a frozen server, a failover that left connections half-open)
# apply_async waited for ever, holding the web request or the worker that published (still waiting
# after 500 s), and one whose connections go unanswered (a black-holed address) over 100 s. A
# refused connection (broker down) already failed in 0.2 s.
# - BROKER_SOCKET_TIMEOUT bounds each answer. A healthy Redis answers in well under a
#   millisecond. It stays above a worker's BRPOP wait, which the server holds for kombu's
#   brpop_timeout (1 s, or the `polling_interval` transport option when set) before answering nil.
#   kombu only reads that answer once poll() finds it there, so a shorter timeout would not cut a
#   live BRPOP short either (a worker given 0.3 s idled and consumed normally), but one above the
#   wait stays safe even for a read that starts with the command (tests/test_broker_timeouts.py).
# - BROKER_CONNECT_TIMEOUT bounds a TCP connect.
# With the publish retry policy below, apply_async on a silent Redis gives up after 2 or 3
# answers missed: about 3 s on a new connection, 4.5 s on one that was working when the broker
# froze, 2 s when connecting times out. TCP keepalive would add nothing: the BRPOP connection is
# never idle, kombu checks the pub/sub one every 25 s, and redis-py PINGs a pooled connection
# idle that long before using it.
BROKER_CONNECT_TIMEOUT = env.float("BROKER_CONNECT_TIMEOUT", default=1.0)
BROKER_SOCKET_TIMEOUT = env.float("BROKER_SOCKET_TIMEOUT", default=1.5)


def broker_transport_options(url: str) -> dict[str, Any]:
    """kombu's transport options for this broker URL: the timeouts above for Redis (redis://,
    rediss://, sentinel://, redis+socket://). RabbitMQ needs none: py-amqp bounds connecting and
    its handshake by CELERY_BROKER_CONNECTION_TIMEOUT (Celery's 4 s), and a publish waits for no
    answer."""
    if url.partition("://")[0].split("+", 1)[0] in ("redis", "rediss", "sentinel"):
        return {"socket_connect_timeout": BROKER_CONNECT_TIMEOUT, "socket_timeout": BROKER_SOCKET_TIMEOUT}
    return {}


CELERY_BROKER_TRANSPORT_OPTIONS = broker_transport_options(CELERY_BROKER_URL)  # again with the URL
CELERY_RESULT_BACKEND = env.str("CELERY_RESULT_BACKEND", default=REDIS_URL)
CELERY_RESULT_EXPIRES = 3600
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_RESULT_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
# Every task has limits; a task may set tighter ones of its own.
CELERY_TASK_SOFT_TIME_LIMIT = 60
CELERY_TASK_TIME_LIMIT = 90
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "default"
# Webhook sends wait on tenants' own servers (seconds each when one is slow): they have a queue and
# a pool of their own (deploy/Procfile: worker-webhooks), so they never hold normal sends back nor
# count in the length of `default` that the fair dispatcher reads. WEBHOOK_QUEUE=default puts them
# back in the default pool.
WEBHOOK_QUEUE = env.str("WEBHOOK_QUEUE", default="webhooks")
CELERY_TASK_QUEUES = tuple(
    Queue(name, Exchange(name), routing_key=name)
    for name in dict.fromkeys(("critical", "high", "default", "bulk", WEBHOOK_QUEUE))
)
# A publish that cannot reach the broker gives up quickly: the database holds the work and
# the sweeper re-enqueues it, so an API request must not hang on a broker outage. One retry: it
# is what gets a publish through on a fresh connection after a dropped one (an idle connection
# cut by a load balancer); each further try at a silent broker only cost another socket timeout
# or two (with 2 retries: 4.5 s on a new connection, 6 s on a frozen one).
CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": 1,
    "interval_start": 0,
    "interval_step": 0.2,
    "interval_max": 0.5,
}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Celery reads these on every publish (six reads per apply_async). One left out is looked for in
# Django's settings under three names, each a failed getattr, before Celery's default answers:
# about 40 us a read. Named here, at Celery's defaults, the first place Celery looks has them.
CELERY_TASK_ALWAYS_EAGER = False
CELERY_TASK_SEND_SENT_EVENT = False
CELERY_TASK_REPR_MAXLEVELS = 3
CELERY_BROKER_POOL_ACQUIRE_TIMEOUT: float | None = None
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
# The platform's periodic work (DatabaseScheduler installs these entries when beat starts).
CELERY_BEAT_SCHEDULE = {
    "sweep-stuck-deliveries": {
        "task": "tenants.for_each_tenant",
        "schedule": 30.0,
        "args": ["notifications.sweep_stuck_deliveries"],
        "kwargs": {"queue": "high"},
    },
    # Broadcasts whose fan-out never started (broker down) or stalled.
    "sweep-stalled-broadcasts": {
        "task": "tenants.for_each_tenant",
        "schedule": 60.0,
        "args": ["notifications.sweep_broadcasts"],
        "kwargs": {"queue": "high"},
    },
    # Webhook messages whose retry is due, or whose task the broker lost. The fan-out and each
    # tenant's task run in the webhook pool, like the sends they publish: none of it waits for,
    # or takes a turn of, the default pool.
    "send-due-webhooks": {
        "task": "tenants.for_each_tenant",
        "schedule": 30.0,
        "args": ["webhooks.send_due"],
        "kwargs": {"queue": WEBHOOK_QUEUE},
        "options": {"queue": WEBHOOK_QUEUE},
    },
    "prune-webhook-messages": {
        "task": "tenants.for_each_tenant",
        "schedule": 3600.0,
        "args": ["webhooks.prune"],
        "kwargs": {"queue": WEBHOOK_QUEUE},
        "options": {"queue": WEBHOOK_QUEUE},
    },
}
# The sweeper re-enqueues deliveries queued this long without a worker taking them, and
# those in `sending` this long (their worker died): seconds.
SWEEP_QUEUED_AFTER = env.int("SWEEP_QUEUED_AFTER", default=60)
SWEEP_SENDING_AFTER = env.int("SWEEP_SENDING_AFTER", default=300)
# A broadcast not started, or with no chunk finished, this long is fanned out again: seconds.
SWEEP_BROADCAST_AFTER = env.int("SWEEP_BROADCAST_AFTER", default=120)
# The longest a bulk batch waits for urgent (non-bulk) sends in flight before it starts
# (notifications/urgency.py); 0 turns the yielding off.
BULK_YIELD_MAX_MS = env.int("BULK_YIELD_MAX_MS", default=100)
# The largest share of a bulk process's time spent waiting for urgent work (notifications/urgency.py):
# under urgent sends that never stop, a broadcast keeps at least the rest of its speed. 0.5 cost
# another tenant's critical p99 3x-5x more for a few points of the broadcast's pace
# (bench/noisy_neighbour.py); 0.8 measured the same as no bound at all.
BULK_YIELD_SHARE = env.float("BULK_YIELD_SHARE", default=0.8)
# Key for the HMAC over each task message's tenant header. Derived from SECRET_KEY unless set.
TASK_SIGNING_KEY = secret("TASK_SIGNING_KEY", default="")
# How often a worker process checks whether cached tenants changed (seconds).
TENANT_CACHE_CHECK_INTERVAL = env.float("TENANT_CACHE_CHECK_INTERVAL", default=1.0)

# --- Providers ----------------------------------------------------------------------------
# The platform's own provider per channel; a tenant's ProviderConfig overrides it.
TWILIO_ACCOUNT_SID = env.str("TWILIO_ACCOUNT_SID", default="")
TWILIO_AUTH_TOKEN = secret("TWILIO_AUTH_TOKEN", default="")
TWILIO_FROM_NUMBER = env.str("TWILIO_FROM_NUMBER", default="")
# Dev and tests only: send Twilio API calls to a local server instead of https://api.twilio.com.
TWILIO_API_BASE_URL = env.str("TWILIO_API_BASE_URL", default="")
PLATFORM_PROVIDERS: dict[str, dict[str, Any]] = {
    "email": {"provider": "smtp"},
    "push": {"provider": "webpush"},  # each tenant's own VAPID keys, made at provisioning
    "in_app": {"provider": "inapp"},
}
if TWILIO_ACCOUNT_SID:
    PLATFORM_PROVIDERS["sms"] = {
        "provider": "twilio",
        "settings": {"from_number": TWILIO_FROM_NUMBER},
        "secrets": {"account_sid": TWILIO_ACCOUNT_SID, "auth_token": TWILIO_AUTH_TOKEN},
    }
# Fernet keys for stored credentials, comma-separated, newest first (see tenants.crypto).
FIELD_ENCRYPTION_KEYS = secret("FIELD_ENCRYPTION_KEYS", default="")
# Retries per channel: attempts in all, exponential backoff with full jitter (base * 2**n, capped),
# and after how many transient failures the tenant's secondary provider takes over.
RETRY_POLICIES = {
    "email": {"max_attempts": 6, "base": 2.0, "cap": 300.0, "failover_after": 2},
    "sms": {"max_attempts": 5, "base": 2.0, "cap": 120.0, "failover_after": 2},
    "push": {"max_attempts": 5, "base": 2.0, "cap": 120.0, "failover_after": 2},
    "in_app": {"max_attempts": 3, "base": 1.0, "cap": 10.0, "failover_after": 2},
}
# A provider whose recent error rate crosses this is skipped for the secondary, when there is one.
PROVIDER_HEALTH = {"window_seconds": 300, "min_attempts": 10, "max_error_rate": 0.5}
# How links in messages (unsubscribe, preferences) reach a tenant's domain.
PUBLIC_SCHEME = env.str("PUBLIC_SCHEME", default="https")
PUBLIC_PORT = env.int("PUBLIC_PORT", default=0)  # 0: the scheme's default port

# A broadcast to 100,000 inline recipients is a body of about 6 MB (Django's default: 2.5 MB).
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("DATA_UPLOAD_MAX_MEMORY_SIZE", default=32 * 1024 * 1024)

# --- Webhooks to tenants' backends (notifications.webhooks) --------------------------------
# Tries per message (8 over about 18 hours: base * factor**n seconds apart, +-20% jitter, capped),
# timeouts of each request, and whether http://localhost and private addresses may be called
# (never in production: a tenant could otherwise make Herald call its internal network).
WEBHOOKS: dict[str, Any] = {
    "max_attempts": env.int("WEBHOOK_MAX_ATTEMPTS", default=8),
    "retry_base": env.float("WEBHOOK_RETRY_BASE", default=60.0),
    "retry_factor": 3.0,
    "retry_cap": env.float("WEBHOOK_RETRY_CAP", default=12 * 3600.0),
    "connect_timeout": env.float("WEBHOOK_CONNECT_TIMEOUT", default=5.0),
    "read_timeout": env.float("WEBHOOK_READ_TIMEOUT", default=10.0),
    "allow_local": env.bool("WEBHOOK_ALLOW_LOCAL", default=False),
    # The queue of the send tasks (WEBHOOK_QUEUE, with the Celery settings above).
    "queue": WEBHOOK_QUEUE,
    # A retry due within this many seconds is published with a countdown; later ones are
    # picked up by the beat task `webhooks.send_due` (every 30 s).
    "schedule_within": 300.0,
    # After a rotation the old secret still signs (a second v1) for this long.
    "previous_secret_grace": env.int("WEBHOOK_SECRET_GRACE", default=24 * 3600),
    "max_endpoints": 10,
    # Delivered and failed messages (and their attempts) are kept this many days.
    "retention_days": env.int("WEBHOOK_RETENTION_DAYS", default=30),
}

# --- REST API -----------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["tenants.api_auth.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["tenants.api_auth.HasTenantApiKey"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "tenant_platform.api_errors.exception_handler",
    "UNAUTHENTICATED_USER": None,
    # The per-key request limit, then the Idempotency-Key hook (last: it needs the others passed).
    "DEFAULT_THROTTLE_CLASSES": [
        "notifications.api.throttling.ApiKeyRateThrottle",
        "notifications.api.idempotency.IdempotencyGate",
    ],
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Herald API",
    "DESCRIPTION": "Send notifications by email, SMS, web push and in-app feed.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SERVE_AUTHENTICATION": [],
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
}

# --- Rate limits and idempotency ----------------------------------------------------------
# Sends per tenant and channel (messages per second, burst); a tenant's own `rate_limits`
# override these. Over the limit, sends wait for their turn (never dropped).
SEND_RATE_LIMITS = {
    "email": {"rate": env.float("SEND_RATE_EMAIL", default=500.0), "burst": 500},
    "sms": {"rate": env.float("SEND_RATE_SMS", default=50.0), "burst": 50},
    "push": {"rate": env.float("SEND_RATE_PUSH", default=500.0), "burst": 500},
    "in_app": {"rate": env.float("SEND_RATE_IN_APP", default=2000.0), "burst": 2000},
}
# Requests per API key (GCRA): `rate` per second sustained, `burst` at once. 429 beyond it.
API_RATE_LIMIT = {
    "rate": env.float("API_RATE_LIMIT_RATE", default=100.0),
    "burst": env.int("API_RATE_LIMIT_BURST", default=200),
}
# How long an Idempotency-Key's answer is replayed (seconds), and how long a request holds its
# key while running (past that a crashed request's key is free again).
IDEMPOTENCY_TTL = env.int("IDEMPOTENCY_TTL", default=24 * 3600)
IDEMPOTENCY_CLAIM_TTL = env.int("IDEMPOTENCY_CLAIM_TTL", default=120)

# --- Static files, i18n -------------------------------------------------------------------
STATIC_URL = "/static/"
STATIC_ROOT: Path | None = BASE_DIR / "staticfiles"
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Logging ------------------------------------------------------------------------------
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        # Rejected task messages, forged headers: always kept, whatever LOG_LEVEL says.
        "herald.security": {"level": "INFO", "propagate": True},
    },
}
