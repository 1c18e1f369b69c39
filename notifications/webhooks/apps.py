from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    name = "notifications.webhooks"
    label = "webhooks"
    verbose_name = "Webhooks"

    def ready(self) -> None:
        from . import service

        service.connect_signals()
