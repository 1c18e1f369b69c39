"""Web push for end users: the tenant's VAPID keys, the subscription endpoints, the service worker.

Sending is notifications.providers.webpush; this package is what a browser meets.
"""
