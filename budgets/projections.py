"""End-of-period spend projections: spend so far plus the expected rest of the period.

The expected rest comes from the trailing usage pattern in the hourly rollups (the last
HISTORY_DAYS complete local days before today, in BUDGET_TIMEZONE):

- a day (daily budgets) is projected with the hour-of-day pattern: for every history day, what
  was spent after the current time of day; the mean of those amounts is the expected rest;
- a month or a fixed date range is projected with the day-of-week pattern: the rest of today as
  above (same weekday only) plus, for every remaining day, the mean spend of that weekday.

Confidence is 1 − (uncertainty of the rest ÷ projected total), clipped to [0, 1]. The uncertainty is
the sample standard deviation of the history amounts widened by √(1 + 1/n) (a prediction, not
a mean); for several days the daily deviations are added up (days are treated as correlated, the
cautious choice). Early in a period most of the total is still uncertain, so confidence is lower;
at the end it reaches 1.

With fewer than MIN_HISTORY_DAYS days of history the projection is linear: the spend rate since
the period started (or since the first recorded usage, if later, but over at least 1/24 of the
period) continued to the period's end;
its confidence is the share of that span already observed. `method` says which was used.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from statistics import fmean, stdev

from django.db.models import Sum
from django.utils import timezone

from costmonitor.money import ZERO, to_money

from .models import Budget, SpendCounter
from .periods import budget_period_bounds, budget_period_key, budget_zone, local_date, period_bounds

HISTORY_DAYS = 28
MIN_HISTORY_DAYS = 7

USAGE_PATTERN = "usage_pattern"
LINEAR_TREND = "linear_trend"
ACTUAL = "actual"  # the period is over: the spend is final
NOT_STARTED = "not_started"  # a fixed period that has not begun


@dataclass(frozen=True)
class Projection:
    projected_cost: Decimal
    confidence: float
    method: str
    history_days: int = 0


@dataclass
class SpendHistory:
    """Hourly spend of one scope over the trailing window, in local days and hours.

    `days[d][h]` is the spend of local date d in local hour h (complete days before `today` only);
    `first_seen` is the first hour with any usage in the window (today included), or None.
    """

    today: date
    days: dict[date, dict[int, Decimal]] = field(default_factory=dict)
    first_seen: datetime | None = None

    @property
    def observed_days(self) -> list[date]:
        """Every local day from the first one with usage up to yesterday (days without spend count as 0)."""
        if self.first_seen is None:
            return []
        first = max(local_date(self.first_seen), self.today - timedelta(days=HISTORY_DAYS))
        return [first + timedelta(days=i) for i in range((self.today - first).days)]

    def day_total(self, day: date) -> Decimal:
        return sum(self.days.get(day, {}).values(), ZERO)

    def day_rest(self, day: date, hour: int, fraction: float) -> float:
        """What `day` spent after local time hour:fraction (the current hour pro rata)."""
        hours = self.days.get(day, {})
        rest = float(hours.get(hour, ZERO)) * (1 - fraction)
        return rest + sum(float(cost) for h, cost in hours.items() if h > hour)


def local_day_start(day: date) -> datetime:
    """UTC instant of local midnight starting `day` (BUDGET_TIMEZONE, DST-aware)."""
    return period_bounds("daily", datetime.combine(day, time(12), tzinfo=budget_zone()))[0]


def rollup_filter(budget: Budget) -> dict:
    """HourlyRollup filters matching what a budget counts."""
    scope = Budget.Scope
    return {
        scope.ORGANIZATION: {},
        scope.TEAM: {"team_id": budget.team_id},
        scope.USER: {"user_id": budget.user_id},
        scope.CATEGORY: {"research_category": budget.research_category},
        scope.MODEL: {"model_name": budget.model_name},
    }[budget.scope]


def spend_history(*, rollup_filters: dict, at: datetime) -> SpendHistory:
    """One query: the scope's spend per hour over the HISTORY_DAYS local days before today, and today."""
    from tracking.models import HourlyRollup

    today = local_date(at)
    window_start = local_day_start(today - timedelta(days=HISTORY_DAYS))
    rows = (HourlyRollup.objects.filter(hour__gte=window_start, hour__lte=at, **rollup_filters)
            .values("hour").annotate(cost=Sum("cost_usd")).order_by())
    history = SpendHistory(today=today)
    zone = budget_zone()
    days: dict[date, dict[int, Decimal]] = defaultdict(lambda: defaultdict(lambda: ZERO))
    for row in rows:
        hour = row["hour"]
        if history.first_seen is None or hour < history.first_seen:
            history.first_seen = hour
        local = hour.astimezone(zone)
        if local.date() < today:
            days[local.date()][local.hour] += row["cost"]
    history.days = {day: dict(hours) for day, hours in days.items()}
    return history


def _spread(samples: list[float]) -> float:
    """Prediction spread of one more sample: sample deviation widened by √(1 + 1/n)."""
    if len(samples) < 2:
        return 0.0
    return stdev(samples) * math.sqrt(1 + 1 / len(samples))


def _clip(value: float) -> float:
    return round(min(1.0, max(0.0, value)), 2)


def _linear(spent: Decimal, start: datetime, end: datetime, at: datetime, first_seen: datetime | None,
            history_days: int) -> Projection:
    began = max(start, first_seen) if first_seen else start
    # Never extrapolate a rate from moments of data: observe at least 1/24 of the period (an hour of
    # a day), or everything since the period began when that is shorter.
    floor = min((end - start).total_seconds() / 24, (at - start).total_seconds())
    observed = max((at - began).total_seconds(), floor)
    remaining = (end - at).total_seconds()
    if observed <= 0:
        return Projection(spent, 0.0, LINEAR_TREND, history_days)
    projected = spent + to_money(float(spent) / observed * remaining)
    return Projection(projected, _clip(observed / (observed + remaining)), LINEAR_TREND, history_days)


def project_spend(*, spent: Decimal, start: datetime, end: datetime, at: datetime, daily: bool,
                  history: SpendHistory) -> Projection:
    """Project `spent` (so far in [start, end)) to `end` from the history's pattern (see module doc)."""
    if at >= end:
        return Projection(spent, 1.0, ACTUAL)
    if at < start:
        return Projection(ZERO, 0.0, NOT_STARTED)
    observed = history.observed_days
    if len(observed) < MIN_HISTORY_DAYS:
        return _linear(spent, start, end, at, history.first_seen, len(observed))
    local = at.astimezone(budget_zone())
    fraction = (local.minute * 60 + local.second) / 3600
    today = local.date()
    if daily:
        rests = [history.day_rest(day, local.hour, fraction) for day in observed]
        expected, spread = fmean(rests), _spread(rests)
    else:
        by_weekday: dict[int, list[date]] = defaultdict(list)
        for day in observed:
            by_weekday[day.weekday()].append(day)
        all_totals = [float(history.day_total(day)) for day in observed]
        overall_spread = _spread(all_totals)
        same_weekday = by_weekday[today.weekday()] or observed
        rests = [history.day_rest(day, local.hour, fraction) for day in same_weekday]
        expected = fmean(rests)
        spread = _spread(rests) if len(rests) >= 2 else overall_spread * (1 - fraction)
        last_day = local_date(end - timedelta(microseconds=1))
        day = today + timedelta(days=1)
        while day <= last_day:
            totals = [float(history.day_total(d)) for d in by_weekday[day.weekday()]]
            if totals:
                expected += fmean(totals)
                spread += _spread(totals) if len(totals) >= 2 else overall_spread
            else:  # cannot happen with ≥ 7 observed days; kept for safety
                expected += fmean(all_totals)
                spread += overall_spread
            day += timedelta(days=1)
    projected = spent + to_money(expected)
    confidence = 1.0 - spread / float(projected) if projected > 0 else (1.0 if spread == 0 else 0.0)
    return Projection(projected, _clip(confidence), USAGE_PATTERN, len(observed))


def project_period(budget: Budget, at: datetime | None = None, *, history: SpendHistory | None = None) -> Projection:
    """Projected spend of `budget` at the end of its period containing `at` (a day, a month or its fixed range)."""
    at = at or timezone.now()
    start, end = budget_period_bounds(budget, at)
    # A fixed range has one counter, "fixed", also once `at` is past its end (its final spend).
    key = "fixed" if budget.period == Budget.Period.FIXED else budget_period_key(budget, at)
    spent = ZERO
    if key is not None:
        spent = SpendCounter.objects.filter(budget=budget, period_key=key).aggregate(s=Sum("spent"))["s"] or ZERO
    if history is None and start <= at < end:
        history = spend_history(rollup_filters=rollup_filter(budget), at=at)
    return project_spend(spent=spent, start=start, end=end, at=at, daily=budget.period == Budget.Period.DAILY,
                         history=history or SpendHistory(today=local_date(at)))

