"""A budget period's counter as tests read it: its slot rows summed (budgets.models.SpendCounter)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from django.db.models import Sum

from budgets.models import SpendCounter
from costmonitor.money import to_money


@dataclass(frozen=True)
class CounterTotal:
    period_key: str
    spent: Decimal
    reserved: Decimal
    calls: int


def counter_total(budget, period_key: str | None = None) -> CounterTotal | None:
    """The budget's counter summed over its slots; without `period_key` the budget must have one period."""
    rows = SpendCounter.objects.filter(budget=budget)
    if period_key is not None:
        rows = rows.filter(period_key=period_key)
    totals = list(rows.order_by().values("period_key").annotate(spent=Sum("spent"), reserved=Sum("reserved"),
                                                               calls=Sum("calls")))
    if not totals:
        return None
    (row,) = totals
    # Quantized like the ledger's own reads: SQLite sums decimals as floats.
    return CounterTotal(row["period_key"], to_money(row["spent"]), to_money(row["reserved"]), row["calls"])


def counters_by_period(budget) -> dict[str, tuple[Decimal, int]]:
    """{period_key: (spent, calls)} of a budget, summed over slots."""
    rows = SpendCounter.objects.filter(budget=budget).order_by().values("period_key").annotate(
        spent=Sum("spent"), calls=Sum("calls"))
    return {row["period_key"]: (row["spent"], row["calls"]) for row in rows}
