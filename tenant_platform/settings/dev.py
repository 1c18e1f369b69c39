"""Local development (`make run`)."""

from .base import *  # noqa: F403
from .base import BASE_DIR, SECRET_KEY, env

if not SECRET_KEY:
    # `make run` keeps a generated key in .data/secret_key; a bare manage.py call reuses it.
    _key_file = BASE_DIR / ".data" / "secret_key"
    SECRET_KEY = _key_file.read_text().strip() if _key_file.exists() else "dev-only-insecure-key"

DEBUG = env.bool("DEBUG", default=True)
ALLOWED_HOSTS = ["*"]
# Maildir of the local mail catcher that `make run` starts when EMAIL_URL is unset.
DEV_MAILBOX_DIR = env.str("DEV_MAILBOX_DIR", default="") or None
# What the fake Twilio API and the fake push service of `make run` received (listed under /dev/).
DEV_SMS_DIR = env.str("DEV_SMS_DIR", default="") or None
DEV_PUSH_DIR = env.str("DEV_PUSH_DIR", default="") or None
# Static files straight from the apps (no collectstatic needed outside production).
STATIC_ROOT = None
WHITENOISE_USE_FINDERS = True
PUBLIC_SCHEME = env.str("PUBLIC_SCHEME", default="http")
PUBLIC_PORT = env.int("PUBLIC_PORT", default=env.int("PORT", default=8000))
# Webhooks may go to a receiver on this machine (http://localhost:...).
WEBHOOKS = {**WEBHOOKS, "allow_local": env.bool("WEBHOOK_ALLOW_LOCAL", default=True)}  # noqa: F405
