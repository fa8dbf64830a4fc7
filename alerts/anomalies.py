"""Spend anomalies: a runaway loop shows as the last minutes costing far more than usual.

For each team, model and research category, the spend of the last ANOMALY_WINDOW_MINUTES (from
usage records) is compared with the median spend of such a window over the last
ANOMALY_BASELINE_DAYS (from hourly rollups, an hour's spend spread evenly over its windows, hours
without usage counting as zero). Anomalous when it is at least ANOMALY_MIN_SPEND and more than
ANOMALY_FACTOR × that median. One incident per scope stays open while the rate stays anomalous; it
raises one alert, and only a cycle that finds the rate back to normal closes it, so a new alert
needs a new incident.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from statistics import median

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Sum
from django.utils import timezone

from budgets.models import Team

from .models import AlertLevel, AnomalyIncident, BudgetAlert

DIMENSIONS = (("team", "team_id"), ("model", "model_name"), ("category", "research_category"))


@dataclass
class Anomaly:
    scope: str
    dimension: str
    value: object
    recent: Decimal
    baseline: Decimal  # median spend of one window
    threshold: Decimal


def _window() -> timedelta:
    return timedelta(minutes=settings.ANOMALY_WINDOW_MINUTES)


def _baseline(dimension_field: str, value, *, since: datetime, until: datetime) -> Decimal:
    from tracking.models import HourlyRollup

    hours = int((until - since).total_seconds() // 3600)
    windows_per_hour = Decimal(60) / Decimal(settings.ANOMALY_WINDOW_MINUTES)
    rows = (HourlyRollup.objects.filter(hour__gte=since, hour__lt=until, **{dimension_field: value})
            .values("hour").annotate(cost=Sum("cost_usd")).order_by())
    per_window = [row["cost"] / windows_per_hour for row in rows]
    per_window += [Decimal(0)] * max(0, hours - len(per_window))
    return Decimal(median(per_window)) if per_window else Decimal(0)


def anomalies_find(*, now: datetime | None = None) -> list[Anomaly]:
    """Scopes whose recent spend is anomalous. Only scopes above the floor get a baseline query."""
    from tracking.models import UsageRecord

    now = now or timezone.now()
    floor = Decimal(str(settings.ANOMALY_MIN_SPEND))
    factor = Decimal(str(settings.ANOMALY_FACTOR))
    recent_start = now - _window()
    # The baseline ends at the hour the recent window starts in, so the spike does not raise its own bar.
    baseline_until = recent_start.replace(minute=0, second=0, microsecond=0)
    baseline_since = baseline_until - timedelta(days=settings.ANOMALY_BASELINE_DAYS)
    recent = UsageRecord.objects.filter(occurred_at__gt=recent_start, occurred_at__lte=now)
    found = []
    for dimension, field_name in DIMENSIONS:
        rows = recent.values(field_name).annotate(total=Sum("cost_usd")).filter(total__gte=floor).order_by()
        for row in rows:
            value = row[field_name]
            if dimension != "team" and not value:
                continue
            baseline = _baseline(field_name, value, since=baseline_since, until=baseline_until)
            threshold = max(floor, factor * baseline)
            if row["total"] > factor * baseline:  # and ≥ floor, from the query
                found.append(Anomaly(f"{dimension}:{value}", dimension, value, row["total"], baseline, threshold))
    return found


def _message(anomaly: Anomaly, team_names: dict[int, str]) -> str:
    minutes = settings.ANOMALY_WINDOW_MINUTES
    label = {"team": "team", "model": "model", "category": "research category"}[anomaly.dimension]
    name = team_names.get(anomaly.value, anomaly.value) if anomaly.dimension == "team" else anomaly.value
    if anomaly.baseline > 0:
        ratio = anomaly.recent / anomaly.baseline
        usual = (f"{ratio:.0f}× the usual {minutes}-minute spend (median ${anomaly.baseline:,.2f} over "
                 f"{settings.ANOMALY_BASELINE_DAYS} days)")
    else:
        usual = f"with no spend in a usual {minutes}-minute window over {settings.ANOMALY_BASELINE_DAYS} days"
    return f"Spend anomaly for {label} {name}: ${anomaly.recent:,.2f} in the last {minutes} minutes, {usual}"


def anomalies_detect(*, now: datetime | None = None) -> list[BudgetAlert]:
    """Open an incident (and raise its one alert) for each new anomaly; close incidents back to normal."""
    from .services import alert_create_once

    now = now or timezone.now()
    anomalies = anomalies_find(now=now)
    open_incidents = {i.scope: i for i in AnomalyIncident.objects.filter(ended_at__isnull=True)}
    team_ids = [a.value for a in anomalies if a.dimension == "team"]
    team_names = dict(Team.objects.filter(pk__in=team_ids).values_list("pk", "name"))
    raised = []
    for anomaly in anomalies:
        incident = open_incidents.pop(anomaly.scope, None)
        if incident is not None:
            AnomalyIncident.objects.filter(pk=incident.pk).update(
                last_seen_at=now, peak_spend=max(incident.peak_spend, anomaly.recent))
            continue
        bucket = int(now.timestamp()) // (settings.ANOMALY_WINDOW_MINUTES * 60) * settings.ANOMALY_WINDOW_MINUTES * 60
        try:
            with transaction.atomic():
                incident = AnomalyIncident.objects.create(scope=anomaly.scope, started_at=now, last_seen_at=now,
                                                          peak_spend=anomaly.recent)
                alert = alert_create_once(
                    dedupe_key=f"anomaly:{anomaly.scope}:{bucket}", alert_type=BudgetAlert.AlertType.ANOMALY,
                    alert_level=AlertLevel.CRITICAL, message=_message(anomaly, team_names),
                    current_cost=anomaly.recent, team_id=anomaly.value if anomaly.dimension == "team" else None,
                    details={"scope": anomaly.scope, "window_minutes": settings.ANOMALY_WINDOW_MINUTES,
                             "recent_spend": float(anomaly.recent), "baseline_median": float(anomaly.baseline),
                             "threshold": float(anomaly.threshold), "factor": float(settings.ANOMALY_FACTOR),
                             "floor": float(settings.ANOMALY_MIN_SPEND), "incident_id": incident.pk})
                if alert is not None:
                    incident.alert = alert
                    incident.save(update_fields=["alert"])
                    raised.append(alert)
        except IntegrityError:  # another cycle opened this incident at the same moment
            continue
    if open_incidents:  # back to normal: the next anomaly is a new incident
        AnomalyIncident.objects.filter(pk__in=[i.pk for i in open_incidents.values()]).update(ended_at=now)
    return raised
