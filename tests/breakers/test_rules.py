"""Threshold rules: each type measures what it says, each action does what it says, scopes narrow both."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from breakers.models import BreakerEvent, BreakerOperation
from budgets.models import SpendCounter
from budgets.services import SpendTarget, budget_limits_update, global_budget, reservation_create
from costmonitor.errors import BudgetExceeded, CircuitBreakerOpen, CircuitBreakerThrottled, InvalidParameters
from tests.counters import counter_total
from tracking.events import UsageEvent
from tracking.pricing import price_tokens
from tracking.services import usage_record

from .conftest import execute, make_breaker, reloaded

pytestmark = pytest.mark.django_db


def rule(rule_id="r", threshold_type="operation_cost", threshold_value="1", action="block", **extra) -> dict:
    return {"rule_id": rule_id, "threshold_type": threshold_type, "threshold_value": Decimal(threshold_value),
            "action": action, **extra}


def spend(user, cost, *, at=None, model_name="", team_id=None, research_category="general"):
    return usage_record(user=user, event=UsageEvent(cost_usd=Decimal(cost), occurred_at=at or timezone.now(),
                                                    model_name=model_name,
                                                    team_id=team_id, research_category=research_category))


def blocked(breaker, user, clock, **params) -> CircuitBreakerOpen:
    with pytest.raises(CircuitBreakerOpen) as refused:
        execute(breaker, user, clock, **params)
    assert not isinstance(refused.value, CircuitBreakerThrottled)
    return refused.value


def test_operation_cost_rule_blocks_a_call_estimated_at_the_threshold(researcher, clock):
    breaker = make_breaker(rules=[rule("max_call", "operation_cost", "0.50", cooldown_seconds=120)])
    assert execute(breaker, researcher, clock, estimated_cost=Decimal("0.49"))["allowed"]
    error = blocked(breaker, researcher, clock, estimated_cost=Decimal("0.50"))
    assert error.details == {"breaker": "llm_operations", "state": "closed", "rule_id": "max_call",
                             "threshold_type": "operation_cost", "threshold_value": 0.5, "current_value": 0.5,
                             "action": "block"}
    assert error.retry_after == 120
    breaker = reloaded(breaker)
    assert (breaker.blocked_calls, breaker.cost_blocked_calls, breaker.cost_savings) == (1, 1, Decimal("0.50"))


def test_operation_tokens_rule_counts_input_and_output_tokens_and_the_estimate_is_priced(researcher, clock):
    breaker = make_breaker(rules=[rule("long_prompts", "operation_tokens", "1500")])
    allowed = execute(breaker, researcher, clock, estimated_cost=None, model_name="gpt-4o-mini",
                      estimated_tokens={"input": 1000, "output": 499})
    quote = price_tokens(model_name="gpt-4o-mini", prompt_tokens=1000, completion_tokens=499, at=clock.now)
    assert allowed["estimated_cost"] == float(quote.cost_usd) > 0
    error = blocked(breaker, researcher, clock, estimated_cost=None, model_name="gpt-4o-mini",
                    estimated_tokens={"input": 1000, "output": 500})
    assert error.details["current_value"] == 1500


def test_percentage_daily_rule_compares_todays_spend_plus_the_estimate_with_the_daily_budget(researcher, clock):
    breaker = make_breaker(rules=[rule("daily_budget_protection", "percentage_daily", "95")])
    spend(researcher, "47")  # of the organisation's 50 USD daily budget
    assert execute(breaker, researcher, clock, estimated_cost=Decimal("0.40"))["allowed"]  # 47 + 0.40 held = 94.8 %
    error = blocked(breaker, researcher, clock, estimated_cost=Decimal("0.10"))  # 47.40 held + 0.10 = 95 %
    assert error.details["current_value"] == 95.0
    assert error.details["threshold_type"] == "percentage_daily"


def test_percentage_monthly_rule_uses_the_monthly_budget(admin_user, researcher, clock):
    budget_limits_update(actor=admin_user, daily_budget=Decimal("500"), monthly_budget=Decimal("100"))
    breaker = make_breaker(rules=[rule("monthly", "percentage_monthly", "90")])
    spend(researcher, "80")
    assert execute(breaker, researcher, clock, estimated_cost=Decimal("9.99"))["allowed"]
    error = blocked(breaker, researcher, clock, estimated_cost=Decimal("0.01"))
    assert error.details["current_value"] == 90.0


def test_percentage_rule_follows_the_tightest_applicable_budget(admin_user, researcher, team, clock):
    from budgets.services import budget_create

    budget_create(actor=admin_user, name="Team daily", scope="team", team=team, period="daily",
                  limit_usd=Decimal("10"))
    breaker = make_breaker(rules=[rule("daily", "percentage_daily", "80")])
    spend(researcher, "7.50")
    error = blocked(breaker, researcher, clock, estimated_cost=Decimal("0.50"))  # 8 of the team's 10
    assert error.details["current_value"] == 80.0


def test_absolute_daily_rule_counts_recorded_spend_and_held_reservations(researcher, team, clock):
    breaker = make_breaker(rules=[rule("ten_dollars_a_day", "absolute_daily", "12")])
    spend(researcher, "10")
    assert execute(breaker, researcher, clock, estimated_cost=Decimal("1.00"))["allowed"]  # 11, now held
    reservation_create(target=SpendTarget(team.pk, researcher.pk), amount=Decimal("0.50"))
    error = blocked(breaker, researcher, clock, estimated_cost=Decimal("0.50"))  # 10 + 1 + 0.5 held + 0.5
    assert error.details["current_value"] == 12.0


def test_absolute_monthly_rule_counts_the_whole_month(admin_user, researcher, clock):
    budget_limits_update(actor=admin_user, daily_budget=Decimal("1000"))
    breaker = make_breaker(rules=[rule("monthly_cap", "absolute_monthly", "100")])
    spend(researcher, "60")
    spend(researcher, "39")
    error = blocked(breaker, researcher, clock, estimated_cost=Decimal("1"))
    assert error.details["current_value"] == 100.0


def test_a_team_scoped_rule_measures_and_applies_to_that_team_only(researcher, outsider, team, other_team, clock):
    breaker = make_breaker(rules=[rule("metabolomics_daily", "absolute_daily", "5", team=team)])
    spend(outsider, "20")  # another team's spend does not count
    spend(researcher, "4")
    assert execute(breaker, researcher, clock, estimated_cost=Decimal("0.50"))["allowed"]
    error = blocked(breaker, researcher, clock, estimated_cost=Decimal("0.50"))  # 4 + 0.5 held + 0.5
    assert error.details["current_value"] == 5.0
    assert execute(breaker, outsider, clock, estimated_cost=Decimal("3"))["allowed"]  # rule does not apply


def test_a_model_scoped_rule_ignores_other_models(researcher, clock):
    breaker = make_breaker(rules=[rule("no_big_gpt4o", "operation_cost", "1", model_name="gpt-4o")])
    assert execute(breaker, researcher, clock, estimated_cost=Decimal("2"), model_name="gpt-4o-mini")["allowed"]
    blocked(breaker, researcher, clock, estimated_cost=Decimal("2"), model_name="gpt-4o")


def test_a_category_scoped_rule_ignores_other_categories(researcher, clock):
    breaker = make_breaker(rules=[rule("cheap_tests", "operation_cost", "0.1", research_category="testing")])
    assert execute(breaker, researcher, clock, estimated_cost=Decimal("1"), research_category="pathways")["allowed"]
    blocked(breaker, researcher, clock, estimated_cost=Decimal("1"), research_category="testing")


def test_rate_per_minute_rule_measures_spend_over_its_window(researcher, clock):
    breaker = make_breaker(rules=[rule("burn_rate", "rate_per_minute", "1", window_minutes=5)])
    spend(researcher, "30", at=clock.now - timedelta(minutes=6))  # outside the window
    spend(researcher, "3.50", at=clock.now - timedelta(minutes=2))
    assert execute(breaker, researcher, clock, estimated_cost=Decimal("0.50"))["allowed"]  # (3.5 + 0.5) / 5
    error = blocked(breaker, researcher, clock, estimated_cost=Decimal("1"))  # (3.5 + 0.5 held + 1) / 5
    assert error.details["current_value"] == 1.0
    assert error.details["threshold_type"] == "rate_per_minute"


def test_alert_only_rule_lets_calls_through_and_fires_once_per_cooldown(researcher, clock):
    breaker = make_breaker(rules=[rule("watch", "operation_cost", "1", action="alert_only", cooldown_seconds=300)])
    for _ in range(3):
        assert execute(breaker, researcher, clock, estimated_cost=Decimal("2"))["allowed"]
    assert BreakerEvent.objects.filter(breaker=breaker, kind="rule_fired", rule_id="watch").count() == 1
    clock.advance(300)
    execute(breaker, researcher, clock, estimated_cost=Decimal("2"))
    assert BreakerEvent.objects.filter(breaker=breaker, kind="rule_fired", rule_id="watch").count() == 2
    assert reloaded(breaker).allowed_calls == 4


def test_a_blocking_rule_is_recorded_as_fired_once_per_cooldown(researcher, clock):
    breaker = make_breaker(rules=[rule("max_call", "operation_cost", "1", cooldown_seconds=60)])
    for _ in range(3):
        blocked(breaker, researcher, clock, estimated_cost=Decimal("2"))
    event = BreakerEvent.objects.get(breaker=breaker, kind="rule_fired")
    assert (event.from_state, event.to_state, event.details["current_value"]) == ("closed", "closed", 2.0)


def test_inactive_rules_do_not_fire(researcher, clock):
    breaker = make_breaker(rules=[rule("off", "operation_cost", "0", is_active=False)])
    assert execute(breaker, researcher, clock)["allowed"]


def test_budget_exceeded_through_the_breaker_is_counted_as_a_cost_block(researcher, clock):
    breaker = make_breaker()
    with pytest.raises(BudgetExceeded) as refused:
        execute(breaker, researcher, clock, estimated_cost=Decimal("50.01"))  # daily budget: 50
    assert refused.value.details["breaker"] == "llm_operations"
    assert refused.value.details["budget_limit"] == 50.0
    breaker = reloaded(breaker)
    assert (breaker.total_calls, breaker.blocked_calls, breaker.cost_blocked_calls) == (1, 1, 1)
    assert breaker.cost_savings == Decimal("50.01")
    assert not BreakerOperation.objects.exists()
    assert not SpendCounter.objects.filter(budget=global_budget("daily"), reserved__gt=0).exists()


def test_an_allowed_call_holds_its_estimate_in_the_ledger(researcher, clock):
    breaker = make_breaker()
    allowed = execute(breaker, researcher, clock, estimated_cost=Decimal("2.50"))
    counter = counter_total(global_budget("daily"))
    assert counter.reserved == Decimal("2.50")
    operation = BreakerOperation.objects.get(operation_id=allowed["operation_id"])
    assert (operation.estimated_cost, operation.status, operation.user) == (Decimal("2.50"), "allowed", researcher)


def test_an_unknown_model_without_an_estimate_is_refused_and_not_counted(researcher, clock):
    breaker = make_breaker()
    with pytest.raises(InvalidParameters) as refused:
        execute(breaker, researcher, clock, estimated_cost=None, model_name="no-such-model-9000",
                estimated_tokens={"input": 10, "output": 10})
    assert "model_name" in refused.value.details
    assert reloaded(breaker).total_calls == 0


@pytest.mark.parametrize("bad_rule, field", [
    ({"threshold_type": "percentage_weekly"}, "rules[0].threshold_type"),
    ({"action": "explode"}, "rules[0].action"),
    ({"throttle_factor": Decimal("1.5")}, "rules[0].throttle_factor"),
    ({"threshold_value": Decimal("-1")}, "rules[0].threshold_value"),
])
def test_invalid_rules_are_refused_naming_the_field_and_nothing_is_stored(bad_rule, field):
    from breakers.models import CircuitBreaker

    with pytest.raises(InvalidParameters) as refused:
        make_breaker(rules=[{**rule(), **bad_rule}])
    assert field in refused.value.details
    assert not CircuitBreaker.objects.exists()


def test_rule_ids_are_unique_per_breaker():
    with pytest.raises(InvalidParameters) as refused:
        make_breaker(rules=[rule("same"), rule("same", "operation_tokens", "10")])
    assert "rules[1].rule_id" in refused.value.details
