"""Fixtures of the breaker tests: a settable clock (services take `now=`), and helpers that drive a breaker
through the real services."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from breakers import services
from breakers.models import CircuitBreaker


class Clock:
    """Time under the test's control: every service call receives clock.now."""

    def __init__(self):
        self.now = timezone.now()

    def advance(self, seconds: float):
        self.now += timedelta(seconds=seconds)
        return self.now


@pytest.fixture
def clock():
    return Clock()


def make_breaker(name: str = "llm_operations", rules: list[dict] | None = None, **settings) -> CircuitBreaker:
    return services.breaker_create(name=name, rules=rules or [], **settings)


def execute(breaker, user, clock=None, **params) -> dict:
    params.setdefault("estimated_cost", Decimal("0.01"))
    return services.breaker_execute(breaker_name=breaker.name, user=user, now=clock.now if clock else None, **params)


def settle(breaker, user, allowed: dict, clock=None, *, success: bool = True, **params) -> dict:
    params.setdefault("actual_cost", Decimal("0.01"))
    if not success:
        params.setdefault("error_type", "RateLimitError")
    return services.breaker_settle(breaker_name=breaker.name, operation_id=allowed["operation_id"], user=user,
                                   success=success, now=clock.now if clock else None, **params)


def fail_calls(breaker, user, clock, count: int) -> None:
    for _ in range(count):
        settle(breaker, user, execute(breaker, user, clock), clock, success=False)


def reloaded(breaker) -> CircuitBreaker:
    return CircuitBreaker.objects.get(pk=breaker.pk)
