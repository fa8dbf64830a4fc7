"""CostMonitor: the Django project package, and the client SDK pipelines import.

`import costmonitor` needs no Django: the SDK (`costmonitor.sdk`) depends on an HTTP client only,
and its names are re-exported here lazily (`from costmonitor import CostMonitorClient`).
"""

__version__ = "1.0.0"

_SDK_NAMES = frozenset({
    "CostMonitorClient", "BudgetMonitoringClient", "BudgetManagementFactory", "BudgetManagementSystem",
    "BudgetExceededException", "CircuitBreakerError", "ConfigurationError", "RateLimitExceeded",
    "AuthenticationError", "PermissionDeniedError", "MonitorUnavailableError", "CostMonitorError",
    "execute_with_protection", "openai_usage",
})


def __getattr__(name):
    if name in _SDK_NAMES:
        from costmonitor import sdk

        return getattr(sdk, name)
    raise AttributeError(f"module 'costmonitor' has no attribute {name!r}")
