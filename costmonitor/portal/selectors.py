"""Read-side glue for the portal pages: what each page shows, taken from the apps' selectors and
services and shaped for templates. Numbers come from the same functions the API answers with."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.db.models import Q, Sum
from django.db.models.functions import ExtractHour, TruncDate
from django.utils import timezone

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


def budgets_visible(user):
    """Admins see every budget; a researcher the ones that can apply to them: organisation,
    category and model budgets, their teams' and their own."""
    budgets = Budget.objects.select_related("team", "user")
    team_ids = visible_team_ids(user)
    if team_ids is None:
        return budgets
    scope = Budget.Scope
    return budgets.filter(Q(scope__in=[scope.ORGANIZATION, scope.CATEGORY, scope.MODEL])
                          | Q(scope=scope.TEAM, team_id__in=team_ids) | Q(scope=scope.USER, user_id=user.pk))


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
    if filters.get("end"):
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


# --- Reports ----------------------------------------------------------------------------------


def _rollups(*, user, start: datetime, end: datetime, team_id: int | None = None):
    rollups = HourlyRollup.objects.filter(hour__gte=start, hour__lt=end)
    team_ids = visible_team_ids(user)
    if team_ids is not None:
        rollups = rollups.filter(team_id__in=team_ids)
    if team_id is not None:
        rollups = rollups.filter(team_id=team_id)
    return rollups


def _round(value, places: int = 6) -> float:
    return round(float(value or 0), places)


def cost_report(*, user, start: datetime, end: datetime, team_id: int | None = None) -> dict:
    """The reference's get_cost_report shape over [start, end), from the hourly rollups."""
    rollups = _rollups(user=user, start=start, end=end, team_id=team_id)
    totals = rollups.aggregate(cost=Sum("cost_usd"), calls=Sum("calls"), ok=Sum("successful_calls"))
    total_cost, total_calls = totals["cost"] or ZERO, totals["calls"] or 0
    zone = budget_zone()
    daily = {row["day"].isoformat(): _round(row["cost"]) for row in
             rollups.annotate(day=TruncDate("hour", tzinfo=zone)).values("day").annotate(cost=Sum("cost_usd"))
             .order_by("day")}
    categories = rollups.values("research_category").annotate(cost=Sum("cost_usd"), calls=Sum("calls")).order_by("-cost")
    models = rollups.values("model_name").annotate(cost=Sum("cost_usd"), calls=Sum("calls")).order_by("-cost")
    hours = {f"{h:02d}": 0.0 for h in range(24)}
    for row in rollups.annotate(h=ExtractHour("hour")).values("h").annotate(cost=Sum("cost_usd")):
        hours[f"{row['h']:02d}"] = _round(row["cost"])
    return {
        "cost_report": {
            "summary": {
                "total_cost": _round(total_cost),
                "total_calls": total_calls,
                "success_rate": round(100 * (totals["ok"] or 0) / total_calls, 1) if total_calls else 0.0,
                "avg_cost_per_call": _round(total_cost / total_calls) if total_calls else 0.0,
                "date_range": {"start": start.isoformat(), "end": end.isoformat()},
            },
            "daily_costs": daily,
            "category_breakdown": {
                (row["research_category"] or "uncategorised"): {
                    "cost": _round(row["cost"]), "calls": row["calls"],
                    "percentage": percentage(row["cost"], total_cost)} for row in categories},
            "model_breakdown": {
                (row["model_name"] or "unknown"): {
                    "cost": _round(row["cost"]), "calls": row["calls"],
                    "avg_cost": _round(row["cost"] / row["calls"]) if row["calls"] else 0.0} for row in models},
            "hourly_distribution": hours,
        }
    }


def day_range(start: date, end: date) -> tuple[datetime, datetime]:
    """UTC bounds of the local days start..end (inclusive) in BUDGET_TIMEZONE."""
    zone = budget_zone()
    return (datetime.combine(start, time.min, tzinfo=zone),
            datetime.combine(end + timedelta(days=1), time.min, tzinfo=zone))


def daily_series(daily_costs: dict, start: date, end: date) -> list[tuple[str, float]]:
    """Zero-filled (day, cost) pairs from a report's daily_costs."""
    days = (end - start).days + 1
    return [((start + timedelta(days=i)).isoformat(), daily_costs.get((start + timedelta(days=i)).isoformat(), 0.0))
            for i in range(days)]


# --- Overview ---------------------------------------------------------------------------------


def _global_budget(period: str) -> Budget | None:
    return Budget.objects.filter(is_global_default=True, period=period).first()


def _metrics(*, user, now: datetime) -> dict:
    """Today's and this month's spend, budget, percentage and projection in the reference's
    dashboard-overview metric names."""
    metrics = {}
    for period in ("daily", "monthly"):
        budget = _global_budget(period)
        if budget is None:
            continue
        (row,) = budget_rows([budget], at=now)
        metrics.update({f"{period}_cost": float(row.spent), f"{period}_budget": float(budget.limit_usd),
                        f"{period}_percentage": row.percentage, f"{period}_projected_cost": None})
    metrics.update({"active_alerts": 0, "critical_alerts": 0, "circuit_breakers_healthy": 0,
                    "circuit_breakers_open": 0})
    return metrics


def _card(metrics: dict, period: str) -> dict | None:
    if f"{period}_cost" not in metrics:
        return None
    budget = _global_budget(period)
    cost, limit = Decimal(str(metrics[f"{period}_cost"])), Decimal(str(metrics[f"{period}_budget"]))
    pct = metrics[f"{period}_percentage"]
    return {
        "period": period, "label": "Today" if period == "daily" else "This month",
        "period_noun": "day" if period == "daily" else "month",
        "spent": cost, "limit": limit, "percentage": pct, "bar_width": min(pct, 100.0),
        "health": health_of(budget, cost) if budget else "healthy",
        "projected": metrics.get(f"{period}_projected_cost"),
    }


def overview(*, user, now: datetime | None = None) -> dict:
    """Cards, alerts, breakers and chart data for the overview page."""
    now = now or timezone.now()
    today = now.astimezone(budget_zone()).date()
    first = today - timedelta(days=29)
    start, end = day_range(first, today)
    report = cost_report(user=user, start=start, end=end)["cost_report"]
    series = daily_series(report["daily_costs"], first, today)
    metrics = _metrics(user=user, now=now)
    trailing = [cost for _, cost in series[-7:]]
    average = sum(trailing) / len(trailing) if trailing else 0.0
    forecast = [((today + timedelta(days=i)).isoformat(), round(average, 6)) for i in range(1, 8)]
    return {
        "metrics": metrics,
        "cards": [card for card in (_card(metrics, "daily"), _card(metrics, "monthly")) if card],
        "alert_summary": {"active": metrics["active_alerts"], "critical": metrics["critical_alerts"]},
        "breaker_summary": {"healthy": metrics["circuit_breakers_healthy"], "open": metrics["circuit_breakers_open"]},
        "series": series,
        "forecast": forecast,
        "daily_limit": metrics.get("daily_budget"),
        "report": report,
        "alerts": [],
        "breakers": [],
    }
