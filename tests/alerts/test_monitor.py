"""The monitor (RealTimeBudgetMonitor): forecasts, anomalies, digests, schedules; every run idempotent."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.utils import timezone

from alerts.digest import digest_subscription_set, digests_send
from alerts.models import AlertDelivery, AnomalyIncident, BudgetAlert
from alerts.services import monitor_cycle_run, system_alert_raise
from budgets.periods import period_bounds
from budgets.services import SpendTarget, reservation_create
from costmonitor.errors import InvalidParameters

from .conftest import record, team_budget

pytestmark = pytest.mark.django_db


def yesterday_at(hour: int):
    start, _ = period_bounds("daily", timezone.now() - timedelta(days=1))
    return start + timedelta(hours=hour)


def test_a_projected_overrun_raises_one_forecast_alert_per_period(researcher, team):
    budget = team_budget(team, limit="10")
    for hour in range(1, 7):  # $1 an hour from 01:00 to 06:00 yesterday
        record(researcher, "1.00", occurred_at=(yesterday_at(hour) + timedelta(minutes=10)).isoformat())
    noon = yesterday_at(12)
    cycle = monitor_cycle_run(now=noon)
    assert cycle["forecast_alerts"] == 1 and cycle["threshold_alerts"] == 0
    alert = BudgetAlert.objects.get(alert_type="forecast")
    assert alert.budget == budget and alert.alert_level == "warning" and alert.period_key == noon.date().isoformat()
    assert "projected to reach" in alert.message and "method: linear trend" in alert.message
    assert alert.details["method"] == "linear_trend" and alert.details["projected_cost"] > 10
    assert alert.current_cost == Decimal("6")
    assert monitor_cycle_run(now=noon)["forecast_alerts"] == 0
    assert monitor_cycle_run(now=noon + timedelta(hours=3))["forecast_alerts"] == 0
    assert BudgetAlert.objects.filter(alert_type="forecast").count() == 1


def test_no_forecast_alert_when_the_projection_stays_under_the_limit(researcher, team):
    team_budget(team, limit="100")
    record(researcher, "1.00", occurred_at=yesterday_at(2).isoformat())
    assert monitor_cycle_run(now=yesterday_at(12))["forecast_alerts"] == 0


def test_a_runaway_loop_raises_one_anomaly_alert_per_incident(researcher, team):
    spike_time = timezone.now() - timedelta(hours=3)
    baseline_start = spike_time.replace(minute=0, second=0, microsecond=0) - timedelta(days=7)
    for hours in range(0, 7 * 24, 2):  # $0.80 every other hour: a median 15-minute spend of $0.10 or $0
        record(researcher, "0.80", model_name="gpt-4o", occurred_at=(baseline_start + timedelta(hours=hours,
                                                                                               minutes=5)).isoformat())
    for minutes in (9, 6, 3):  # $6 in the last 10 minutes
        record(researcher, "2.00", model_name="gpt-4o",
               occurred_at=(spike_time - timedelta(minutes=minutes)).isoformat())
    cycle = monitor_cycle_run(now=spike_time)
    assert cycle["anomalies_detected"] == 3  # the team, the model and the category
    team_alert = BudgetAlert.objects.get(alert_type="anomaly", team=team)
    assert team_alert.alert_level == "critical" and team_alert.current_cost == Decimal("6")
    assert "Spend anomaly for team Metabolomics: $6.00 in the last 15 minutes" in team_alert.message
    assert team_alert.details["floor"] == 1.0 and team_alert.details["factor"] == 5.0
    assert AlertDelivery.objects.filter(alert=team_alert).count() == 1  # the log channel
    # Still running a few minutes later: the same incident, no new alert.
    assert monitor_cycle_run(now=spike_time + timedelta(minutes=5))["anomalies_detected"] == 0
    # Back to normal: the incident closes.
    assert monitor_cycle_run(now=spike_time + timedelta(minutes=40))["anomalies_detected"] == 0
    assert not AnomalyIncident.objects.filter(ended_at__isnull=True).exists()
    # A new runaway later is a new incident.
    now = timezone.now()
    for minutes in (4, 2):
        record(researcher, "3.00", model_name="gpt-4o", occurred_at=(now - timedelta(minutes=minutes)).isoformat())
    assert monitor_cycle_run(now=now)["anomalies_detected"] == 3
    assert BudgetAlert.objects.filter(alert_type="anomaly", team=team).count() == 2


def test_spend_below_the_floor_is_never_an_anomaly(researcher, team):
    record(researcher, "0.90", model_name="gpt-4o")
    assert monitor_cycle_run()["anomalies_detected"] == 0


def test_the_cycle_expires_stale_reservations(researcher, team):
    reservation = reservation_create(target=SpendTarget(team_id=team.pk, user_id=researcher.pk),
                                     amount=Decimal("5"), ttl_seconds=60)
    cycle = monitor_cycle_run(now=timezone.now() + timedelta(minutes=5))
    assert cycle["reservations_expired"] == 1
    reservation.refresh_from_db()
    assert reservation.status == "expired"


def test_setup_schedules_registers_the_monitor_and_the_digest_once():
    from django_q.models import Schedule

    call_command("setup_schedules")
    call_command("setup_schedules")
    cycle = Schedule.objects.get(name="alerts.monitor_cycle")
    assert cycle.func == "alerts.tasks.monitor_cycle" and cycle.minutes == 1
    assert Schedule.objects.filter(name="alerts.daily_digest").count() == 1


def test_system_alerts_are_raised_once_per_dedupe_key(team):
    first = system_alert_raise(alert_type="breaker", level="critical", message="Breaker gpt-4o opened",
                               dedupe_key="breaker:gpt-4o:open:1", team=team, details={"breaker": "gpt-4o"})
    again = system_alert_raise(alert_type="breaker", level="critical", message="Breaker gpt-4o opened",
                               dedupe_key="breaker:gpt-4o:open:1", team=team)
    assert first is not None and again is None
    assert AlertDelivery.objects.filter(alert=first).count() == 1
    with pytest.raises(InvalidParameters):
        system_alert_raise(alert_type="breaker", level="panic", message="x", dedupe_key="k")


def test_the_daily_digest_goes_once_to_subscribers_with_their_teams(researcher, admin_user, outsider, team,
                                                                    other_team, mailoutbox):
    team_budget(team, limit="10")
    record(researcher, "3.00", occurred_at=yesterday_at(10).isoformat())
    record(outsider, "4.00", occurred_at=yesterday_at(11).isoformat())
    for user in (researcher, admin_user):
        user.email = f"{user.username}@lab.example"
        user.save()
        digest_subscription_set(user=user, enabled=True)
    now = timezone.now()
    assert digests_send(now=now) == 2
    assert digests_send(now=now) == 0 and digests_send(now=now + timedelta(hours=1)) == 0
    by_recipient = {m.to[0]: m for m in mailoutbox}
    rita = by_recipient["rita@lab.example"]
    assert "daily digest" in rita.subject and "Metabolomics" in rita.body and "Proteomics" not in rita.body
    assert "$3.00" in rita.body and "$10.00" in rita.body and "30%" in rita.body
    alice = by_recipient["alice@lab.example"]
    assert "Proteomics" in alice.body and "Organisation: $7.00" in alice.body
    digest_subscription_set(user=researcher, enabled=False)
    assert digests_send(now=now + timedelta(days=1)) == 1  # only the admin's, for the next day
