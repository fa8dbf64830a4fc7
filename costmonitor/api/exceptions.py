"""Maps every exception raised under /api/ to the envelope with the reference's error codes.

Unhandled exceptions answer a generic 500: the traceback goes to the log, never to the client.
"""

import logging
import math

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.db import DatabaseError, InterfaceError, OperationalError
from django.http import Http404, JsonResponse
from rest_framework import exceptions as drf
from rest_framework.response import Response
from rest_framework.views import set_rollback

from costmonitor.errors import CostMonitorError

from .envelope import code_for_status, error_body
from .parsers import PayloadTooLarge

logger = logging.getLogger("costmonitor.api")

_DRF_CODES = [
    (drf.NotAuthenticated, "AUTHENTICATION_FAILED", "Authentication credentials were not provided."),
    (drf.AuthenticationFailed, "AUTHENTICATION_FAILED", None),
    (drf.PermissionDenied, "PERMISSION_DENIED", None),
    (drf.NotFound, "NOT_FOUND", None),
    (drf.MethodNotAllowed, "METHOD_NOT_ALLOWED", None),
    (drf.Throttled, "RATE_LIMIT_EXCEEDED", None),
    (drf.UnsupportedMediaType, "INVALID_PARAMETERS", None),
    (drf.NotAcceptable, "INVALID_PARAMETERS", None),
    (PayloadTooLarge, "INVALID_PARAMETERS", None),
    (drf.ParseError, "INVALID_PARAMETERS", None),
    (drf.ValidationError, "INVALID_PARAMETERS", "Invalid request parameters."),
]


def _message(detail) -> str:
    if isinstance(detail, str):
        return detail
    return "Invalid request parameters."


def _drf_code(exc: drf.APIException) -> tuple[str, str | None]:
    for cls, code, message in _DRF_CODES:
        if isinstance(exc, cls):
            return code, message
    return code_for_status(exc.status_code), None


def _field_details(detail) -> dict:
    """Validation errors keyed by the offending field (`non_field_errors` for the body as a whole)."""
    if isinstance(detail, dict):
        return detail
    return {"non_field_errors": detail if isinstance(detail, list) else [detail]}


def envelope_exception_handler(exc, context):
    # Like DRF's own handler: an error answer must not commit a request-wide transaction.
    set_rollback()
    headers = {}
    if isinstance(exc, CostMonitorError):
        body = error_body(exc.code, exc.message, exc.details, exc.retry_after)
        if exc.retry_after is not None:
            headers["Retry-After"] = str(math.ceil(exc.retry_after))
        return Response(body, status=exc.http_status, headers=headers)
    if isinstance(exc, Http404):
        exc = drf.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = drf.PermissionDenied()
    elif isinstance(exc, RequestDataTooBig):
        exc = PayloadTooLarge()
    if isinstance(exc, drf.APIException):
        code, message = _drf_code(exc)
        details = _field_details(exc.detail) if isinstance(exc, drf.ValidationError) else {}
        retry_after = None
        if isinstance(exc, drf.Throttled):
            retry_after = max(1, math.ceil(exc.wait or 1))
            headers["Retry-After"] = str(retry_after)
            message = f"Rate limit exceeded. Retry after {retry_after} seconds."
        if getattr(exc, "auth_header", None):
            headers["WWW-Authenticate"] = exc.auth_header
        body = error_body(code, message or _message(exc.detail), details, retry_after)
        return Response(body, status=exc.status_code, headers=headers)
    if isinstance(exc, (OperationalError, InterfaceError)):
        logger.error("Database unavailable", exc_info=exc)
        return Response(error_body("DATABASE_ERROR", "The database is unavailable; nothing was recorded. Retry later."),
                        status=503, headers={"Retry-After": "5"})
    if isinstance(exc, DatabaseError):
        logger.error("Database error", exc_info=exc)
        return Response(error_body("DATABASE_ERROR", "A database operation failed."), status=500)
    logger.error("Unhandled exception in API view", exc_info=exc)
    return Response(error_body("INTERNAL_ERROR", "An internal error occurred."), status=500)


def _is_api(request) -> bool:
    return request.path.startswith("/api/")


def api_aware_404(request, exception=None):
    if _is_api(request):
        return JsonResponse(error_body("NOT_FOUND", "Not found."), status=404)
    from django.views.defaults import page_not_found
    return page_not_found(request, exception)


def api_aware_500(request):
    if _is_api(request):
        return JsonResponse(error_body("INTERNAL_ERROR", "An internal error occurred."), status=500)
    from django.views.defaults import server_error
    return server_error(request)


def api_aware_403(request, exception=None):
    if _is_api(request):
        return JsonResponse(error_body("PERMISSION_DENIED", "You do not have permission to perform this action."),
                            status=403)
    from django.views.defaults import permission_denied
    return permission_denied(request, exception)


def api_aware_400(request, exception=None):
    if _is_api(request):
        return JsonResponse(error_body("INVALID_PARAMETERS", "Bad request."), status=400)
    from django.views.defaults import bad_request
    return bad_request(request, exception)
