from django.urls import path

from . import audience_pages, broadcast_pages, dashboard, notification_pages, template_pages, views

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
]
