"""The SDK's exceptions: one class per error code of the API envelope, plus "the monitor is unreachable".

Names follow the reference (`BudgetExceededException`, `CircuitBreakerError`, `ConfigurationError`,
`RateLimitExceeded`); every exception carries the server's code, message, details, HTTP status,
`retry_after_seconds` and the request id to quote when asking an admin.
"""

from __future__ import annotations

from typing import Any


class CostMonitorError(Exception):
    """Base class of every error the SDK raises."""

    code = "ERROR"

    def __init__(self, message: str = "", *, code: str | None = None, details: dict[str, Any] | None = None,
                 status_code: int | None = None, retry_after: float | None = None,
                 request_id: str | None = None):
        self.message = message or self.__class__.__doc__ or self.__class__.__name__
        if code:
            self.code = code
        self.details = details or {}
        self.status_code = status_code
        self.retry_after = retry_after
        self.request_id = request_id
        super().__init__(self.message)

    @property
    def retry_after_seconds(self) -> float | None:
        return self.retry_after

    def __str__(self) -> str:
        if not self.details or self.code != "INVALID_PARAMETERS":
            return self.message
        problems = []
        for field, why in self.details.items():
            text = " ".join(map(str, why)) if isinstance(why, list) else str(why)
            problems.append(field if text.strip() == self.message.strip() else f"{field}: {text}")
        return f"{self.message} ({'; '.join(problems)})"

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}(code={self.code!r}, status={self.status_code}, "
                f"message={self.message!r})")


class BudgetExceededException(CostMonitorError):
    """The operation would exceed a budget limit."""

    code = "BUDGET_EXCEEDED"


class CircuitBreakerError(CostMonitorError):
    """A cost circuit breaker is blocking (HTTP 503) or throttling (HTTP 429) operations."""

    code = "CIRCUIT_BREAKER_OPEN"

    @property
    def throttled(self) -> bool:
        return self.status_code == 429


class ConfigurationError(CostMonitorError):
    """The client or the server is misconfigured (missing URL or key, invalid configuration)."""

    code = "CONFIGURATION_ERROR"


class RateLimitExceeded(CostMonitorError):
    """Too many requests in the time window; wait `retry_after_seconds`."""

    code = "RATE_LIMIT_EXCEEDED"


class AuthenticationError(CostMonitorError):
    """The API key is missing, invalid or revoked."""

    code = "AUTHENTICATION_FAILED"


class PermissionDeniedError(CostMonitorError):
    """The key's owner lacks the role for this action."""

    code = "PERMISSION_DENIED"


class InvalidParametersError(CostMonitorError, ValueError):
    """The server rejected the request's parameters (see `details` for the fields)."""

    code = "INVALID_PARAMETERS"


class NotFoundError(CostMonitorError):
    """No such endpoint or object."""

    code = "NOT_FOUND"


class AlertDeliveryError(CostMonitorError):
    """An alert could not be delivered."""

    code = "ALERT_DELIVERY_FAILED"


class ServerError(CostMonitorError):
    """The server failed (5xx, DATABASE_ERROR): transient, worth retrying later."""

    code = "SERVER_ERROR"


class MonitorUnavailableError(CostMonitorError):
    """The CostMonitor server could not be reached (connection refused, timeout, DNS)."""

    code = "MONITOR_UNAVAILABLE"


_BY_CODE: dict[str, type[CostMonitorError]] = {
    "BUDGET_EXCEEDED": BudgetExceededException,
    "CIRCUIT_BREAKER_OPEN": CircuitBreakerError,
    "CONFIGURATION_ERROR": ConfigurationError,
    "RATE_LIMIT_EXCEEDED": RateLimitExceeded,
    "AUTHENTICATION_FAILED": AuthenticationError,
    "PERMISSION_DENIED": PermissionDeniedError,
    "INVALID_PARAMETERS": InvalidParametersError,
    "NOT_FOUND": NotFoundError,
    "ALERT_DELIVERY_FAILED": AlertDeliveryError,
    "DATABASE_ERROR": ServerError,
}

_BY_STATUS: dict[int, type[CostMonitorError]] = {
    400: InvalidParametersError,
    401: AuthenticationError,
    402: BudgetExceededException,
    403: PermissionDeniedError,
    404: NotFoundError,
    422: InvalidParametersError,
    429: RateLimitExceeded,
}


def error_from_response(status_code: int, body: Any, headers: Any = None) -> CostMonitorError:
    """Build the exception for an error answer: by the envelope's code, else by the HTTP status."""
    error = body.get("error") if isinstance(body, dict) else None
    error = error if isinstance(error, dict) else {}
    meta = body.get("meta") if isinstance(body, dict) and isinstance(body.get("meta"), dict) else {}
    code = str(error.get("code") or "")
    cls = _BY_CODE.get(code) or _BY_STATUS.get(status_code) or (ServerError if status_code >= 500 else CostMonitorError)
    retry_after = error.get("retry_after")
    if retry_after is None and headers is not None:
        header = headers.get("Retry-After")
        if header:
            try:
                retry_after = float(header)
            except ValueError:
                retry_after = None
    message = error.get("message") or f"HTTP {status_code} from the CostMonitor server."
    details = error.get("details") if isinstance(error.get("details"), dict) else {"errors": error.get("details")}
    request_id = meta.get("request_id") or (headers.get("X-Request-ID") if headers is not None else None)
    return cls(message, code=code or None, details=details if error.get("details") else {}, status_code=status_code,
               retry_after=float(retry_after) if retry_after is not None else None, request_id=request_id)


def is_transient(exc: BaseException) -> bool:
    """Worth keeping and resending later: unreachable, any server failure (5xx), or a rate limit."""
    if isinstance(exc, (MonitorUnavailableError, RateLimitExceeded)):
        return True
    return isinstance(exc, CostMonitorError) and exc.status_code is not None and exc.status_code >= 500
