from django.urls import path

from . import views

app_name = "webhooks"

urlpatterns = [
    path("", views.endpoint_list, name="list"),
    path("new/", views.endpoint_create, name="create"),
    path("<uuid:pk>/", views.endpoint_detail, name="detail"),
    path("<uuid:pk>/rotate/", views.endpoint_rotate, name="rotate"),
    path("<uuid:pk>/test/", views.endpoint_test, name="test"),
    path("<uuid:pk>/delete/", views.endpoint_delete, name="delete"),
    path("<uuid:pk>/messages/<int:message_id>/", views.message_detail, name="message"),
    path("<uuid:pk>/messages/<int:message_id>/resend/", views.message_resend, name="resend"),
]
