"""Herald's settings (tenant_platform.settings.dev, as bench/api.py runs them) with one change:
ROOT_URLCONF is bench._common, i.e. Herald's own routes plus the bare view /bench/bare, so both
are served by the same server process with the same settings."""

from tenant_platform.settings.dev import *  # noqa: F403

ROOT_URLCONF = "bench._common"
