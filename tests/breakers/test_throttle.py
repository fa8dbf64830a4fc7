"""Throttling admits the configured fraction of calls, evenly, by a deterministic counter (tests can count)."""

from decimal import Decimal

import pytest

from breakers.models import BreakerOperation
from costmonitor.errors import CircuitBreakerThrottled

from .conftest import execute, make_breaker, reloaded

pytestmark = pytest.mark.django_db

THROTTLE_AT_ONE_DOLLAR = {"rule_id": "slow_down", "threshold_type": "operation_cost",
                          "threshold_value": Decimal("1"), "action": "throttle", "throttle_factor": Decimal("0.3")}


def outcomes(breaker, user, clock, calls: int, **params) -> list[bool]:
    admitted = []
    for _ in range(calls):
        try:
            execute(breaker, user, clock, **params)
            admitted.append(True)
        except CircuitBreakerThrottled as refused:
            assert refused.code == "CIRCUIT_BREAKER_OPEN" and refused.http_status == 429
            assert refused.retry_after == 1
            admitted.append(False)
    return admitted


def test_a_throttle_rule_admits_exactly_its_fraction_of_100_calls_evenly(researcher, clock):
    breaker = make_breaker(rules=[THROTTLE_AT_ONE_DOLLAR])
    admitted = outcomes(breaker, researcher, clock, 100, estimated_cost=Decimal("0.10"), model_name="big")
    assert admitted == [True] * 100  # the rule does not fire below its threshold

    admitted = outcomes(breaker, researcher, clock, 100, estimated_cost=Decimal("1.00"))
    assert admitted.count(True) == 30
    for start in range(0, 100, 10):  # evenly: 3 in every 10 calls
        assert admitted[start:start + 10].count(True) == 3
    breaker = reloaded(breaker)
    assert (breaker.total_calls, breaker.allowed_calls, breaker.throttled_calls, breaker.blocked_calls) == (
        200, 130, 70, 0)
    assert breaker.cost_savings == Decimal("70.00")
    assert BreakerOperation.objects.filter(breaker=breaker).count() == 130


def test_throttled_call_carries_the_rule_in_its_details(researcher, clock):
    breaker = make_breaker(rules=[THROTTLE_AT_ONE_DOLLAR])
    execute(breaker, researcher, clock, estimated_cost=Decimal("1"))  # the first call of a throttle passes
    with pytest.raises(CircuitBreakerThrottled) as refused:
        execute(breaker, researcher, clock, estimated_cost=Decimal("1"))
    details = refused.value.details
    assert (details["rule_id"], details["state"], details["throttle_factor"]) == ("slow_down", "closed", 0.3)


@pytest.mark.parametrize("rate, expected", [("0.25", 25), ("0.5", 50), ("0.29", 29), ("0.07", 7), ("1", 100)])
def test_the_breaker_throttle_rate_admits_that_share_of_all_calls(researcher, clock, rate, expected):
    breaker = make_breaker(throttle_rate=Decimal(rate))
    assert outcomes(breaker, researcher, clock, 100).count(True) == expected


def test_the_tightest_of_the_breaker_rate_and_the_firing_rules_applies(researcher, clock):
    breaker = make_breaker(throttle_rate=Decimal("0.5"), rules=[
        THROTTLE_AT_ONE_DOLLAR, {**THROTTLE_AT_ONE_DOLLAR, "rule_id": "slower", "throttle_factor": Decimal("0.1")}])
    assert outcomes(breaker, researcher, clock, 100, estimated_cost=Decimal("2")).count(True) == 10


def test_a_throttle_factor_of_zero_admits_nothing_and_says_when_to_retry(researcher, clock):
    breaker = make_breaker(rules=[{**THROTTLE_AT_ONE_DOLLAR, "throttle_factor": Decimal("0"),
                                   "cooldown_seconds": 90}])
    for _ in range(5):
        with pytest.raises(CircuitBreakerThrottled) as refused:
            execute(breaker, researcher, clock, estimated_cost=Decimal("1"))
        assert refused.value.retry_after == 90
    assert reloaded(breaker).allowed_calls == 0
