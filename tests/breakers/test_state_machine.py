"""The breaker's state machine with controlled time: closed → open → half-open → closed / open."""

from decimal import Decimal

import pytest

from breakers import services
from breakers.models import BreakerEvent, BreakerOperation, CircuitBreaker
from budgets.models import Reservation
from costmonitor.errors import CircuitBreakerOpen, CircuitBreakerThrottled

from .conftest import execute, fail_calls, make_breaker, reloaded, settle

State = CircuitBreaker.State
pytestmark = pytest.mark.django_db


def transitions(breaker) -> list[tuple[str, str]]:
    return [(e.from_state, e.to_state) for e in
            BreakerEvent.objects.filter(breaker=breaker, kind="state_change").order_by("at", "id")]


def test_failure_threshold_consecutive_failures_open_the_breaker(researcher, clock):
    breaker = make_breaker(failure_threshold=3, recovery_timeout=60)
    fail_calls(breaker, researcher, clock, 2)
    assert reloaded(breaker).state == State.CLOSED
    fail_calls(breaker, researcher, clock, 1)
    breaker = reloaded(breaker)
    assert breaker.state == State.OPEN
    assert breaker.consecutive_failures == 3
    assert breaker.opened_at == clock.now
    assert transitions(breaker) == [("closed", "open")]

    clock.advance(10)
    with pytest.raises(CircuitBreakerOpen) as refused:
        execute(breaker, researcher, clock)
    error = refused.value
    assert not isinstance(error, CircuitBreakerThrottled)
    assert error.details["rule_id"] == "failure_threshold"
    assert error.details["state"] == "open"
    assert error.details["threshold_value"] == 3 and error.details["current_value"] == 3
    assert error.retry_after == pytest.approx(50)


def test_a_success_between_failures_starts_the_count_again(researcher, clock):
    breaker = make_breaker(failure_threshold=3)
    fail_calls(breaker, researcher, clock, 2)
    settle(breaker, researcher, execute(breaker, researcher, clock), clock, success=True)
    fail_calls(breaker, researcher, clock, 2)
    breaker = reloaded(breaker)
    assert breaker.state == State.CLOSED
    assert breaker.consecutive_failures == 2


def test_after_recovery_timeout_exactly_one_trial_call_is_admitted(researcher, clock):
    breaker = make_breaker(failure_threshold=2, recovery_timeout=30)
    fail_calls(breaker, researcher, clock, 2)
    clock.advance(29.9)
    with pytest.raises(CircuitBreakerOpen):
        execute(breaker, researcher, clock)

    clock.advance(0.1)
    trial = execute(breaker, researcher, clock)
    assert trial["allowed"] and trial["trial"] and trial["state"] == "half_open"
    assert BreakerOperation.objects.get(operation_id=trial["operation_id"]).is_trial
    for _ in range(3):
        with pytest.raises(CircuitBreakerOpen) as refused:
            execute(breaker, researcher, clock)
        assert refused.value.details["state"] == "half_open"
    assert transitions(breaker) == [("closed", "open"), ("open", "half_open")]


def test_a_successful_trial_closes_the_breaker(researcher, clock):
    breaker = make_breaker(failure_threshold=2, recovery_timeout=30)
    fail_calls(breaker, researcher, clock, 2)
    clock.advance(31)
    trial = execute(breaker, researcher, clock)
    result = settle(breaker, researcher, trial, clock, success=True)
    assert result["state"] == "closed"
    breaker = reloaded(breaker)
    assert breaker.state == State.CLOSED and breaker.consecutive_failures == 0
    assert breaker.opened_at is None and breaker.half_open_trial_operation is None
    assert transitions(breaker) == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]
    assert execute(breaker, researcher, clock)["trial"] is False


def test_a_failed_trial_opens_the_breaker_again_for_another_recovery_timeout(researcher, clock):
    breaker = make_breaker(failure_threshold=2, recovery_timeout=30)
    fail_calls(breaker, researcher, clock, 2)
    clock.advance(31)
    trial = execute(breaker, researcher, clock)
    clock.advance(5)
    settle(breaker, researcher, trial, clock, success=False)
    breaker = reloaded(breaker)
    assert breaker.state == State.OPEN and breaker.opened_at == clock.now
    clock.advance(29)
    with pytest.raises(CircuitBreakerOpen) as refused:
        execute(breaker, researcher, clock)
    assert refused.value.retry_after == pytest.approx(1)
    clock.advance(1)
    assert execute(breaker, researcher, clock)["trial"] is True
    assert transitions(breaker) == [("closed", "open"), ("open", "half_open"), ("half_open", "open"),
                                    ("open", "half_open")]


def test_a_trial_that_never_reports_back_is_replaced_after_recovery_timeout(researcher, clock):
    breaker = make_breaker(failure_threshold=1, recovery_timeout=20)
    fail_calls(breaker, researcher, clock, 1)
    clock.advance(20)
    lost = execute(breaker, researcher, clock)
    clock.advance(19)
    with pytest.raises(CircuitBreakerOpen):
        execute(breaker, researcher, clock)
    clock.advance(1)
    second = execute(breaker, researcher, clock)
    assert second["trial"] is True
    # The lost trial reporting late decides nothing; the current trial does.
    settle(breaker, researcher, lost, clock, success=True)
    assert reloaded(breaker).state == State.HALF_OPEN
    settle(breaker, researcher, second, clock, success=True)
    assert reloaded(breaker).state == State.CLOSED


def test_a_late_failure_of_an_earlier_call_does_not_reopen_or_close_anything(researcher, clock):
    breaker = make_breaker(failure_threshold=1, recovery_timeout=20)
    early = execute(breaker, researcher, clock)
    fail_calls(breaker, researcher, clock, 1)
    clock.advance(1)
    settle(breaker, researcher, early, clock, success=True)  # admitted before the breaker opened
    breaker = reloaded(breaker)
    assert breaker.state == State.OPEN and breaker.opened_at == clock.now - (clock.now - breaker.opened_at)
    assert transitions(breaker) == [("closed", "open")]


def test_reset_closes_the_breaker_and_clears_its_counters(researcher, admin_user, clock):
    breaker = make_breaker(failure_threshold=2, throttle_rate=Decimal("0.5"))
    execute(breaker, researcher, clock)
    with pytest.raises(CircuitBreakerThrottled):
        execute(breaker, researcher, clock)
    fail_calls(breaker, researcher, clock, 1)  # admitted: call 3 of the 0.5 throttle
    with pytest.raises(CircuitBreakerThrottled):
        execute(breaker, researcher, clock)
    fail_calls(breaker, researcher, clock, 1)
    assert reloaded(breaker).state == State.OPEN

    services.breaker_reset(breaker_name=breaker.name, actor=admin_user, now=clock.now)
    breaker = reloaded(breaker)
    assert breaker.state == State.CLOSED
    assert breaker.consecutive_failures == 0 and breaker.throttle_counter == 0 and breaker.opened_at is None
    assert breaker.total_calls == 5  # statistics are history: kept unless asked
    reset = BreakerEvent.objects.get(breaker=breaker, kind="reset")
    assert (reset.from_state, reset.to_state, reset.actor) == ("open", "closed", admin_user)

    services.breaker_reset(breaker_name=breaker.name, actor=admin_user, clear_statistics=True, now=clock.now)
    breaker = reloaded(breaker)
    assert (breaker.total_calls, breaker.allowed_calls, breaker.throttled_calls, breaker.total_actual_cost) == (
        0, 0, 0, Decimal("0"))


def test_statistics_match_the_calls_made(researcher, clock):
    breaker = make_breaker(failure_threshold=2, recovery_timeout=60, rules=[
        {"rule_id": "big_calls", "threshold_type": "operation_cost", "threshold_value": Decimal("1"),
         "action": "block"}])
    allowed = [execute(breaker, researcher, clock, estimated_cost=Decimal("0.20")) for _ in range(4)]
    for _ in range(3):
        with pytest.raises(CircuitBreakerOpen):
            execute(breaker, researcher, clock, estimated_cost=Decimal("1.50"))
    settle(breaker, researcher, allowed[0], clock, actual_cost=Decimal("0.18"))
    settle(breaker, researcher, allowed[1], clock, actual_cost=Decimal("0.25"))
    settle(breaker, researcher, allowed[2], clock, success=False, actual_cost=Decimal("0.01"))
    settle(breaker, researcher, allowed[3], clock, success=False, actual_cost=Decimal("0"))  # opens
    for _ in range(2):
        with pytest.raises(CircuitBreakerOpen):
            execute(breaker, researcher, clock)

    breaker = reloaded(breaker)
    assert breaker.total_calls == 9
    assert breaker.allowed_calls == 4
    assert breaker.blocked_calls == 5  # 3 by the rule, 2 while open
    assert breaker.cost_blocked_calls == 3
    assert breaker.throttled_calls == 0
    assert breaker.total_estimated_cost == Decimal("0.80")
    assert breaker.total_actual_cost == Decimal("0.44")
    assert breaker.cost_savings == Decimal("4.50")
    assert breaker.total_calls == breaker.allowed_calls + breaker.blocked_calls + breaker.throttled_calls
    assert Reservation.objects.filter(status="settled").count() == 4
