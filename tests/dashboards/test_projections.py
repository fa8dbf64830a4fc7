"""End-of-period projections from the trailing hour-of-day / day-of-week pattern, their confidence,
the linear fallback when history is short, and each period's own end."""

from __future__ import annotations

import math
import statistics
from datetime import date, timedelta
from decimal import Decimal

import pytest

from budgets.models import Budget
from budgets.projections import LINEAR_TREND, USAGE_PATTERN, project_period
from budgets.services import global_budget

from .conftest import UTC, at, record

pytestmark = pytest.mark.django_db
NOON = at(20, 12)  # Thursday 20 March 2025, 12:00 UTC


def _days_before(day: date, count: int) -> list[date]:
    return [day - timedelta(days=n) for n in range(count, 0, -1)]


def _on(day: date, hour: int):
    from datetime import datetime

    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


def test_a_day_is_projected_from_the_hour_of_day_pattern_with_its_spread(researcher, team):
    # 28 days: $1 at 08:00 and, after noon, $2 or $4 on alternate days. Today: $1 at 08:00.
    for n, day in enumerate(_days_before(date(2025, 3, 20), 28)):
        record(researcher, team, _on(day, 8), 1)
        record(researcher, team, _on(day, 16), 2 if n % 2 == 0 else 4)
    record(researcher, team, _on(date(2025, 3, 20), 8), 1)
    projection = project_period(global_budget("daily"), NOON)
    assert projection.method == USAGE_PATTERN and projection.history_days == 28
    assert projection.projected_cost == Decimal("4.000000")  # $1 so far + the mean $3 after noon
    spread = statistics.stdev([2, 4] * 14) * math.sqrt(1 + 1 / 28)
    assert projection.confidence == round(1 - spread / 4, 2)


def test_a_month_is_projected_from_the_day_of_week_pattern(researcher, team):
    # Weekdays cost $10 ($4 at 08:00, $6 at 16:00), weekends nothing; today (a Thursday) $4 so far.
    march_to_25 = Budget.objects.create(name="March to the 25th", scope=Budget.Scope.ORGANIZATION,
                                        period=Budget.Period.FIXED, starts_on=date(2025, 3, 1),
                                        ends_on=date(2025, 3, 25), limit_usd=1000)
    for day in _days_before(date(2025, 3, 20), 28):
        if day.weekday() < 5:
            record(researcher, team, _on(day, 8), 4)
            record(researcher, team, _on(day, 16), 6)
    record(researcher, team, _on(date(2025, 3, 20), 8), 4)
    monthly = project_period(global_budget("monthly"), NOON)
    # March so far: 13 weekdays × $10 + $4; then $6 for this afternoon and 7 more weekdays × $10.
    assert monthly.method == USAGE_PATTERN
    assert monthly.projected_cost == Decimal(134 + 6 + 70)
    assert monthly.confidence == 1.0  # the pattern never varied
    # A fixed range ends on its own day: Friday 21, Monday 24, Tuesday 25 remain.
    fixed = project_period(march_to_25, NOON)
    assert fixed.projected_cost == Decimal(134 + 6 + 30)
    # A daily budget projects to the end of today, from the hour-of-day pattern over all 28 days.
    daily = project_period(global_budget("daily"), NOON)
    rests = [6.0] * 20 + [0.0] * 8
    assert daily.projected_cost == Decimal("4") + Decimal(str(statistics.fmean(rests))).quantize(Decimal("0.000001"))
    assert daily.confidence == round(1 - statistics.stdev(rests) * math.sqrt(1 + 1 / 28) / float(
        daily.projected_cost), 2)


def test_short_history_falls_back_to_a_linear_projection_and_says_so(researcher, team):
    for day in (18, 19):
        record(researcher, team, at(day, 8), 4)
        record(researcher, team, at(day, 16), 6)
    record(researcher, team, at(20, 8), 4)
    monthly = project_period(global_budget("monthly"), NOON)
    assert monthly.method == LINEAR_TREND and monthly.history_days == 2
    # $24 over the 52 hours since usage began (18 March, 08:00), continued for the 276 hours left in March.
    observed, remaining = 52 * 3600.0, 276 * 3600.0
    assert monthly.projected_cost == Decimal(24) + Decimal(str(24.0 / observed * remaining)).quantize(
        Decimal("0.000001"))
    assert monthly.confidence == round(52 / 328, 2)


def test_a_finished_fixed_period_is_its_actual_spend(researcher, team):
    february = Budget.objects.create(name="February", scope=Budget.Scope.ORGANIZATION, period=Budget.Period.FIXED,
                                     starts_on=date(2025, 2, 1), ends_on=date(2025, 2, 28), limit_usd=100)
    record(researcher, team, at(10, 9, month=2), 12)
    projection = project_period(february, NOON)
    assert projection.projected_cost == Decimal("12") and projection.confidence == 1.0
