"""Every change of a breaker's state writes an audit row and raises one alert through the alerts app."""

import pytest

from alerts.models import BudgetAlert
from breakers import services
from breakers.models import BreakerEvent
from costmonitor.errors import InvalidParameters

from .conftest import execute, fail_calls, make_breaker, settle

pytestmark = pytest.mark.django_db


def alerts_for(breaker) -> list[tuple[str, str]]:
    return [(a.alert_level, a.details["to_state"]) for a in
            BudgetAlert.objects.filter(alert_type="breaker", details__breaker=breaker.name).order_by("id")]


def test_open_half_open_and_closed_each_raise_one_alert_after_commit(researcher, clock,
                                                                     django_capture_on_commit_callbacks):
    breaker = make_breaker(failure_threshold=2, recovery_timeout=30)
    with django_capture_on_commit_callbacks(execute=True):
        fail_calls(breaker, researcher, clock, 2)
        clock.advance(30)
        settle(breaker, researcher, execute(breaker, researcher, clock), clock, success=True)
    assert alerts_for(breaker) == [("critical", "open"), ("warning", "half_open"), ("info", "closed")]
    opened = BreakerEvent.objects.get(breaker=breaker, to_state="open")
    alert = BudgetAlert.objects.get(dedupe_key=f"breaker:llm_operations:{opened.pk}")
    assert "2 consecutive failures" in alert.message
    assert alert.details["event_id"] == opened.pk


def test_a_reset_raises_an_alert_naming_who_reset(researcher, admin_user, clock, django_capture_on_commit_callbacks):
    breaker = make_breaker(failure_threshold=1)
    fail_calls(breaker, researcher, clock, 1)
    with django_capture_on_commit_callbacks(execute=True):
        services.breaker_reset(breaker_name=breaker.name, actor=admin_user, now=clock.now)
    alert = BudgetAlert.objects.get(alert_type="breaker", details__kind="reset")
    assert alert.alert_level == "info" and "alice" in alert.message


def test_a_firing_rule_alerts_once_per_cooldown(researcher, clock, django_capture_on_commit_callbacks):
    breaker = make_breaker(rules=[{"rule_id": "watch", "threshold_type": "operation_cost", "threshold_value": 1,
                                   "action": "alert_only", "cooldown_seconds": 600}])
    with django_capture_on_commit_callbacks(execute=True):
        for _ in range(5):
            execute(breaker, researcher, clock, estimated_cost=2)
    alert = BudgetAlert.objects.get(alert_type="breaker")
    assert (alert.alert_level, alert.details["rule_id"], alert.details["current_value"]) == ("warning", "watch", 2.0)


def test_a_decision_rolled_back_raises_no_alert(researcher, clock, django_capture_on_commit_callbacks):
    breaker = make_breaker(failure_threshold=1)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        allowed = execute(breaker, researcher, clock)
        with pytest.raises(InvalidParameters):
            settle(breaker, researcher, allowed, clock, success=False, actual_cost=-1)  # invalid: nothing happens
    assert callbacks == [] and not BudgetAlert.objects.exists()
    assert not BreakerEvent.objects.exists()
