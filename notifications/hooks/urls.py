from django.urls import path

from . import twilio

app_name = "hooks"

urlpatterns = [
    path("twilio/status/<str:delivery_id>", twilio.status_callback, name="twilio-status"),
]
