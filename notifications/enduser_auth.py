"""DRF authentication for end users: a signed recipient token, no account.

Sent as `Authorization: Recipient <token>` (or `?token=` where a header can't be set, as for a
WebSocket). Valid only on the domain of the tenant that minted it.
"""

from dataclasses import dataclass

from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from .links import BadToken, read_recipient_token
from .models import Recipient


@dataclass(frozen=True)
class EndUser:
    recipient: Recipient
    is_authenticated: bool = True


class RecipientTokenAuthentication(BaseAuthentication):
    keyword = "Recipient"

    def authenticate(self, request: Request) -> tuple[EndUser, str] | None:
        header = get_authorization_header(request).split()
        if header and header[0].decode(errors="replace") == self.keyword and len(header) == 2:
            token = header[1].decode(errors="replace")
        else:
            token = request.query_params.get("token", "")
        if not token:
            return None
        try:
            claim = read_recipient_token(token)
        except BadToken as exc:
            raise exceptions.AuthenticationFailed(str(exc), code="invalid_recipient_token") from None
        recipient = Recipient.objects.filter(id=claim.recipient_id).first()
        if recipient is None:
            raise exceptions.AuthenticationFailed(
                "recipient no longer exists", code="invalid_recipient_token"
            )
        return EndUser(recipient), token

    def authenticate_header(self, request: Request) -> str:
        return f'{self.keyword} realm="feed"'


class IsEndUser(BasePermission):
    message = "Send 'Authorization: Recipient <token>' (a token your app got from Herald's API)."

    def has_permission(self, request: Request, view: object) -> bool:
        return isinstance(request.user, EndUser)
