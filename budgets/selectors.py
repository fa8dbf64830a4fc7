"""Read-side of the ledger: budget states shaped as the reference's BudgetManager answers."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from decimal import Decimal

from django.core.cache import cache
from django.db.models import Q, Sum
from django.utils import timezone

from costmonitor.api.scoping import visible_team_ids
from costmonitor.money import ZERO

from .models import Budget
from .periods import budget_period_bounds, budget_zone, local_date, period_bounds
from .services import BudgetState, CheckResult, budget_states

HEALTH_ORDER = ["healthy", "warning", "critical", "exceeded"]
_BREAKDOWN_CACHE_SECONDS = 30


def percentage(part: Decimal, whole: Decimal) -> float:
    return round(float(part / whole * 100), 2) if whole > 0 else (0.0 if part <= 0 else 100.0)


def health_of(budget: Budget, used: Decimal) -> str:
    """healthy below the warning threshold, then warning, critical, exceeded (the budget's own thresholds)."""
    pct = Decimal(str(percentage(used, budget.limit_usd)))
    if pct >= budget.exceeded_percentage:
        return "exceeded"
    if pct >= budget.critical_percentage:
        return "critical"
    if pct >= budget.warning_percentage:
        return "warning"
    return "healthy"


def worst_health(healths) -> str:
    return max(healths, key=HEALTH_ORDER.index, default="healthy")


def state_dict(state: BudgetState, requested: Decimal = ZERO) -> dict:
    budget = state.budget
    return {
        "budget_id": budget.id,
        "budget_name": budget.name,
        "scope": budget.scope,
        "period_type": budget.period,
        "period_key": state.period_key,
        "enforcement": budget.enforcement,
        "total_cost": float(state.spent),
        "reserved_cost": float(state.reserved),
        "projected_cost": float(state.committed + requested),
        "percentage_used": percentage(state.spent, budget.limit_usd),
        "budget_limit": float(budget.limit_usd),
        "over_budget": state.committed + requested > budget.limit_usd,
        "health": health_of(budget, state.spent),
    }


def _tightest(states: list[BudgetState], period: str, requested: Decimal) -> dict | None:
    candidates = [s for s in states if s.budget.period == period]
    if not candidates:
        return None
    # The most constrained budget of the period speaks for it (the organisation's when none is tighter).
    tightest = max(candidates, key=lambda s: ((s.committed + requested) / s.budget.limit_usd)
                   if s.budget.limit_usd > 0 else Decimal("Infinity"))
    return state_dict(tightest, requested)


def cost_breakdown(*, team_ids: list[int] | None) -> dict:
    """This month's spend by category and by operation type, from hourly rollups (cached briefly)."""
    from tracking.models import HourlyRollup

    key = f"breakdown:{','.join(map(str, sorted(team_ids))) if team_ids is not None else 'all'}"
    found = cache.get(key)
    if found is not None:
        return found
    start, end = budget_period_bounds(Budget(period="monthly"), timezone.now())
    rollups = HourlyRollup.objects.filter(hour__gte=start, hour__lt=end)
    if team_ids is not None:
        rollups = rollups.filter(team_id__in=team_ids)
    by_category = rollups.values("research_category").annotate(total=Sum("cost_usd")).order_by("-total")
    by_operation = rollups.values("operation_type").annotate(total=Sum("cost_usd")).order_by("-total")
    found = {
        "by_category": {row["research_category"] or "uncategorised": float(row["total"]) for row in by_category},
        "by_operation": {row["operation_type"] or "unspecified": float(row["total"]) for row in by_operation},
    }
    cache.set(key, found, _BREAKDOWN_CACHE_SECONDS)
    return found


def check_result_dict(result: CheckResult, *, team_ids: list[int] | None) -> dict:
    """check_budget_status, field for field, plus every applicable budget under `budgets`."""
    requested = result.requested
    return {
        "operation_allowed": result.allowed,
        "budget_health": worst_health(health_of(s.budget, s.committed + requested) for s in result.states),
        "daily_status": _tightest(result.states, "daily", requested),
        "monthly_status": _tightest(result.states, "monthly", requested),
        "alerts_generated": [],
        "cost_breakdown": cost_breakdown(team_ids=team_ids),
        "budgets": [state_dict(s, requested) for s in result.states],
        "denied_by": state_dict(result.denied_by, requested) if result.denied_by else None,
    }


# --- Budgets a user may see --------------------------------------------------------------------

def budgets_visible(*, user):
    """Admins see every budget; others the organisation's, their teams', their own, and the
    category and model budgets (which apply to everyone's calls)."""
    budgets = Budget.objects.select_related("team", "user")
    team_ids = visible_team_ids(user)
    if team_ids is None:
        return budgets
    scope = Budget.Scope
    return budgets.filter(Q(scope__in=[scope.ORGANIZATION, scope.CATEGORY, scope.MODEL])
                          | Q(scope=scope.TEAM, team_id__in=team_ids) | Q(scope=scope.USER, user_id=user.pk))


# --- get_budget_summary -------------------------------------------------------------------------

def _global_states(at) -> dict[str, BudgetState]:
    """The organisation's daily and monthly budgets (the reference's global limits) with their counters."""
    budgets = list(Budget.objects.filter(is_global_default=True))
    return {state.budget.period: state for state in budget_states(budgets=budgets, at=at)}


def _days_elapsed(budget: Budget, at) -> int:
    start, _ = budget_period_bounds(budget, at)
    return (local_date(at) - local_date(start)).days + 1


def budget_summary(*, user, at=None) -> dict:
    """get_budget_summary, field for field: the organisation's daily and monthly budgets (O(1): counters)."""
    at = at or timezone.now()
    states = _global_states(at)
    answer: dict = {}
    healths = []
    monthly = None
    for period in ("daily", "monthly"):
        state = states.get(period)
        if state is None:
            answer[f"{period}_budget"] = None
            continue
        budget = state.budget
        if period == "monthly":
            monthly = state
        healths.append(health_of(budget, state.spent))
        answer[f"{period}_budget"] = {
            "total_cost": float(state.spent),
            "budget_limit": float(budget.limit_usd),
            "percentage_used": percentage(state.spent, budget.limit_usd),
            "over_budget": state.spent > budget.limit_usd,
            "remaining_budget": float(max(budget.limit_usd - state.spent, ZERO)),
            "days_in_period": _days_elapsed(budget, at) if period == "monthly" else 1,
            "last_updated": (state.updated_at or at).isoformat().replace("+00:00", "Z"),
            "reserved_cost": float(state.reserved),
            "enforcement": budget.enforcement,
        }
    operations = monthly.calls if monthly else 0
    spent = monthly.spent if monthly else ZERO
    answer["budget_health"] = worst_health(healths)
    answer["total_operations"] = operations
    answer["average_cost_per_operation"] = round(float(spent / operations), 6) if operations else 0.0
    answer["budgets"] = budget_states_visible(user=user, at=at)
    return answer


def budget_states_visible(*, user, at=None) -> list[dict]:
    """Every active budget the user may see, with its current period's spend (one counter query)."""
    budgets = list(budgets_visible(user=user).filter(is_active=True))
    return [state_dict(state) for state in budget_states(budgets=budgets, at=at)]


# --- get_spending_trends (from hourly rollups, days cut in BUDGET_TIMEZONE) ---------------------

TREND_STABLE_BAND = 5.0  # percent: a smaller change between the two halves is "stable"
PEAK_HOURS = 6


def spending_trends(*, user, days: int = 30, at=None) -> dict:
    """get_spending_trends over the last `days` local days (today included), from HourlyRollup."""
    from tracking.models import HourlyRollup

    at = at or timezone.now()
    today = local_date(at)
    first_day = today - timedelta(days=days - 1)
    # From local noon of the first day: `at` minus whole days of 24 h lands a day early after a 23-hour day.
    start, _ = period_bounds("daily", datetime.combine(first_day, time(12), tzinfo=budget_zone()))
    _, end = period_bounds("daily", at)
    rollups = HourlyRollup.objects.filter(hour__gte=start, hour__lt=end)
    team_ids = visible_team_ids(user)
    if team_ids is not None:
        rollups = rollups.filter(team_id__in=team_ids)
    per_hour = rollups.values("hour").annotate(total=Sum("cost_usd")).order_by()

    zone = budget_zone()
    daily = {(first_day + timedelta(days=i)).isoformat(): ZERO for i in range(days)}
    by_hour_of_day = [ZERO] * 24
    weekdays = weekends = ZERO
    for row in per_hour:
        local = row["hour"].astimezone(zone)
        cost = row["total"] or ZERO
        key = local.date().isoformat()
        if key in daily:
            daily[key] += cost
        by_hour_of_day[local.hour] += cost
        if local.weekday() >= 5:
            weekends += cost
        else:
            weekdays += cost
    total = sum(daily.values(), ZERO)
    direction, change = _trend(list(daily.values()))
    ranked = sorted((h for h in range(24) if by_hour_of_day[h] > 0), key=lambda h: by_hour_of_day[h], reverse=True)
    return {
        "period_days": days,
        "total_cost": round(float(total), 6),
        "average_daily_cost": round(float(total / days), 2),
        "trend_direction": direction,
        "trend_percentage": change,
        "daily_costs": {day: round(float(cost), 6) for day, cost in daily.items()},
        "cost_distribution": {
            "weekdays": percentage(weekdays, total) if total > 0 else 0.0,
            "weekends": percentage(weekends, total) if total > 0 else 0.0,
        },
        "peak_usage_hours": sorted(ranked[:PEAK_HOURS]),
    }


def _trend(values: list[Decimal]) -> tuple[str, float]:
    """Compare the mean of the later half of the days with the earlier half."""
    if len(values) < 2:
        return "stable", 0.0
    half = len(values) // 2
    earlier = sum(values[:half], ZERO) / half
    later = sum(values[-half:], ZERO) / half
    if earlier == 0:
        return ("increasing", 100.0) if later > 0 else ("stable", 0.0)
    change = round(float((later - earlier) / earlier * 100), 1)
    if change > TREND_STABLE_BAND:
        return "increasing", change
    if change < -TREND_STABLE_BAND:
        return "decreasing", change
    return "stable", change
