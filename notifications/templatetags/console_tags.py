"""Template helpers of the console: navigation links that survive pages not built yet."""

from typing import Any

from django import template
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html
from django.utils.safestring import mark_safe

from ..console.roles import has_role

register = template.Library()


@register.simple_tag(takes_context=True)
def console_link(context: dict[str, Any], url_name: str, label: str) -> str:
    """A navigation link to `url_name`, marked current on its pages; nothing if the route doesn't
    exist (a page another part of the console adds later, or one left out of this deployment)."""
    try:
        url = reverse(url_name)
    except NoReverseMatch:
        return ""
    request = context.get("request")
    path = getattr(request, "path", "")
    home = url.rstrip("/").endswith("/console")
    current = path == url if home else path.startswith(url)
    return format_html(
        '<a href="{}" class="nav-link{}" data-nav="{}"{}>{}</a>',
        url,
        " current" if current else "",
        url_name,
        mark_safe(' aria-current="page"') if current else "",
        label,
    )


@register.filter
def may(user: Any, role: str) -> bool:
    """`{% if user|may:"admin" %}`: show a control only to those who may use it."""
    return has_role(user, role)


@register.filter
def get(mapping: Any, key: str) -> Any:
    """`{{ errors|get:name }}`: a dict's value by a computed key ("" when absent)."""
    if isinstance(mapping, dict):
        return mapping.get(key, "")
    return ""
