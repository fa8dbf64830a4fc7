"""The response envelope: `{"status", "data" | "error", "meta": {timestamp, request_id, version}}`."""

import time

from django.conf import settings
from rest_framework.renderers import BrowsableAPIRenderer, JSONRenderer

from .middleware import current_request_id


def meta() -> dict:
    return {"timestamp": round(time.time(), 3), "request_id": current_request_id(),
            "version": settings.COSTMONITOR_VERSION}


def error_body(code: str, message: str, details=None, retry_after=None) -> dict:
    return {"status": "error",
            "error": {"code": code, "message": message, "details": details or {}, "retry_after": retry_after},
            "meta": meta()}


def wrap(data, status_code: int) -> dict:
    if isinstance(data, dict) and data.get("status") == "error" and "error" in data:
        return data
    if status_code >= 400:
        # A view or DRF answered an error without going through the handler.
        return error_body("INVALID_PARAMETERS" if status_code == 400 else "ERROR", "Request failed.", data)
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
