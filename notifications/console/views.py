"""The tenant console: sign in and out (the pages live in modules of their own).

Served only on a tenant's own domain. Users, sessions and data all live in the tenant's schema,
so a session or a user of one tenant means nothing on another tenant's domain.
"""

from collections.abc import Callable

from django.contrib.auth import views as auth_views
from django.http import HttpResponseBase

from .roles import tenant_host_only

View = Callable[..., HttpResponseBase]


class LoginView(auth_views.LoginView):
    template_name = "console/login.html"
    redirect_authenticated_user = True
    next_page = "console:dashboard"


login = tenant_host_only(LoginView.as_view())
logout = tenant_host_only(auth_views.LogoutView.as_view(next_page="console:login"))
