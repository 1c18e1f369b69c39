"""Routes of the development tools, included under /dev/ only when DEBUG is on."""

from django.urls import path

from . import views

app_name = "devtools"

urlpatterns = [
    path("", views.dev_index, name="index"),
    path("mail/", views.mailbox_index, name="mailbox"),
    path("mail/<str:key>/", views.mail_detail, name="mail-detail"),
    path("mail/<str:key>/raw", views.mail_raw, name="mail-raw"),
    path("sms/", views.sms_index, name="sms"),
    path("push/", views.push_index, name="push"),
    path("push/subscribe", views.push_subscribe, name="push-subscribe"),
]
