"""The CostMonitor Python SDK: what research pipelines import to report and check their LLM spend.

Needs `httpx` only — never Django or its settings.

    from costmonitor.sdk import CostMonitorClient
    monitor = CostMonitorClient()  # COSTMONITOR_URL, COSTMONITOR_API_KEY
    with monitor.track_api_call("summarise", model_name="gpt-4o-mini", research_category="literature_search") as t:
        response = openai_client.chat.completions.create(model="gpt-4o-mini", messages=messages)
        t.set_usage_from_openai(response)
"""

from __future__ import annotations

from typing import Any

from .buffer import Outbox
from .client import BudgetMonitoringClient, CostMonitorClient
from .exceptions import (
    AlertDeliveryError,
    AuthenticationError,
    BudgetExceededException,
    CircuitBreakerError,
    ConfigurationError,
    CostMonitorError,
    InvalidParametersError,
    MonitorUnavailableError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitExceeded,
    ServerError,
)
from .protection import BudgetReservation, execute_with_protection
from .tracking import ApiCallTracker, openai_usage

# The reference's class names: one client plays every role, so code written against it keeps working.
BudgetManagementSystem = CostMonitorClient
BudgetDashboardAPI = CostMonitorClient
BudgetManager = CostMonitorClient
APIUsageMetricsLogger = CostMonitorClient
AlertNotificationSystem = CostMonitorClient
CostCircuitBreakerManager = CostMonitorClient


class BudgetManagementFactory:
    """The reference's one-call setup, as a client of the server."""

    @staticmethod
    def create_complete_system(lightrag_config: Any = None, *, daily_budget_limit: float | None = None,
                               monthly_budget_limit: float | None = None, base_url: str | None = None,
                               api_key: str | None = None, **client_options: Any) -> CostMonitorClient:
        """Connect (arguments or COSTMONITOR_URL / COSTMONITOR_API_KEY); if limits are given, set them
        on the server (that needs an admin's key)."""
        client = CostMonitorClient(base_url, api_key, **client_options)
        if daily_budget_limit is not None or monthly_budget_limit is not None:
            client.update_budget_limits(daily_budget=daily_budget_limit, monthly_budget=monthly_budget_limit)
        return client


__all__ = [
    "APIUsageMetricsLogger", "AlertDeliveryError", "AlertNotificationSystem", "ApiCallTracker",
    "AuthenticationError", "BudgetDashboardAPI", "BudgetExceededException", "BudgetManagementFactory",
    "BudgetManagementSystem", "BudgetManager", "BudgetMonitoringClient", "BudgetReservation",
    "CircuitBreakerError", "ConfigurationError", "CostCircuitBreakerManager", "CostMonitorClient",
    "CostMonitorError", "InvalidParametersError", "MonitorUnavailableError", "NotFoundError", "Outbox",
    "PermissionDeniedError", "RateLimitExceeded", "ServerError", "execute_with_protection", "openai_usage",
]
