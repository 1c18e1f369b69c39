from django.urls import include, path

from . import (
    audience_pages,
    broadcast_pages,
    dashboard,
    keys,
    notification_pages,
    providers,
    team,
    template_pages,
    usage,
    views,
)

app_name = "console"

urlpatterns = [
    path("", dashboard.dashboard, name="dashboard"),
    path("dashboard/data/", dashboard.dashboard_data, name="dashboard_data"),
    path("dashboard/failures/", dashboard.failures, name="dashboard_failures"),
    path("login/", views.login, name="login"),
    path("logout/", views.logout, name="logout"),
    # notifications
    path("notifications/", notification_pages.notification_list, name="notifications"),
    path("notifications/rows/", notification_pages.notification_rows, name="notification_rows"),
    path("notifications/<uuid:pk>/", notification_pages.notification_detail, name="notification"),
    path("notifications/<uuid:pk>/row/", notification_pages.notification_row, name="notification_row"),
    path(
        "notifications/<uuid:pk>/deliveries/",
        notification_pages.notification_deliveries,
        name="notification_deliveries",
    ),
    path("notifications/<uuid:pk>/retry/", notification_pages.notification_retry, name="notification_retry"),
    # broadcasts
    path("broadcasts/", broadcast_pages.broadcast_list, name="broadcasts"),
    path("broadcasts/<uuid:pk>/", broadcast_pages.broadcast_detail, name="broadcast"),
    path("broadcasts/<uuid:pk>/progress/", broadcast_pages.broadcast_progress, name="broadcast_progress"),
    # templates
    path("templates/", template_pages.template_list, name="templates"),
    path("templates/new/", template_pages.template_edit, name="template_new"),
    path("templates/<slug:key>/", template_pages.template_detail, name="template"),
    path("templates/<slug:key>/edit/", template_pages.template_edit, name="template_edit"),
    path("templates/<slug:key>/preview/", template_pages.template_preview, name="template_preview"),
    path("templates/<slug:key>/delete/", template_pages.template_delete, name="template_delete"),
    # recipients and topics
    path("recipients/", audience_pages.recipient_list, name="recipients"),
    path("recipients/<uuid:pk>/", audience_pages.recipient_detail, name="recipient"),
    path("topics/", audience_pages.topic_list, name="topics"),
    path("topics/<slug:key>/", audience_pages.topic_detail, name="topic"),
    path("topics/<slug:key>/subscribers/add/", audience_pages.topic_add, name="topic_add"),
    path("topics/<slug:key>/subscribers/remove/", audience_pages.topic_remove, name="topic_remove"),
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
