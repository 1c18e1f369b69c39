from django.urls import include, path
from django.views.generic import RedirectView

from . import keys, providers, team, usage, views

app_name = "console"

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="console:notifications"), name="home"),
    path("login/", views.login, name="login"),
    path("logout/", views.logout, name="logout"),
    path("notifications/", views.notification_list, name="notifications"),
    path("notifications/<uuid:pk>/", views.notification_detail, name="notification"),
    path("webhooks/", include("notifications.webhooks.urls")),
]

# Team, API keys, providers, usage.
urlpatterns += [
    path("team/", team.team, name="team"),
    path("team/invite/", team.invite, name="team_invite"),
    path("team/invites/<int:pk>/revoke/", team.revoke_invite, name="team_invite_revoke"),
    path("team/members/<int:pk>/role/", team.change_role, name="team_role"),
    path("team/members/<int:pk>/remove/", team.remove_member, name="team_remove"),
    path("invite/<str:token>/", team.accept_invite, name="invite"),
    path("api-keys/", keys.api_keys, name="api_keys"),
    path("api-keys/new/", keys.create_key, name="api_key_create"),
    path("api-keys/<int:pk>/revoke/", keys.revoke_key, name="api_key_revoke"),
    path("providers/", providers.providers, name="providers"),
    path("providers/test/", providers.send_test, name="provider_test"),
    path("providers/<str:channel>/<str:role>/", providers.edit_provider, name="provider_edit"),
    path("providers/<str:channel>/<str:role>/disable/", providers.disable_provider, name="provider_disable"),
    path("usage/", usage.usage, name="usage"),
]
