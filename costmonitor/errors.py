"""Domain errors raised by services and mapped to the API envelope by the exception handler.

Services know nothing of HTTP; each error carries the reference's error code and the HTTP status
the API answers with, so views stay thin.
"""

from __future__ import annotations

from typing import Any


class CostMonitorError(Exception):
    code = "INTERNAL_ERROR"
    http_status = 500
    default_message = "The request could not be completed."

    def __init__(self, message: str | None = None, *, details: dict[str, Any] | None = None,
                 retry_after: float | None = None):
        self.message = message or self.default_message
        self.details = details or {}
        self.retry_after = retry_after
        super().__init__(self.message)


class InvalidParameters(CostMonitorError):
    code = "INVALID_PARAMETERS"
    http_status = 400
    default_message = "Invalid request parameters."

    def __init__(self, message: str | None = None, *, field: str | None = None, **kwargs: Any):
        details = kwargs.pop("details", None) or {}
        if field:
            details.setdefault(field, [message or self.default_message])
        super().__init__(message, details=details, **kwargs)


class IdempotencyConflict(InvalidParameters):
    http_status = 422
    default_message = "This Idempotency-Key was already used with a different request body."


class BudgetExceeded(CostMonitorError):
    code = "BUDGET_EXCEEDED"
    http_status = 402
    default_message = "The operation would exceed a budget limit."


class CircuitBreakerOpen(CostMonitorError):
    code = "CIRCUIT_BREAKER_OPEN"
    http_status = 503
    default_message = "The circuit breaker is blocking operations."


class CircuitBreakerThrottled(CircuitBreakerOpen):
    http_status = 429
    default_message = "The circuit breaker is throttling operations."


class ConfigurationError(CostMonitorError):
    code = "CONFIGURATION_ERROR"
    http_status = 500
    default_message = "The system configuration is invalid."


class AlertDeliveryFailed(CostMonitorError):
    code = "ALERT_DELIVERY_FAILED"
    http_status = 502
    default_message = "The alert could not be delivered."


class DatabaseUnavailable(CostMonitorError):
    code = "DATABASE_ERROR"
    http_status = 503
    default_message = "The database is unavailable; nothing was recorded. Retry later."
