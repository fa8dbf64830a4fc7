"""Read-side of the ledger: budget states shaped as the reference's BudgetManager answers."""

from __future__ import annotations

from decimal import Decimal

from django.core.cache import cache
from django.db.models import Sum
from django.utils import timezone

from costmonitor.money import ZERO

from .models import Budget
from .periods import budget_period_bounds
from .services import BudgetState, CheckResult

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
