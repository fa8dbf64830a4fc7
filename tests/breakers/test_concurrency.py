"""Many processes, one breaker: 20 concurrent callers on their own database connections (PostgreSQL)."""

from __future__ import annotations

import threading
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.utils import timezone

from breakers import services
from breakers.models import BreakerEvent, BreakerOperation, CircuitBreaker
from costmonitor.errors import CircuitBreakerOpen, CircuitBreakerThrottled

from .conftest import fail_calls, make_breaker, reloaded

CALLERS = 20
pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def call_all_at_once(breaker, user, count: int = CALLERS) -> list[str]:
    """Start `count` threads at the same moment; each executes once. Returns each caller's outcome."""
    start = threading.Barrier(count)
    outcomes: list[str] = []
    lock = threading.Lock()

    def caller():
        try:
            start.wait()
            try:
                result = services.breaker_execute(breaker_name=breaker.name, user=user,
                                                  estimated_cost=Decimal("0.01"))
                outcome = "trial" if result["trial"] else "allowed"
            except CircuitBreakerThrottled:
                outcome = "throttled"
            except CircuitBreakerOpen:
                outcome = "blocked"
            except Exception as exc:  # noqa: BLE001 — a deadlock or error must show in the assertion
                outcome = f"error: {exc!r}"
            with lock:
                outcomes.append(outcome)
        finally:
            connection.close()

    threads = [threading.Thread(target=caller) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


def open_breaker(user, *, opened_ago: float, recovery_timeout: float = 60) -> CircuitBreaker:
    breaker = make_breaker(failure_threshold=2, recovery_timeout=recovery_timeout)
    fail_calls(breaker, user, None, 2)
    CircuitBreaker.objects.filter(pk=breaker.pk).update(opened_at=timezone.now() - timedelta(seconds=opened_ago))
    return breaker


def test_a_half_open_breaker_lets_exactly_one_of_20_concurrent_callers_through(researcher):
    breaker = open_breaker(researcher, opened_ago=61)
    outcomes = call_all_at_once(breaker, researcher)
    assert sorted(outcomes) == ["blocked"] * (CALLERS - 1) + ["trial"]
    breaker = reloaded(breaker)
    assert breaker.state == CircuitBreaker.State.HALF_OPEN
    assert BreakerOperation.objects.filter(breaker=breaker, is_trial=True).count() == 1
    assert BreakerEvent.objects.filter(breaker=breaker, to_state="half_open").count() == 1
    assert (breaker.total_calls, breaker.allowed_calls, breaker.blocked_calls) == (2 + CALLERS, 3, CALLERS - 1)


def test_an_open_breaker_lets_none_of_20_concurrent_callers_through(researcher):
    breaker = open_breaker(researcher, opened_ago=1)
    outcomes = call_all_at_once(breaker, researcher)
    assert outcomes == ["blocked"] * CALLERS
    breaker = reloaded(breaker)
    assert breaker.state == CircuitBreaker.State.OPEN
    assert breaker.blocked_calls == CALLERS
    assert BreakerOperation.objects.filter(breaker=breaker).count() == 2


def test_a_throttled_breaker_admits_its_fraction_of_20_concurrent_callers(researcher):
    breaker = make_breaker(throttle_rate=Decimal("0.25"))
    outcomes = call_all_at_once(breaker, researcher)
    assert outcomes.count("allowed") == 5 and outcomes.count("throttled") == 15
    breaker = reloaded(breaker)
    assert (breaker.total_calls, breaker.allowed_calls, breaker.throttled_calls) == (20, 5, 15)


def test_20_concurrent_failing_calls_open_the_breaker_once_without_deadlocks(researcher):
    breaker = make_breaker(failure_threshold=5, recovery_timeout=600)
    start = threading.Barrier(CALLERS)
    errors: list[str] = []

    def pipeline():
        try:
            start.wait()
            try:
                allowed = services.breaker_execute(breaker_name=breaker.name, user=researcher,
                                                   estimated_cost=Decimal("0.01"))
                services.breaker_settle(breaker_name=breaker.name, operation_id=allowed["operation_id"],
                                        user=researcher, success=False, actual_cost=Decimal("0.01"),
                                        error_type="APIError")
            except CircuitBreakerOpen:
                pass
            except Exception as exc:  # noqa: BLE001
                errors.append(repr(exc))
        finally:
            connection.close()

    threads = [threading.Thread(target=pipeline) for _ in range(CALLERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    breaker = reloaded(breaker)
    assert breaker.state == CircuitBreaker.State.OPEN
    assert BreakerEvent.objects.filter(breaker=breaker, from_state="closed", to_state="open").count() == 1
    settled = BreakerOperation.objects.filter(breaker=breaker, status="settled").count()
    assert settled == breaker.allowed_calls >= 5
    assert breaker.total_calls == CALLERS == breaker.allowed_calls + breaker.blocked_calls
