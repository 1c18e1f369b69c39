"""One JSON error shape for the whole API.

    {"error": {"code": "validation_failed", "message": "...", "fields": {"recipient.email": ["..."]}}}

`fields` names each bad field by its path in the request body, so a client can point at it.
"""

import logging
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

log = logging.getLogger(__name__)

AUTH_REQUIRED = "Authentication required: send the header 'Authorization: Bearer <api key>'."


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    response = drf_exception_handler(exc, context)
    if response is None:
        return None  # an unexpected error: Django's handler500 answers (as JSON under /api/)
    if isinstance(exc, exceptions.ValidationError):
        fields = flatten_errors(exc.detail)
        message = "; ".join(f"{name}: {' '.join(msgs)}" for name, msgs in fields.items())
        body: dict[str, Any] = {"code": "validation_failed", "message": message, "fields": fields}
    elif isinstance(exc, exceptions.NotAuthenticated):
        body = {"code": "not_authenticated", "message": AUTH_REQUIRED}
    elif isinstance(exc, exceptions.APIException):
        detail = exc.detail
        code = detail.code if isinstance(detail, exceptions.ErrorDetail) else exc.default_code
        body = {"code": str(code), "message": str(detail)}
    else:  # Http404 / PermissionDenied from Django, turned into API exceptions by DRF
        body = {"code": "error", "message": str(response.data.get("detail", ""))}
    response.data = {"error": body}
    return response


def flatten_errors(detail: Any, prefix: str = "") -> dict[str, list[str]]:
    """{"recipient": {"email": ["bad"]}} -> {"recipient.email": ["bad"]}."""
    out: dict[str, list[str]] = {}
    if isinstance(detail, dict):
        for key, value in detail.items():
            if isinstance(key, int):  # a ListField's child errors come keyed by index
                out.update(flatten_errors(value, f"{prefix}[{key}]"))
                continue
            name = "" if key == "non_field_errors" else str(key)
            path = f"{prefix}.{name}" if prefix and name else (prefix or name)
            out.update(flatten_errors(value, path))
    elif isinstance(detail, list) and detail and all(isinstance(d, dict | list) for d in detail):
        for index, value in enumerate(detail):
            out.update(flatten_errors(value, f"{prefix}[{index}]"))
    elif isinstance(detail, list):
        if detail:
            out[prefix or "body"] = [str(d) for d in detail]
    else:
        out[prefix or "body"] = [str(detail)]
    return out


def handler400(request: HttpRequest, exception: Exception) -> HttpResponse:
    """JSON under /api/ (e.g. a body over DATA_UPLOAD_MAX_MEMORY_SIZE), Django's page elsewhere."""
    if not request.path.startswith("/api/"):
        return defaults.bad_request(request, exception)
    return JsonResponse(
        {"error": {"code": "bad_request", "message": f"The request could not be read: {exception}"}},
        status=status.HTTP_400_BAD_REQUEST,
    )


def handler404(request: HttpRequest, exception: Exception) -> HttpResponse:
    """JSON under /api/, Django's page elsewhere (the console)."""
    if not request.path.startswith("/api/"):
        return defaults.page_not_found(request, exception)
    return JsonResponse(
        {"error": {"code": "not_found", "message": f"No route for {request.path}"}},
        status=status.HTTP_404_NOT_FOUND,
    )


def handler500(request: HttpRequest) -> HttpResponse:
    if not request.path.startswith("/api/"):
        return defaults.server_error(request)
    return JsonResponse(
        {"error": {"code": "server_error", "message": "Herald hit an unexpected error; it has been logged."}},
        status=status.HTTP_500_INTERNAL_SERVER_ERROR,
    )
