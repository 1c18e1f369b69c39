"""Webhooks: each delivery state change posted to the tenant's own URLs, signed, retried, logged.

`service.on_delivery_events` turns committed DeliveryEvents into outbox rows (one WebhookMessage
per endpoint and event) and enqueues one send task; `sender` posts them with a signature
(`signing`) through a transport that refuses private addresses (`transport`); every try is a
WebhookAttempt. The console pages are in `views`.
"""
