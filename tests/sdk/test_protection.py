"""Protected spending: `reserve()` holds budget for a whole experiment, `execute_with_protection` runs a
call only when its circuit breaker allows it."""

from __future__ import annotations

from decimal import Decimal
from types import SimpleNamespace

import pytest

from budgets.models import Budget, Reservation, SpendCounter
from budgets.services import global_budget
from costmonitor.sdk import BudgetExceededException, CircuitBreakerError
from tests.counters import CounterTotal, counter_total
from tracking.models import UsageRecord

from .conftest import free_port

pytestmark = pytest.mark.django_db(transaction=True)


class ExperimentFailed(Exception):
    pass


def daily_counter() -> CounterTotal:
    return counter_total(global_budget("daily"))


# --- reserve() ------------------------------------------------------------------------------------

def test_reserve_holds_for_the_experiment_and_settles_at_the_end(monitor):
    with monitor.reserve(model_name="gpt-4o-mini", estimated_tokens={"input": 1000, "output": 500}, calls=20,
                         research_category="pathway_analysis", experiment="exp-12") as hold:
        assert hold.state == "held"
        assert hold.estimated_cost > 0
        assert daily_counter().reserved == hold.estimated_cost
        for i in range(3):
            with hold.track_api_call(f"classify-{i}") as t:
                t.set_tokens(prompt=1000, completion=500)
        hold.log_api_call(operation_name="summary", cost_usd=0.01)

    assert hold.state == "settled"
    assert hold.calls_recorded == 4
    records = UsageRecord.objects.filter(experiment="exp-12")
    assert records.count() == 4
    assert hold.actual_cost == sum(r.cost_usd for r in records)
    counter = daily_counter()
    assert counter.reserved == 0
    assert counter.spent == hold.actual_cost
    assert Reservation.objects.get(operation_id=hold.operation_id).status == "released"


def test_reserve_releases_the_hold_when_the_experiment_fails(monitor):
    with pytest.raises(ExperimentFailed):
        with monitor.reserve(estimated_cost=20, research_category="pathway_analysis") as hold:
            hold.log_api_call(operation_name="first step", cost_usd=0.5)
            raise ExperimentFailed("bad input file")
    assert hold.state == "released"
    counter = daily_counter()
    assert counter.reserved == 0 and counter.spent == Decimal("0.5")


def test_reserve_refuses_an_experiment_the_budget_cannot_hold(monitor, team):
    Budget.objects.create(name="Pilot", scope=Budget.Scope.TEAM, team=team, limit_usd=Decimal("5"))
    ran = []
    with pytest.raises(BudgetExceededException) as caught:
        with monitor.reserve(estimated_cost=10):
            ran.append(True)
    assert not ran
    assert caught.value.details["budget_name"] == "Pilot"
    assert not SpendCounter.objects.filter(reserved__gt=0).exists()


def test_reserve_fails_open_when_the_server_is_unreachable(researcher_key, make_client):
    client = make_client(f"http://127.0.0.1:{free_port()}", researcher_key)
    with client.reserve(estimated_cost=10) as hold:
        hold.log_api_call(operation_name="offline step", cost_usd=0.2)
    assert hold.state == "unreserved"
    assert client.pending_records == 1


# --- execute_with_protection ----------------------------------------------------------------------

def openai_like_response(prompt: int, completion: int):
    return SimpleNamespace(model="gpt-4o-mini", usage=SimpleNamespace(
        prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion))


@pytest.fixture
def llm_breaker(admin_monitor):
    """The reference's example breaker: block at 95 % of the daily budget."""
    rule = SimpleNamespace(rule_id="daily_budget_protection", threshold_type="percentage_daily",
                           threshold_value=95.0, action="block")
    return admin_monitor.create_circuit_breaker("llm_operations", threshold_rules=[rule], failure_threshold=5,
                                                recovery_timeout=60.0)


def test_protected_call_runs_when_allowed_and_its_usage_is_recorded_once(monitor, llm_breaker):
    calls = []

    def ask_model():
        calls.append(True)
        return openai_like_response(1000, 200)

    result = monitor.execute_with_protection(breaker_name="llm_operations", operation_callable=ask_model,
                                             operation_type="llm_call", model_name="gpt-4o-mini",
                                             estimated_tokens={"input": 1000, "output": 200})
    assert calls == [True]
    assert result.usage.total_tokens == 1200
    record = UsageRecord.objects.get()
    assert (record.prompt_tokens, record.completion_tokens) == (1000, 200)
    assert record.cost_usd > 0 and record.success is True
    assert Reservation.objects.get(operation_id=record.operation_id).status == "settled"
    assert daily_counter().reserved == 0
    breaker = monitor.get_system_status()["circuit_breakers"]["llm_operations"]
    assert breaker["statistics"]["allowed_calls"] == 1
    assert breaker["state"] == "closed"


def test_protected_call_with_a_known_cost(monitor, llm_breaker):
    monitor.execute_with_protection("llm_operations", lambda: {"answer": 42}, operation_type="embedding_call",
                                    estimated_cost=0.02, cost_of=lambda result: 0.015)
    assert UsageRecord.objects.get().cost_usd == Decimal("0.015")


def test_protected_call_with_a_cost_computed_in_floats_is_recorded(monitor, llm_breaker):
    monitor.execute_with_protection("llm_operations", lambda: {"answer": 42}, operation_type="llm_call",
                                    estimated_cost=1 / 3, cost_of=lambda result: 1234 * 0.15 / 1_000_000)
    assert UsageRecord.objects.get().cost_usd == Decimal("0.000185")
    assert daily_counter().reserved == 0


def test_protected_call_failure_is_reported_and_reraised(monitor, llm_breaker):
    def broken():
        raise ExperimentFailed("model refused")

    with pytest.raises(ExperimentFailed, match="model refused"):
        monitor.execute_with_protection("llm_operations", broken, operation_type="llm_call",
                                        model_name="gpt-4o-mini", estimated_tokens={"input": 10, "output": 10})
    record = UsageRecord.objects.get()
    assert record.success is False and record.error_type == "ExperimentFailed"
    breaker = monitor.get_system_status()["circuit_breakers"]["llm_operations"]
    assert breaker["failure_count"] == 1


def test_blocking_rule_refuses_the_call_with_the_servers_details(monitor, admin_monitor):
    admin_monitor.create_circuit_breaker("guarded", threshold_rules=[
        {"rule_id": "no_big_calls", "threshold_type": "operation_cost", "threshold_value": 0.01, "action": "block"}])
    ran = []
    with pytest.raises(CircuitBreakerError) as caught:
        monitor.execute_with_protection("guarded", lambda: ran.append(True), operation_type="llm_call",
                                        model_name="gpt-4o", estimated_tokens={"input": 100_000, "output": 10_000})
    assert not ran
    exc = caught.value
    assert exc.status_code == 503 and not exc.throttled
    assert exc.details["rule_id"] == "no_big_calls"
    assert "guarded" in str(exc)
    assert not UsageRecord.objects.exists()


def test_throttling_breaker_answers_429_with_retry_after(monitor, admin_monitor):
    admin_monitor.create_circuit_breaker("trickle", throttle_rate=0)
    with pytest.raises(CircuitBreakerError) as caught:
        monitor.execute_with_protection("trickle", lambda: None, estimated_cost=0.001)
    assert caught.value.throttled and caught.value.status_code == 429
    assert caught.value.retry_after_seconds is not None


def test_protected_call_over_a_hard_budget_raises_budget_exceeded(monitor, admin_monitor, team):
    admin_monitor.create_circuit_breaker("no_rules")  # the breaker admits it; the budget hold cannot
    Budget.objects.create(name="Pilot", scope=Budget.Scope.TEAM, team=team, limit_usd=Decimal("0.001"))
    ran = []
    with pytest.raises(BudgetExceededException) as caught:
        monitor.execute_with_protection("no_rules", lambda: ran.append(True), estimated_cost=0.5)
    assert not ran
    assert caught.value.details["budget_name"] == "Pilot"


def test_protected_call_runs_when_the_monitor_is_down_and_fail_open(researcher_key, make_client):
    client = make_client(f"http://127.0.0.1:{free_port()}", researcher_key)
    result = client.execute_with_protection("llm_operations", lambda: openai_like_response(10, 5),
                                            operation_type="llm_call", model_name="gpt-4o-mini",
                                            estimated_tokens={"input": 10, "output": 5})
    assert result.usage.total_tokens == 15
    assert client.pending_records == 1  # the usage waits in the outbox


def test_protected_call_is_refused_when_the_monitor_is_down_and_fail_closed(researcher_key, make_client):
    from costmonitor.sdk import MonitorUnavailableError

    client = make_client(f"http://127.0.0.1:{free_port()}", researcher_key, fail_open=False)
    ran = []
    with pytest.raises(MonitorUnavailableError):
        client.execute_with_protection("llm_operations", lambda: ran.append(True), estimated_cost=0.01)
    assert not ran


def test_a_breaker_result_sent_twice_is_counted_once(monitor, llm_breaker):
    permit = monitor.breaker_execute("llm_operations", model_name="gpt-4o-mini",
                                     estimated_tokens={"input": 100, "output": 10})
    first = monitor.update_operation_cost("llm_operations", permit["operation_id"], actual_cost=0.002,
                                          operation_type="llm_call")
    again = monitor.update_operation_cost("llm_operations", permit["operation_id"], actual_cost=0.002,
                                          operation_type="llm_call")
    assert first == again
    assert UsageRecord.objects.get().cost_usd == Decimal("0.002")


def test_calls_through_the_hold_are_taken_out_of_it_so_nothing_counts_twice(monitor, team):
    Budget.objects.create(name="Lab $10/day", scope="team", team=team, period="daily", limit_usd=10)
    with monitor.reserve(estimated_cost=8, research_category="pathway_analysis") as hold:
        for i in range(5):
            hold.log_api_call(operation_name=f"step-{i}", cost_usd=1)
        # $5 recorded, $3 still held: another pipeline's $2 fits (plain records would leave 5 + 8 held).
        counter = daily_counter()
        assert (counter.spent, counter.reserved) == (Decimal("5"), Decimal("3"))
        assert Reservation.objects.get(operation_id=hold.operation_id).status == "held"
        assert monitor.reserve_budget(estimated_cost=2)["allowed"] is True
        with hold.track_api_call("last-step") as t:
            t.set_cost("0.5")
    assert hold.actual_cost == Decimal("5.5")
    assert UsageRecord.objects.filter(operation_id=hold.operation_id).count() == 6
    assert Reservation.objects.get(operation_id=hold.operation_id).status == "released"
    counter = daily_counter()
    assert (counter.spent, counter.reserved) == (Decimal("5.5"), Decimal("2"))  # only the other pipeline's hold
