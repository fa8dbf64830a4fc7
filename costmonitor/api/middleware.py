"""Request ids: echoed or generated, returned as `X-Request-ID` and stamped on every log line."""

import contextvars
import logging
import re
import threading
import uuid

from django.utils.log import log_response

_request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


# API requests served by this process: the health check's `request_count` (per process, like the
# reference's dashboard counter; summing across processes is the metrics system's job).
_served_lock = threading.Lock()
_api_requests_served = 0


def api_requests_served() -> int:
    return _api_requests_served


def _count_api_request() -> None:
    global _api_requests_served
    with _served_lock:
        _api_requests_served += 1


def current_request_id() -> str:
    return _request_id.get()


def new_request_id() -> str:
    return f"req_{uuid.uuid4().hex}"


class RequestIdMiddleware:
    """Outermost middleware, so every answer (redirects and error pages included) carries the id."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path.startswith("/api/"):
            _count_api_request()
        sent = request.headers.get("X-Request-ID", "")
        request_id = sent if _VALID_REQUEST_ID.match(sent) else new_request_id()
        request.request_id = request_id
        token = _request_id.set(request_id)
        try:
            response = self.get_response(request)
            if response.status_code >= 400:
                # Django logs 4xx/5xx answers ("Not Found: /x") after the middleware has returned;
                # logging it here, inside the request, stamps the line with its id (Django skips it then).
                log_response("%s: %s", response.reason_phrase, request.path, response=response, request=request)
        finally:
            _request_id.reset(token)
        response["X-Request-ID"] = request_id
        return response


class RequestIdLogFilter(logging.Filter):
    """Stamps `request_id` on every record ("-" outside a request) for the log format."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = _request_id.get()
        return True
