"""Read-side methods (dashboard, analytics, reports, health) and the alert methods, against a live server."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

from costmonitor.sdk import PermissionDeniedError

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def some_spend(monitor):
    monitor.log_api_call(operation_name="a", model_name="gpt-4o-mini", cost_usd=1.25,
                         research_category="metabolite_identification", response_time_ms=900)
    monitor.log_api_call(operation_name="b", model_name="gpt-4o", cost_usd=0.75, research_category="pathway_analysis",
                         success=False, error_type="Timeout")
    return 2.0


def test_dashboard_overview(monitor, some_spend):
    overview = monitor.get_dashboard_overview()
    assert overview["metrics"]["daily_cost"] == pytest.approx(some_spend)
    assert overview["metrics"]["total_api_calls"] >= 2
    assert "system_health" in overview


def test_budget_status_summary_and_trends(monitor, some_spend):
    status = monitor.get_budget_status(include_projections=True)
    assert status
    summary = monitor.get_budget_summary()
    assert summary["daily_budget"]["total_cost"] == pytest.approx(some_spend)
    assert summary["daily_budget"]["budget_limit"] == 50.0
    trends = monitor.get_spending_trends(days=7)
    assert trends["period_days"] == 7
    assert trends["total_cost"] == pytest.approx(some_spend)


def test_cost_analytics_report_and_research_analysis(monitor, some_spend):
    assert monitor.get_cost_analytics(time_range="last_7_days", granularity="daily", include_categories=True)
    start, end = datetime.now(UTC).date() - timedelta(days=2), datetime.now(UTC).date() + timedelta(days=1)
    report = monitor.get_cost_report(start_date=start.isoformat(), end_date=end.isoformat())
    summary = report["cost_report"]["summary"]
    assert summary["total_cost"] == pytest.approx(some_spend)
    csv_text = monitor.get_cost_report(start_date=start.isoformat(), end_date=end.isoformat(), format="csv")
    assert isinstance(csv_text, str) and "gpt-4o-mini" in csv_text
    research = monitor.get_research_analysis(days=30)
    assert research["total_cost"] == pytest.approx(some_spend)


def test_health_and_performance(monitor, some_spend):
    health = monitor.get_api_health_check()
    assert health["components"]["cost_persistence"] is True
    summary = monitor.get_performance_summary()
    assert summary["current_day"]["total_calls"] >= 2
    assert monitor.get_performance_metrics()


def test_admin_sends_an_alert_and_reads_delivery_stats(admin_monitor):
    alert = SimpleNamespace(timestamp=time.time(), alert_level=SimpleNamespace(value="warning"),
                            period_type="daily", period_key=datetime.now(UTC).date().isoformat(), current_cost=37.5,
                            budget_limit=50.0, percentage_used=75.0, threshold_percentage=75.0,
                            message="Daily budget warning: 75% of budget used")
    result = admin_monitor.send_alert(alert)
    assert "alert_id" in result
    assert "delivery_results" in result
    stats = admin_monitor.get_delivery_stats()
    assert "total_alerts_sent" in stats
    assert isinstance(admin_monitor.test_channels(), dict)


def test_researcher_may_not_send_alerts(monitor):
    with pytest.raises(PermissionDeniedError):
        monitor.send_alert({"alert_level": "warning", "message": "hello"})


def test_admin_triggers_a_budget_check(admin_monitor, some_spend):
    answer = admin_monitor.trigger_budget_check()
    assert answer["results"]["monitoring_cycle"]["cycle_completed"] is True
    assert "daily_budget" in answer["results"]["budget_status"]
