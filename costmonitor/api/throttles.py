"""Per-user rate limits with the reference's rates, counted in the shared cache.

Rates come from settings.RATE_LIMITS (env RATE_LIMIT_*): "1000/min", "10/s", or "none".
"""

from django.conf import settings
from rest_framework.throttling import SimpleRateThrottle


class RoleScopedThrottle(SimpleRateThrottle):
    scope_name = ""

    def get_rate(self):
        rate = settings.RATE_LIMITS.get(self.scope_name, "none")
        return None if str(rate).strip().lower() in ("", "none", "unlimited", "0") else rate

    def parse_rate(self, rate):
        if rate is None:
            return None, None
        num, period = rate.split("/")
        seconds = {"s": 1, "m": 60, "h": 3600, "d": 86400}[period.strip()[0].lower()]
        return int(num), seconds

    def get_cache_key(self, request, view):
        ident = request.user.pk if request.user and request.user.is_authenticated else self.get_ident(request)
        return f"throttle:{self.scope_name}:{ident}"


class DashboardThrottle(RoleScopedThrottle):
    scope_name = "dashboard"


class BudgetCheckThrottle(RoleScopedThrottle):
    scope_name = "budget_checks"


class AlertSendingThrottle(RoleScopedThrottle):
    scope_name = "alerts"


class TrackingThrottle(RoleScopedThrottle):
    scope_name = "tracking"


class AuthFailureThrottle(RoleScopedThrottle):
    """Counts failed key attempts per client address; only failures are recorded."""

    scope_name = "auth_failures"

    def get_cache_key(self, request, view):
        return f"throttle:auth_failures:{self.get_ident(request)}"

    def allow_request(self, request, view):
        if self.rate is None:
            return True
        self.key = self.get_cache_key(request, view)
        self.history = self.cache.get(self.key, [])
        self.now = self.timer()
        while self.history and self.history[-1] <= self.now - self.duration:
            self.history.pop()
        return len(self.history) < self.num_requests

    def record_failure(self, request):
        if self.rate is None:
            return
        self.key = self.get_cache_key(request, None)
        history = self.cache.get(self.key, [])
        history.insert(0, self.timer())
        self.cache.set(self.key, history[: self.num_requests + 1], self.duration)
