"""Threshold alerts: once per budget, period and level, created after commit, escalating, re-armed each period."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import transaction
from django.utils import timezone

from alerts import tasks
from alerts.models import AlertDelivery, BudgetAlert
from alerts.services import monitor_cycle_run

from .conftest import record, team_budget

pytestmark = pytest.mark.django_db


def test_crossing_75_percent_creates_one_warning_and_later_records_add_none(researcher_client, team,
                                                                         django_capture_on_commit_callbacks):
    budget = team_budget(team, limit="10")
    with django_capture_on_commit_callbacks(execute=True):
        r = researcher_client.post("/api/v1/costs/track", {"cost_usd": 7.0}, format="json")
        assert r.status_code == 201, r.content
    assert not BudgetAlert.objects.exists()
    for _ in range(3):  # 7.6, 8.2, 8.8: past 75 %, below 90 %
        with django_capture_on_commit_callbacks(execute=True):
            assert researcher_client.post("/api/v1/costs/track", {"cost_usd": 0.6}, format="json").status_code == 201
    alert = BudgetAlert.objects.get()
    assert (alert.alert_level, alert.alert_type, alert.budget, alert.team) == ("warning", "threshold", budget, team)
    assert alert.current_cost == Decimal("7.6") and alert.budget_limit == Decimal("10")
    assert alert.threshold_percentage == Decimal("75") and alert.percentage_used == Decimal("76")
    assert alert.period_type == "daily" and alert.period_key == timezone.localdate().isoformat()
    assert "75" not in alert.message or "76% of" in alert.message
    assert AlertDelivery.objects.filter(alert=alert, channel__name="logging").count() == 1


def test_one_cost_over_every_threshold_escalates_warning_critical_exceeded(researcher, team,
                                                                           django_capture_on_commit_callbacks):
    team_budget(team, limit="10")
    with django_capture_on_commit_callbacks(execute=True):
        record(researcher, "12.5")
    levels = set(BudgetAlert.objects.values_list("alert_level", flat=True))
    assert levels == {"warning", "critical", "exceeded"}
    exceeded = BudgetAlert.objects.get(alert_level="exceeded")
    assert exceeded.percentage_used == Decimal("125") and exceeded.threshold_percentage == Decimal("100")


def test_escalation_happens_step_by_step(researcher, team, django_capture_on_commit_callbacks):
    team_budget(team, limit="100")
    seen = []
    for cost in ("80", "5", "6", "10"):  # 80 % → 85 % → 91 % → 101 %
        with django_capture_on_commit_callbacks(execute=True):
            record(researcher, cost)
        seen.append(sorted(BudgetAlert.objects.values_list("alert_level", flat=True)))
    assert seen == [["warning"], ["warning"], ["critical", "warning"], ["critical", "exceeded", "warning"]]


def test_a_rolled_back_record_raises_no_alert(researcher, team, django_capture_on_commit_callbacks):
    team_budget(team, limit="10")
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        try:
            with transaction.atomic():
                record(researcher, "9.5")
                raise RuntimeError("the pipeline crashed before commit")
        except RuntimeError:
            pass
    assert callbacks == []
    assert not BudgetAlert.objects.exists()


def test_a_new_period_rearms_the_thresholds(researcher, team, django_capture_on_commit_callbacks):
    team_budget(team, limit="10")
    yesterday = timezone.now() - timedelta(days=1)
    with django_capture_on_commit_callbacks(execute=True):
        record(researcher, "8", occurred_at=yesterday.isoformat())
    with django_capture_on_commit_callbacks(execute=True):
        record(researcher, "8")
    warnings = BudgetAlert.objects.filter(alert_level="warning").order_by("period_key")
    assert [a.period_key for a in warnings] == [timezone.localdate(yesterday).isoformat(),
                                                timezone.localdate().isoformat()]


def test_recording_succeeds_when_the_queue_is_down_and_the_monitor_sends_later(
        researcher_client, team, django_capture_on_commit_callbacks, monkeypatch):
    from django_q.conf import Conf

    team_budget(team, limit="10")
    monkeypatch.setattr(Conf, "ORM", "no-such-database")  # the broker cannot be reached
    with django_capture_on_commit_callbacks(execute=True):
        r = researcher_client.post("/api/v1/costs/track", {"cost_usd": 8}, format="json")
    assert r.status_code == 201, r.content
    delivery = AlertDelivery.objects.get(alert__alert_type="threshold", alert__alert_level="warning")
    assert delivery.status == "pending" and delivery.enqueued_at is None
    monkeypatch.undo()
    cycle = monitor_cycle_run()
    assert cycle["deliveries_queued"] == 1 and cycle["threshold_alerts"] == 0
    warning = AlertDelivery.objects.get(alert__alert_type="threshold", alert__alert_level="warning")
    assert tasks.deliver(warning.pk) == "sent"


def test_the_monitor_creates_missed_threshold_alerts_once(researcher, team):
    budget = team_budget(team, limit="10")
    record(researcher, "9.5")  # outside on-commit capture: the inline path never ran (as if the process died)
    assert not BudgetAlert.objects.exists()
    first = monitor_cycle_run()
    assert first["cycle_completed"] and first["threshold_alerts"] == 2
    assert set(BudgetAlert.objects.filter(budget=budget, alert_type="threshold").values_list(
        "alert_level", flat=True)) == {"warning", "critical"}
    again = monitor_cycle_run()
    # Only threshold alerts are this test's subject: 30 minutes later a forecast alert may rightly
    # appear too (a day at 95 % late in the evening, depending on the hour the suite runs).
    late = monitor_cycle_run(now=timezone.now() + timedelta(minutes=30))
    assert again["threshold_alerts"] == 0 and late["threshold_alerts"] == 0
    assert BudgetAlert.objects.filter(alert_type="threshold").count() == 2


def test_reservations_and_releases_raise_no_threshold_alert(researcher_client, team,
                                                            django_capture_on_commit_callbacks):
    team_budget(team, limit="10")
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        r = researcher_client.post("/api/v1/budget/reserve", {"estimated_cost": 9}, format="json")
        assert r.status_code == 201, r.content
        operation = r.json()["data"]["operation_id"]
        assert researcher_client.delete(f"/api/v1/budget/reserve/{operation}").status_code == 200
    assert callbacks == [] and not BudgetAlert.objects.exists()


def test_recording_below_every_threshold_touches_no_alert_table(researcher, team, django_capture_on_commit_callbacks):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    team_budget(team, limit="100")
    with django_capture_on_commit_callbacks(execute=True) as callbacks, CaptureQueriesContext(connection) as queries:
        record(researcher, "1.00")
    assert callbacks == []
    assert not [q["sql"] for q in queries.captured_queries if "alerts_" in q["sql"]]


def test_the_monitor_raises_a_crossing_missed_yesterday_once(researcher, team):
    from budgets.periods import local_date

    budget = team_budget(team, limit="10")
    yesterday = timezone.now() - timedelta(days=1)
    record(researcher, "9.5", occurred_at=yesterday.isoformat())  # no on-commit capture: as if the process died
    assert not BudgetAlert.objects.exists()
    first = monitor_cycle_run()
    assert first["cycle_completed"] and first["threshold_alerts"] == 2
    alerts = BudgetAlert.objects.filter(budget=budget, alert_type="threshold")
    assert sorted(alerts.values_list("alert_level", flat=True)) == ["critical", "warning"]
    assert set(alerts.values_list("period_key", flat=True)) == {local_date(yesterday).isoformat()}
    assert alerts.get(alert_level="critical").current_cost == Decimal("9.5")
    again = monitor_cycle_run()
    assert again["threshold_alerts"] == 0 and alerts.count() == 2


def test_the_monitor_raises_a_crossing_missed_last_month_once(researcher, team):
    from datetime import datetime, time

    from budgets.periods import budget_zone, local_date

    budget = team_budget(team, limit="100", period="monthly")
    last_day = local_date(timezone.now()).replace(day=1) - timedelta(days=1)
    late_last_month = datetime.combine(last_day, time(23, 30), tzinfo=budget_zone())
    record(researcher, "101", occurred_at=late_last_month.isoformat())  # the inline path never ran
    assert monitor_cycle_run()["threshold_alerts"] == 3
    alerts = BudgetAlert.objects.filter(budget=budget, alert_type="threshold")
    assert sorted(alerts.values_list("alert_level", flat=True)) == ["critical", "exceeded", "warning"]
    assert set(alerts.values_list("period_key", flat=True)) == {last_day.strftime("%Y-%m")}
    assert monitor_cycle_run()["threshold_alerts"] == 0 and alerts.count() == 3
