"""Read-side glue for the portal pages: what each page shows, taken from the apps' selectors and
services and shaped for templates. Numbers come from the same functions the API answers with."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.utils import timezone

from breakers import selectors as breaker_selectors
from budgets import analytics
from budgets.models import Budget, Team
from budgets.periods import budget_zone
from budgets.selectors import health_of, percentage
from budgets.services import budget_states
from costmonitor.api.scoping import visible_team_ids
from costmonitor.money import ZERO
from tracking.models import HourlyRollup, UsageRecord

# --- Teams, users and budgets a user may see --------------------------------------------------


def teams_visible(user):
    team_ids = visible_team_ids(user)
    teams = Team.objects.all()
    return teams if team_ids is None else teams.filter(pk__in=team_ids)


def users_visible(user):
    users = get_user_model().objects.order_by("username")
    team_ids = visible_team_ids(user)
    return users if team_ids is None else users.filter(memberships__team_id__in=team_ids).distinct()


@dataclass
class BudgetRow:
    budget: Budget
    spent: Decimal
    reserved: Decimal
    percentage: float
    health: str
    in_period: bool

    @property
    def bar_width(self) -> float:
        return min(self.percentage, 100.0)


def budget_rows(budgets, *, at: datetime | None = None) -> list[BudgetRow]:
    """Each budget with the spend of its current period (one counter query for the page)."""
    budgets = list(budgets)
    states = {s.budget.pk: s for s in budget_states(budgets=budgets, at=at)}
    rows = []
    for budget in budgets:
        state = states.get(budget.pk)
        spent = state.spent if state else ZERO
        rows.append(BudgetRow(budget, spent, state.reserved if state else ZERO,
                              percentage(spent, budget.limit_usd), health_of(budget, spent), state is not None))
    return rows


# --- Usage explorer ---------------------------------------------------------------------------


def usage_filtered(*, user, filters: dict):
    """Usage records the user may see, narrowed by the explorer's cleaned filters. The table and
    the CSV export both read this queryset, so the export is exactly what the table lists."""
    records = UsageRecord.objects.select_related("user", "team")
    team_ids = visible_team_ids(user)
    if team_ids is not None:
        records = records.filter(team_id__in=team_ids)
    zone = budget_zone()
    if filters.get("start"):
        records = records.filter(occurred_at__gte=datetime.combine(filters["start"], time.min, tzinfo=zone))
    if filters.get("end") and filters["end"] < date.max:  # nothing lies after the calendar's last day
        after = filters["end"] + timedelta(days=1)
        records = records.filter(occurred_at__lt=datetime.combine(after, time.min, tzinfo=zone))
    if filters.get("team"):
        records = records.filter(team=filters["team"])
    if filters.get("user"):
        records = records.filter(user=filters["user"])
    if filters.get("model"):
        records = records.filter(model_name=filters["model"])
    if filters.get("category"):
        records = records.filter(research_category=filters["category"])
    if filters.get("success") in ("yes", "no"):
        records = records.filter(success=filters["success"] == "yes")
    return records.order_by("-occurred_at", "-id")


def usage_dimension_values(*, user, field: str) -> list[str]:
    """Distinct model names or categories seen (from the rollups: small, indexed by team)."""
    rollups = HourlyRollup.objects.all()
    team_ids = visible_team_ids(user)
    if team_ids is not None:
        rollups = rollups.filter(team_id__in=team_ids)
    return [v for v in rollups.values_list(field, flat=True).distinct().order_by(field) if v]


# --- Reports and overview (budgets.analytics: the numbers the API answers with) ----------------


def cost_report(*, user, start: date, end: date) -> dict:
    """get_cost_report for the local days start..end, exactly as GET /api/v1/reports/costs answers."""
    return analytics.get_cost_report(user=user, start_date=start.isoformat(), end_date=end.isoformat())


def cost_report_csv(*, user, start: date, end: date):
    """(filename, CSV lines) of the same report, as GET /api/v1/reports/costs?format=csv streams it."""
    return analytics.cost_report_csv_rows(user=user, start_date=start.isoformat(), end_date=end.isoformat())


def _card(metrics: dict, period: str) -> dict:
    budget = Budget.objects.filter(is_global_default=True, period=period).first()
    cost, limit = Decimal(str(metrics[f"{period}_cost"])), Decimal(str(metrics[f"{period}_budget"]))
    pct = metrics[f"{period}_percentage"]
    return {
        "period": period, "label": "Today" if period == "daily" else "This month",
        "period_noun": "day" if period == "daily" else "month",
        "spent": cost, "limit": limit, "percentage": pct, "bar_width": min(pct, 100.0),
        "health": health_of(budget, cost) if budget else ("exceeded" if pct >= 100 else "healthy"),
        "projected": metrics.get(f"{period}_projected_cost"),
    }


def overview(*, user, now: datetime | None = None) -> dict:
    """Cards, alerts, breakers and chart data for the overview page: the dashboard overview, the
    30-day cost analytics (series and forecast) and the 30-day cost report (breakdowns)."""
    now = now or timezone.now()
    dashboard = analytics.get_dashboard_overview(user=user, now=now)
    metrics = dashboard["metrics"]
    trends = analytics.get_cost_analytics(user=user, time_range="last_30_days", granularity="daily",
                                          include_categories=False, now=now)["trends"]
    today = now.astimezone(budget_zone()).date()
    report = analytics.get_cost_report(user=user, start_date=(today - timedelta(days=29)).isoformat(),
                                       end_date=today.isoformat(), now=now)["cost_report"]
    return {
        "metrics": metrics,
        "cards": [_card(metrics, "daily"), _card(metrics, "monthly")],
        "alert_summary": {"active": metrics["active_alerts"], "critical": metrics["critical_alerts"]},
        "alerts": dashboard["recent_alerts"],
        "breaker_summary": {"healthy": metrics["circuit_breakers_healthy"], "open": metrics["circuit_breakers_open"]},
        "breakers": list(breaker_selectors.breakers_with_rules()[:5]),
        "series": list(trends["time_series"].items())[-30:],
        "forecast": [(f["period_start"] or f"+{f['period']}", f["projected_value"]) for f in trends["forecast"]],
        "daily_limit": metrics["daily_budget"],
        "report": report,
        "trend": trends["trend_analysis"],
    }
