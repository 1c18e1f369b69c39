from django.urls import include, path
from django.views.generic import RedirectView

from . import views

app_name = "console"

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="console:notifications"), name="home"),
    path("login/", views.login, name="login"),
    path("logout/", views.logout, name="logout"),
    path("notifications/", views.notification_list, name="notifications"),
    path("notifications/<uuid:pk>/", views.notification_detail, name="notification"),
    path("webhooks/", include("notifications.webhooks.urls")),
]
