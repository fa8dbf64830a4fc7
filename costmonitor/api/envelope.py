"""The response envelope: `{"status", "data" | "error", "meta": {timestamp, request_id, version}}`."""

import time

from django.conf import settings
from django.http import HttpResponse
from rest_framework.renderers import BrowsableAPIRenderer, JSONRenderer
from rest_framework.response import Response

from .middleware import current_request_id


def meta() -> dict:
    return {"timestamp": round(time.time(), 3), "request_id": current_request_id(),
            "version": settings.COSTMONITOR_VERSION}


def error_body(code: str, message: str, details=None, retry_after=None) -> dict:
    return {"status": "error",
            "error": {"code": code, "message": message, "details": details or {}, "retry_after": retry_after},
            "meta": meta()}


# The error code an HTTP status stands for when nothing more specific is known.
STATUS_CODES = {
    400: "INVALID_PARAMETERS",
    401: "AUTHENTICATION_FAILED",
    402: "BUDGET_EXCEEDED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    406: "INVALID_PARAMETERS",
    413: "INVALID_PARAMETERS",
    415: "INVALID_PARAMETERS",
    422: "INVALID_PARAMETERS",
    429: "RATE_LIMIT_EXCEEDED",
    503: "SERVICE_UNAVAILABLE",
}


def code_for_status(status_code: int) -> str:
    return STATUS_CODES.get(status_code, "INTERNAL_ERROR" if status_code >= 500 else "ERROR")


def wrap(data, status_code: int) -> dict:
    if isinstance(data, dict) and data.get("status") == "error" and "error" in data:
        return data
    if status_code >= 400:
        # A view answered an error Response itself instead of raising: keep its body as details.
        details = data if isinstance(data, dict) else {"detail": data}
        return error_body(code_for_status(status_code), "Request failed.", details)
    return {"status": "success", "data": data, "meta": meta()}


class EnvelopeJSONRenderer(JSONRenderer):
    def render(self, data, accepted_media_type=None, renderer_context=None):
        response = (renderer_context or {}).get("response")
        if response is not None and not getattr(response, "skip_envelope", False):
            if response.status_code == 204:
                return b""
            data = wrap(data, response.status_code)
        return super().render(data, accepted_media_type, renderer_context)


class EnvelopeBrowsableAPIRenderer(BrowsableAPIRenderer):
    def get_default_renderer(self, view):
        return EnvelopeJSONRenderer()


def success_response(request, data, status_code: int, headers: dict | None = None) -> HttpResponse:
    """A success answer for the write hot paths. When the client negotiated the JSON envelope (every
    SDK and pipeline does), the body is rendered here, straight to bytes: DRF's Response goes through
    a template-response cycle that cost about a tenth of a track request. A browser still gets the
    browsable API; the bytes are the same either way."""
    renderer = getattr(request, "accepted_renderer", None)
    if type(renderer) is not EnvelopeJSONRenderer or status_code >= 400:
        return Response(data, status=status_code, headers=headers)
    content = renderer.render({"status": "success", "data": data, "meta": meta()}, renderer.media_type)
    return HttpResponse(content, status=status_code, content_type=renderer.media_type, headers=headers)
