"""Budget periods, cut in BUDGET_TIMEZONE: day keys "2025-08-06", month keys "2025-08", "fixed".

Periods derive from the time of each record, so nothing needs a reset job to start a new day.
"""

from __future__ import annotations

import calendar
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from django.conf import settings

DAILY, MONTHLY, FIXED = "daily", "monthly", "fixed"


@lru_cache(maxsize=8)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def budget_zone() -> ZoneInfo:
    return _zone(settings.BUDGET_TIMEZONE)


def local_date(at: datetime) -> date:
    return at.astimezone(budget_zone()).date()


def period_key(period: str, at: datetime, *, starts_on: date | None = None, ends_on: date | None = None) -> str | None:
    """The key of the period `at` falls in, or None when a fixed budget does not cover `at`."""
    return period_key_of_day(period, local_date(at), starts_on=starts_on, ends_on=ends_on)


def period_key_of_day(period: str, day: date, *, starts_on: date | None = None,
                      ends_on: date | None = None) -> str | None:
    """period_key for a local day already known (recording many entries converts each time once)."""
    if period == DAILY:
        return day.isoformat()
    if period == MONTHLY:
        return day.strftime("%Y-%m")
    if starts_on and ends_on and starts_on <= day <= ends_on:
        return FIXED
    return None


def budget_period_key(budget, at: datetime) -> str | None:
    return period_key(budget.period, at, starts_on=budget.starts_on, ends_on=budget.ends_on)


def _local_midnight_utc(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=budget_zone()).astimezone(ZoneInfo("UTC"))


def period_bounds(period: str, at: datetime, *, starts_on: date | None = None,
                  ends_on: date | None = None) -> tuple[datetime, datetime]:
    """UTC [start, end) of the period containing `at` (DST-aware: a day may last 23 or 25 hours)."""
    day = local_date(at)
    if period == DAILY:
        first, after = day, day + timedelta(days=1)
    elif period == MONTHLY:
        first = day.replace(day=1)
        after = first + timedelta(days=calendar.monthrange(first.year, first.month)[1])
    else:
        first, after = starts_on, ends_on + timedelta(days=1)
    return _local_midnight_utc(first), _local_midnight_utc(after)


def budget_period_bounds(budget, at: datetime) -> tuple[datetime, datetime]:
    return period_bounds(budget.period, at, starts_on=budget.starts_on, ends_on=budget.ends_on)


def budget_counts_from(budget) -> datetime | None:
    """The earliest time a budget counts: the start of the period it was created in (a budget made
    at 14:00 still weighs the morning's spend), or None for a fixed budget (its whole date range)."""
    if budget.period == FIXED or budget.created_at is None:
        return None
    return period_bounds(budget.period, budget.created_at)[0]
