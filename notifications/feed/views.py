"""The feed over REST: for the tenant's backend (API key) and for the end user (recipient token).

Both see the same shapes; they differ in who is asking and so in how the recipient is found:
the backend names the recipient by its own external_id, the end user's token names them.

    GET   .../feed                 {"next", "previous", "results": [item...], "counts": {"unread", "total"}}
          ?status=unread|read|archived (default: everything not archived), ?limit=, ?cursor=
    PATCH .../feed/<item id>       {"status": "read" | "unread" | "archived"} -> the item
    POST  .../feed/mark-all-read   -> {"updated": n, "counts": {...}}
    GET   /u/feed/badge            -> {"unread": n}            (end user)
    POST  /api/v1/recipients/<external_id>/token -> {"token", "expires_in"}   (backend)

End-user endpoints answer CORS requests from any origin: the widget runs on the tenant's own
pages, and the token travels in a header, never in a cookie, so no other site can borrow it.
"""

from abc import ABC, abstractmethod
from typing import Any, NoReturn

from django.http import HttpRequest, HttpResponse
from django.templatetags.static import static
from django.utils.html import format_html, json_script
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, status
from rest_framework.generics import GenericAPIView
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response

from .. import feed
from ..enduser_auth import EndUser, IsEndUser, RecipientTokenAuthentication
from ..links import FEED_TOKEN_MAX_AGE, BadToken, read_recipient_token, recipient_token
from ..models import FeedStatus, InAppMessage, Recipient
from .serializers import (
    BadgeOut,
    FeedItemSerializer,
    FeedItemUpdate,
    FeedPageOut,
    MarkAllReadOut,
    RecipientTokenOut,
)


class FeedPage(CursorPagination):
    ordering = ("-created_at", "-id")
    page_size = 20
    max_page_size = 100
    page_size_query_param = "limit"


STATUS_PARAM = OpenApiParameter(
    "status",
    OpenApiTypes.STR,
    enum=list(FeedStatus.values),
    description="Only items with this status (default: unread and read, i.e. not archived)",
)


# --- whose feed -------------------------------------------------------------------------------


class FeedView(GenericAPIView[InAppMessage], ABC):
    """Base of the feed views: OfRecipientByExternalId or OfEndUser says whose feed it is."""

    serializer_class = FeedItemSerializer
    pagination_class = FeedPage

    @abstractmethod
    def recipient(self) -> Recipient:
        """The recipient whose feed this request reads or changes."""


class OfRecipientByExternalId(FeedView):
    """The tenant backend names the recipient in the URL (API key auth, the default)."""

    def recipient(self) -> Recipient:
        external_id = self.kwargs["external_id"]
        found = Recipient.objects.filter(external_id=external_id).first()
        if found is None:
            raise exceptions.NotFound(f"No recipient with external_id {external_id!r}.", code="not_found")
        return found


class OfEndUser(FeedView):
    """The end user's own feed, named by their recipient token (header or ?token=)."""

    authentication_classes = [RecipientTokenAuthentication]
    permission_classes = [IsEndUser]

    def recipient(self) -> Recipient:
        user = self.request.user
        assert isinstance(user, EndUser)
        return user.recipient

    def permission_denied(
        self, request: Request, message: str | None = None, code: str | None = None
    ) -> NoReturn:
        # Not the API's "send a Bearer API key": an end user holds a recipient token.
        raise exceptions.AuthenticationFailed(IsEndUser.message, code="not_authenticated")

    def check_permissions(self, request: Request) -> None:
        if request.method != "OPTIONS":  # a CORS preflight carries no credentials
            super().check_permissions(request)

    def options(self, request: Request, *args: Any, **kwargs: Any) -> Response:  # type: ignore[override]
        return Response(status=status.HTTP_204_NO_CONTENT)

    def finalize_response(self, request: Request, response: Response, *args: Any, **kwargs: Any) -> Response:
        response = super().finalize_response(request, response, *args, **kwargs)
        response["Access-Control-Allow-Origin"] = "*"
        response["Access-Control-Allow-Headers"] = "Authorization, Content-Type"
        response["Access-Control-Allow-Methods"] = "GET, PATCH, POST, OPTIONS"
        response["Access-Control-Max-Age"] = "86400"
        return response


# --- what can be done with it -----------------------------------------------------------------


class FeedList(FeedView):
    @extend_schema(parameters=[STATUS_PARAM], responses=FeedPageOut)
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        recipient = self.recipient()
        wanted = request.query_params.get("status") or None
        if wanted is not None and wanted not in FeedStatus.values:
            raise exceptions.ValidationError(
                {"status": [f"unknown status {wanted!r}; use one of {', '.join(FeedStatus.values)}"]}
            )
        paginator = self.paginator
        assert paginator is not None
        page = paginator.paginate_queryset(feed.items(recipient, wanted), request, view=self) or []
        assert isinstance(paginator, FeedPage)
        return Response(
            {
                "next": paginator.get_next_link(),
                "previous": paginator.get_previous_link(),
                "results": FeedItemSerializer(page, many=True).data,
                "counts": feed.counts(recipient.id),
            }
        )


class FeedItem(FeedView):
    @extend_schema(request=FeedItemUpdate, responses=FeedItemSerializer)
    def patch(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        recipient = self.recipient()
        # Another recipient's item is simply not there: 404, not 403, so ids reveal nothing.
        item = InAppMessage.objects.filter(recipient=recipient, id=self.kwargs["item_id"]).first()
        if item is None:
            raise exceptions.NotFound("No such item in this recipient's feed.", code="not_found")
        update = FeedItemUpdate(data=request.data)
        update.is_valid(raise_exception=True)
        feed.set_status(item, update.validated_data["status"])
        return Response(FeedItemSerializer(item).data)


class FeedMarkAllRead(FeedView):
    @extend_schema(request=None, responses=MarkAllReadOut)
    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        recipient = self.recipient()
        updated = feed.mark_all_read(recipient)
        return Response({"updated": updated, "counts": feed.counts(recipient.id)})


class FeedBadge(FeedView):
    @extend_schema(responses=BadgeOut)
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return Response({"unread": feed.counts(self.recipient().id)["unread"]})


# --- the tenant backend's endpoints -----------------------------------------------------------


class RecipientFeed(OfRecipientByExternalId, FeedList):
    pass


class RecipientFeedItem(OfRecipientByExternalId, FeedItem):
    pass


class RecipientFeedMarkAllRead(OfRecipientByExternalId, FeedMarkAllRead):
    pass


class RecipientToken(OfRecipientByExternalId):
    @extend_schema(request=None, responses=RecipientTokenOut)
    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """A token for this recipient's browser: their feed, live updates and preferences."""
        recipient = self.recipient()
        return Response({"token": recipient_token(str(recipient.id)), "expires_in": FEED_TOKEN_MAX_AGE})


# --- the end user's endpoints -----------------------------------------------------------------


class MyFeed(OfEndUser, FeedList):
    pass


class MyFeedItem(OfEndUser, FeedItem):
    pass


class MyFeedMarkAllRead(OfEndUser, FeedMarkAllRead):
    pass


class MyBadge(OfEndUser, FeedBadge):
    pass


# --- the demo page ----------------------------------------------------------------------------

DEMO_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>Herald in-app feed: demo</title>
<style>
  body {{ font: 15px/1.5 system-ui, sans-serif; margin: 0; color: #1f2328; background: #f6f8fa; }}
  header {{ display: flex; align-items: center; justify-content: space-between;
           padding: 10px 24px; background: #fff; border-bottom: 1px solid #d0d7de; }}
  main {{ max-width: 720px; margin: 32px auto; padding: 0 24px; }}
  pre {{ background: #fff; border: 1px solid #d0d7de; padding: 12px; overflow: auto; }}
</style>
</head>
<body>
<header><strong>Your app</strong><div id="herald-feed"></div></header>
<main>
<h1>In-app feed</h1>
<p>The bell above is Herald's feed widget, as a tenant puts it on its own pages. Send a
notification with <code>"channels": ["in_app"]</code> to this recipient and it appears here live.</p>
<pre>&lt;script src="{script_url}"&gt;&lt;/script&gt;
&lt;div id="herald-feed"&gt;&lt;/div&gt;
&lt;script&gt;
  HeraldFeed.mount(document.getElementById("herald-feed"), {{
    token: "&lt;from POST /api/v1/recipients/&lt;external_id&gt;/token&gt;",
    baseUrl: "{base_url}",
  }});
&lt;/script&gt;</pre>
</main>
{token_json}
<script src="{script_url}"></script>
<script>
  window.heraldFeed = HeraldFeed.mount(document.getElementById("herald-feed"), {{
    token: JSON.parse(document.getElementById("herald-token").textContent),
    baseUrl: "",
  }});
</script>
</body>
</html>
"""


def demo(request: HttpRequest) -> HttpResponse:
    """GET /u/feed/demo/?token=...: a page with the widget mounted, for trying it out."""
    token = request.GET.get("token", "")
    try:
        read_recipient_token(token)
    except BadToken as exc:
        return HttpResponse(
            format_html(
                "<!doctype html><title>Herald feed demo</title><h1>Token not accepted</h1>"
                "<p>{}. Get one from <code>POST /api/v1/recipients/&lt;external_id&gt;/token</code> "
                "with your API key, on this tenant's domain, and open "
                "<code>/u/feed/demo/?token=...</code>.</p>",
                str(exc).capitalize(),
            ),
            status=401,
        )
    page = format_html(
        DEMO_PAGE,
        script_url=static("herald/feed-widget.js"),
        base_url=request.build_absolute_uri("/").rstrip("/"),
        token_json=json_script(token, "herald-token"),
    )
    response = HttpResponse(page)
    response["Cache-Control"] = "no-store"
    return response
