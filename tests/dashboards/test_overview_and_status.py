"""The dashboard overview and the budget status on the known week: spend against budget, projections,
health score, trends and today's activity, worked out by hand."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import pytest

from budgets import analytics
from budgets.models import Budget
from costmonitor.health import heartbeat_record

from .conftest import NOW, UTC, at, record

pytestmark = pytest.mark.django_db
# NOW is 15:30: 15.5 hours of today observed, 8.5 left; usage began on 14 March at 10:00, so the month
# (only 6 days of history: too short for a pattern) is projected linearly over 149.5 observed hours.
DAY_SEEN, DAY_LEFT = 15.5 * 3600, 8.5 * 3600
MONTH_SEEN, MONTH_LEFT = 149.5 * 3600, 272.5 * 3600


def _linear(spent, seen, left) -> float:
    return float(Decimal(spent) + Decimal(str(spent / seen * left)).quantize(Decimal("0.000001")))


def test_overview_shows_today_and_the_month_against_budget_with_projections(researcher, week):
    metrics = analytics.get_dashboard_overview(user=researcher, now=NOW)["metrics"]
    assert (metrics["daily_cost"], metrics["daily_budget"], metrics["daily_percentage"]) == (5.0, 50.0, 10.0)
    assert (metrics["monthly_cost"], metrics["monthly_budget"], metrics["monthly_percentage"]) == (95.0, 1000.0, 9.5)
    assert metrics["daily_projected_cost"] == _linear(5, DAY_SEEN, DAY_LEFT)
    assert metrics["monthly_projected_cost"] == _linear(95, MONTH_SEEN, MONTH_LEFT)
    assert metrics["budget_health_status"] == "healthy"
    # Utilisation penalties only: 15 × 10% and 15 × 9.5%; no threshold, no overshoot, no errors today.
    assert metrics["budget_health_score"] == round(100.0 - (15 * 10.0 / 100 + 15 * 9.5 / 100), 1)
    assert metrics["cost_trend_percentage"] == 80.0 and metrics["cost_trend_direction"] == "increasing"
    assert (metrics["total_api_calls"], metrics["tokens_consumed"], metrics["error_rate_percentage"]) == (1, 600, 0.0)
    assert metrics["last_update_time"] == NOW.timestamp()


def test_overview_spending_trends_average_the_complete_days(researcher, week):
    trends = analytics.get_dashboard_overview(user=researcher, now=NOW)["trends"]["spending_trends"]
    assert trends == {"daily_average": 15.0, "weekly_average": 105.0, "trend_direction": "increasing"}


def test_admin_overview_reads_the_organisation_counters(admin_user, week):
    metrics = analytics.get_dashboard_overview(user=admin_user, now=NOW)["metrics"]
    assert metrics["daily_cost"] == 5.0 and metrics["monthly_cost"] == 195.0
    assert metrics["monthly_percentage"] == 19.5


def test_a_nearly_spent_day_is_critical_and_its_projected_overshoot_costs_points(researcher, team):
    record(researcher, team, at(20, 9), 45)
    metrics = analytics.get_dashboard_overview(user=researcher, now=NOW)["metrics"]
    assert metrics["budget_health_status"] == "critical" and metrics["daily_percentage"] == 90.0
    # Linear since the first use at 09:00: 6.5 hours seen, 8.5 left today. For the month the rate is
    # taken over at least 1/24 of its span, not extrapolated from 6.5 hours.
    seen = 6.5 * 3600
    month_seen = 31 * 3600
    daily_projected = _linear(45, seen, DAY_LEFT)
    monthly_projected = _linear(45, month_seen, MONTH_LEFT)
    daily_confidence = round(6.5 / 15, 2)
    monthly_confidence = round(month_seen / (month_seen + MONTH_LEFT), 2)
    assert metrics["daily_projected_cost"] == daily_projected
    penalty = (15 * 0.9 + 10 + 10 + 20 * min(daily_projected / 50 - 1, 1) * daily_confidence
               + 15 * 0.045 + 20 * max(min(monthly_projected / 1000 - 1, 1), 0) * monthly_confidence)
    assert monthly_projected < 1000  # so the month's projection costs no points
    assert metrics["budget_health_score"] == pytest.approx(round(100 - penalty, 1), abs=0.05)


def test_team_budgets_speak_for_their_team(researcher, team, fixed_prices):
    Budget.objects.create(name="Team daily", scope=Budget.Scope.TEAM, team=team, period=Budget.Period.DAILY,
                          limit_usd=20)
    Budget.objects.filter(name="Team daily").update(created_at=datetime(2020, 1, 1, tzinfo=UTC))
    record(researcher, team, at(20, 9), 5)
    metrics = analytics.get_dashboard_overview(user=researcher, now=NOW)["metrics"]
    assert metrics["daily_budget"] == 20.0 and metrics["daily_cost"] == 5.0 and metrics["daily_percentage"] == 25.0
    assert metrics["monthly_budget"] == 1000.0  # no monthly team budget: the organisation's binds the team


def test_monitoring_is_active_only_with_a_fresh_worker_heartbeat(researcher, week):
    quiet = analytics.get_dashboard_overview(user=researcher)
    assert quiet["metrics"]["monitoring_active"] is False
    assert quiet["system_health"]["components"]["real_time_monitor"] == {"status": "unhealthy"}
    assert quiet["system_health"]["overall_status"] == "degraded"
    heartbeat_record()
    beating = analytics.get_dashboard_overview(user=researcher)
    assert beating["metrics"]["monitoring_active"] is True
    assert beating["system_health"]["overall_status"] == "healthy"


def test_budget_status_carries_projections_per_period(researcher, week):
    status = analytics.get_budget_status(user=researcher, now=NOW)
    daily = status["budget_summary"]["daily_budget"]
    assert daily == {"total_cost": 5.0, "budget_limit": 50.0, "percentage_used": 10.0, "over_budget": False,
                     "remaining_budget": 45.0, "projected_end_of_day": _linear(5, DAY_SEEN, DAY_LEFT)}
    assert status["budget_summary"]["monthly_budget"]["projected_end_of_month"] == _linear(95, MONTH_SEEN,
                                                                                             MONTH_LEFT)
    assert status["budget_summary"]["budget_health"] == "healthy"
    assert status["projections"]["daily"] == {"projected_cost": _linear(5, DAY_SEEN, DAY_LEFT),
                                              "confidence": round(15.5 / 24, 2), "projection_method": "linear_trend"}
    assert status["projections"]["monthly"]["confidence"] == round(149.5 / 422, 2)
    plain = analytics.get_budget_status(user=researcher, now=NOW, include_projections=False)
    assert "projections" not in plain and "projected_end_of_day" not in plain["budget_summary"]["daily_budget"]


def test_overview_counts_alerts_of_the_view_and_the_breakers(researcher, team, other_team, admin_user):
    from datetime import timedelta

    from django.utils import timezone

    from alerts.models import BudgetAlert
    from breakers.models import CircuitBreaker

    now = timezone.now()
    BudgetAlert.objects.create(alert_level="warning", message="Daily budget usage reached 75%", team=None,
                               dedupe_key="a", timestamp=now - timedelta(minutes=5))
    BudgetAlert.objects.create(alert_level="critical", message="Team at 90%", team=team, dedupe_key="b",
                               timestamp=now - timedelta(minutes=1))
    BudgetAlert.objects.create(alert_level="exceeded", message="Acknowledged", team=team, dedupe_key="c",
                               acknowledged_at=now, timestamp=now - timedelta(minutes=10))
    BudgetAlert.objects.create(alert_level="exceeded", message="Another team's", team=other_team, dedupe_key="d")
    CircuitBreaker.objects.create(name="openai", state="closed")
    CircuitBreaker.objects.create(name="anthropic", state="open")
    CircuitBreaker.objects.create(name="local", state="half_open")
    overview = analytics.get_dashboard_overview(user=researcher)
    metrics = overview["metrics"]
    assert (metrics["active_alerts"], metrics["critical_alerts"]) == (2, 1)
    assert (metrics["circuit_breakers_healthy"], metrics["circuit_breakers_open"]) == (1, 2)
    assert overview["system_health"]["components"]["circuit_breakers"] == {"status": "degraded"}
    assert [a["message"] for a in overview["recent_alerts"]] == ["Team at 90%", "Daily budget usage reached 75%",
                                                                 "Acknowledged"]
    assert overview["recent_alerts"][0] == {"timestamp": round((now - timedelta(minutes=1)).timestamp(), 3),
                                            "type": "threshold", "severity": "critical", "message": "Team at 90%"}
    everything = analytics.get_dashboard_overview(user=admin_user)["metrics"]
    assert (everything["active_alerts"], everything["critical_alerts"]) == (3, 2)
