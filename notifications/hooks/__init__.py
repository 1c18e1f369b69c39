"""Callbacks from providers (delivery reports), on the tenant's own domain.

No API key: each provider signs its callbacks, and each hook verifies that signature before it
reads anything else. The domain picks the tenant's schema, so a hook only ever sees that
tenant's deliveries.
"""
