"""Read side of alerts: who sees which alerts, their API shapes, channel results and delivery stats."""

from __future__ import annotations

from django.db.models import Avg, Count, Q, QuerySet

from budgets.periods import DAILY, FIXED, MONTHLY
from costmonitor.api.permissions import user_has
from costmonitor.api.scoping import visible_team_ids
from costmonitor.errors import InvalidParameters

from .channels import config_for_display
from .models import AlertChannel, AlertDelivery, AlertLevel, BudgetAlert, DeliveryAttempt

RECENT_FAILURES = 10
_TRUE, _FALSE = {"true", "1", "yes"}, {"false", "0", "no"}


def alerts_visible_to(user) -> QuerySet[BudgetAlert]:
    """Admins see every alert; others see their teams' alerts and organisation-wide ones (no team)."""
    alerts = BudgetAlert.objects.select_related("budget", "team", "acknowledged_by")
    team_ids = visible_team_ids(user)
    if team_ids is None:
        return alerts
    return alerts.filter(Q(team_id__in=team_ids) | Q(team__isnull=True))


def can_acknowledge(user, alert: BudgetAlert) -> bool:
    """Whoever holds manage_alerts may acknowledge any alert they see; a researcher, the alerts of
    their own teams (organisation-wide alerts are the admins' to acknowledge)."""
    if user_has(user, "manage_alerts"):
        return True
    team_ids = visible_team_ids(user)
    return alert.team_id is not None and (team_ids is None or alert.team_id in team_ids)


def _int(value, name: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise InvalidParameters("Must be an integer id.", field=name) from None


def alerts_for_user(user, filters: dict | None = None) -> QuerySet[BudgetAlert]:
    """The alerts list: level (comma-separated), budget, team, acknowledged, period (type or key), alert_type."""
    filters = filters or {}
    alerts = alerts_visible_to(user)
    if filters.get("level"):
        levels = [v.strip() for v in str(filters["level"]).split(",") if v.strip()]
        bad = [v for v in levels if v not in AlertLevel.values]
        if bad:
            raise InvalidParameters(f"Unknown level {bad[0]!r}: use {', '.join(AlertLevel.values)}.", field="level")
        alerts = alerts.filter(alert_level__in=levels)
    if filters.get("alert_type"):
        kinds = [v.strip() for v in str(filters["alert_type"]).split(",") if v.strip()]
        bad = [v for v in kinds if v not in BudgetAlert.AlertType.values]
        if bad:
            raise InvalidParameters(f"Unknown alert type {bad[0]!r}.", field="alert_type")
        alerts = alerts.filter(alert_type__in=kinds)
    if filters.get("budget") not in (None, ""):
        alerts = alerts.filter(budget_id=_int(filters["budget"], "budget"))
    if filters.get("team") not in (None, ""):
        alerts = alerts.filter(team_id=_int(filters["team"], "team"))
    acknowledged = str(filters.get("acknowledged", "")).strip().lower()
    if acknowledged:
        if acknowledged not in _TRUE | _FALSE:
            raise InvalidParameters("true or false.", field="acknowledged")
        alerts = alerts.filter(acknowledged_at__isnull=acknowledged in _FALSE)
    period = str(filters.get("period", "")).strip()
    if period:
        if period in (DAILY, MONTHLY, FIXED):
            alerts = alerts.filter(period_type=period)
        elif len(period) <= 16 and "\x00" not in period:  # PostgreSQL text cannot hold NUL
            alerts = alerts.filter(period_key=period)
        else:
            raise InvalidParameters("daily, monthly, fixed, or a period key like 2025-08-06 or 2025-08.",
                                    field="period")
    return alerts


def alert_dict(alert: BudgetAlert) -> dict:
    """The reference's BudgetAlert fields, plus id, type, budget, team and acknowledgement."""
    def number(value):
        return None if value is None else float(value)

    return {
        "id": alert.pk,
        "timestamp": alert.timestamp.timestamp(),
        "alert_level": alert.alert_level,
        "alert_type": alert.alert_type,
        "period_type": alert.period_type,
        "period_key": alert.period_key,
        "current_cost": number(alert.current_cost),
        "budget_limit": number(alert.budget_limit),
        "percentage_used": number(alert.percentage_used),
        "threshold_percentage": number(alert.threshold_percentage),
        "message": alert.message,
        "budget": {"id": alert.budget_id, "name": alert.budget.name} if alert.budget_id else None,
        "team": {"id": alert.team_id, "name": alert.team.name} if alert.team_id else None,
        "details": alert.details,
        "acknowledged": alert.acknowledged_at is not None,
        "acknowledged_at": alert.acknowledged_at.timestamp() if alert.acknowledged_at else None,
        "acknowledged_by": alert.acknowledged_by.get_username() if alert.acknowledged_by_id else None,
    }


def channel_dict(channel: AlertChannel) -> dict:
    """A channel as the API shows it: secrets masked, never in clear."""
    return {
        "id": channel.pk,
        "name": channel.name,
        "kind": channel.kind,
        "is_active": channel.is_active,
        "config": config_for_display(channel),
        "levels": channel.levels,
        "teams": [t.pk for t in channel.teams.all()],
        "budgets": [b.pk for b in channel.budgets.all()],
        "last_error": channel.last_error,
        "last_error_at": channel.last_error_at.timestamp() if channel.last_error_at else None,
        "last_sent_at": channel.last_sent_at.timestamp() if channel.last_sent_at else None,
        "created_at": channel.created_at.timestamp(),
    }


def attempt_dict(attempt: DeliveryAttempt) -> dict:
    return {
        "timestamp": attempt.at.timestamp(),
        "channel": attempt.channel_name,
        "kind": attempt.channel_kind,
        "success": attempt.success,
        "error": attempt.error,
        "error_code": attempt.error_code or None,
        "http_status": attempt.http_status,
        "smtp_reply": attempt.smtp_reply or None,
        "message_id": attempt.message_id or None,
        "response_time_ms": attempt.response_time_ms,
        "is_test": attempt.is_test,
        "alert_id": attempt.delivery.alert_id if attempt.delivery_id else None,
    }


def channel_results(channel: AlertChannel, *, limit: int = 20) -> list[dict]:
    """The channel's latest attempts (tests included), newest first: for the portal's channel page."""
    attempts = DeliveryAttempt.objects.filter(channel=channel).select_related("delivery")[:limit]
    return [attempt_dict(a) for a in attempts]


def _rate(successes: int, total: int) -> float:
    return round(successes / total * 100, 1) if total else 0.0


def delivery_stats() -> dict:
    """get_delivery_stats, computed from the attempt rows (channel tests excluded).

    Totals count attempts: a delivery retried twice and then sent is two failures and one success.
    `deliveries` adds the state of the delivery rows (pending, sent, failed for good).
    """
    attempts = DeliveryAttempt.objects.filter(is_test=False)
    per_channel = (attempts.values("channel_name", "channel_kind")
                   .annotate(total=Count("id"), ok=Count("id", filter=Q(success=True)),
                             avg_ms=Avg("response_time_ms")).order_by("channel_name"))
    channels, total, ok = {}, 0, 0
    for row in per_channel:
        total += row["total"]
        ok += row["ok"]
        channels[row["channel_name"]] = {
            "kind": row["channel_kind"],
            "total_attempts": row["total"],
            "successful_deliveries": row["ok"],
            "failed_deliveries": row["total"] - row["ok"],
            "success_rate": _rate(row["ok"], row["total"]),
            "avg_response_time_ms": round(row["avg_ms"] or 0),
        }
    states = dict(AlertDelivery.objects.values("status").annotate(n=Count("id")).values_list("status", "n"))
    failures = attempts.filter(success=False).select_related("delivery")[:RECENT_FAILURES]
    return {
        "total_alerts_sent": total,
        "successful_deliveries": ok,
        "failed_deliveries": total - ok,
        "success_rate": _rate(ok, total),
        "channels": channels,
        "recent_failures": [{"timestamp": a.at.timestamp(), "channel": a.channel_name, "error": a.error,
                             "error_code": a.error_code or None, "http_status": a.http_status,
                             "smtp_reply": a.smtp_reply or None,
                             "alert_id": a.delivery.alert_id if a.delivery_id else None} for a in failures],
        "deliveries": {status: states.get(status, 0) for status in AlertDelivery.Status.values},
    }
