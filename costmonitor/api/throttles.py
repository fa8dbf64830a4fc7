"""Per-user rate limits with the reference's rates, counted in the cache shared by all processes.

Rates come from settings.RATE_LIMITS (env RATE_LIMIT_*): "1000/min", "10/s", "5/hour", or "none".
Each limit is a fixed window counted with the cache's atomic `incr` (one round trip per request,
no read-modify-write), so several web processes counting at once never lose a hit.
"""

from __future__ import annotations

import time

from django.conf import settings
from django.core.cache import cache
from rest_framework.throttling import BaseThrottle

UNLIMITED = frozenset({"", "none", "unlimited", "off", "0"})
_PERIOD_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_rate(rate) -> tuple[int, int] | None:
    """`"1000/min"` → (1000, 60); `"none"` → None. Raises ValueError for anything else."""
    text = str(rate if rate is not None else "").strip().lower()
    if text in UNLIMITED:
        return None
    count, _, period = text.partition("/")
    unit = period.strip()[:1]
    if not count.strip().isdigit() or unit not in _PERIOD_SECONDS or int(count) < 1:
        raise ValueError(f"{rate!r} is not a rate: use e.g. '100/min', '10/s', '5/hour' or 'none'.")
    return int(count), _PERIOD_SECONDS[unit]


def rate_for(scope: str) -> tuple[int, int] | None:
    return parse_rate(settings.RATE_LIMITS.get(scope, "none"))


def _window(seconds: int) -> tuple[int, float]:
    """The current window's number and the seconds left in it."""
    now = time.time()
    number = int(now // seconds)
    return number, (number + 1) * seconds - now


def _increment(key: str, seconds: int) -> int:
    # add() creates the counter only if absent; incr() is atomic on Redis, memcached and locmem.
    cache.add(key, 0, timeout=seconds + 1)
    try:
        return cache.incr(key)
    except ValueError:  # the counter expired between add() and incr()
        cache.set(key, 1, timeout=seconds + 1)
        return 1


class RoleScopedThrottle(BaseThrottle):
    """Counts every request of one user (or, unauthenticated, one address) in its scope."""

    scope_name = ""

    def __init__(self):
        self.wait_seconds: float | None = None

    def ident(self, request) -> str:
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            return f"user:{user.pk}"
        return f"addr:{self.get_ident(request)}"

    def allow_request(self, request, view) -> bool:
        rate = rate_for(self.scope_name)
        if rate is None:
            return True
        limit, seconds = rate
        number, left = _window(seconds)
        hits = _increment(f"throttle:{self.scope_name}:{self.ident(request)}:{seconds}:{number}", seconds)
        if hits > limit:
            self.wait_seconds = left
            return False
        return True

    def wait(self) -> float | None:
        return self.wait_seconds


class DashboardThrottle(RoleScopedThrottle):
    scope_name = "dashboard"


class BudgetCheckThrottle(RoleScopedThrottle):
    scope_name = "budget_checks"


class AlertSendingThrottle(RoleScopedThrottle):
    scope_name = "alerts"


class TrackingThrottle(RoleScopedThrottle):
    scope_name = "tracking"


class AuthFailureThrottle(RoleScopedThrottle):
    """Failed API-key attempts per client address: only failures count, and at the limit every
    key from that address is refused until the window ends (so guessing keys stays slow)."""

    scope_name = "auth_failures"

    def _key(self, request, seconds: int, number: int) -> str:
        return f"throttle:auth_failures:{self.get_ident(request)}:{seconds}:{number}"

    def allow_request(self, request, view) -> bool:
        rate = rate_for(self.scope_name)
        if rate is None:
            return True
        limit, seconds = rate
        number, left = _window(seconds)
        if (cache.get(self._key(request, seconds, number)) or 0) >= limit:
            self.wait_seconds = left
            return False
        return True

    def record_failure(self, request) -> None:
        rate = rate_for(self.scope_name)
        if rate is None:
            return
        _, seconds = rate
        number, _ = _window(seconds)
        _increment(self._key(request, seconds, number), seconds)
