"""Whether the current tenant can send on a channel: asked by every POST.

The answer follows from the providers the tenant's channel resolves to, which
providers.registry.resolve keeps per process (dropped by any ProviderConfig save or delete, here
at once and elsewhere within TENANT_CACHE_CHECK_INTERVAL seconds, and by a changed
PLATFORM_PROVIDERS setting): no query per request, and no second cache to fall out of step
with that one.
"""

from ..providers.registry import UnknownProvider, provider_class, resolve


def channel_unavailable(channel: str) -> str | None:
    """Why this tenant can't send on `channel` now, or None if it can."""
    primary, _ = resolve(channel)
    if primary is None:
        return f"no {channel} provider is configured for this tenant"
    try:
        provider_class(primary.name)
    except (ImportError, UnknownProvider):
        return f"channel {channel!r} is not available yet"
    return None
