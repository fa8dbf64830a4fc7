"""Budget periods cut in a non-UTC BUDGET_TIMEZONE: local midnight separates days, months roll over,
DST days last 23 or 25 hours — and nothing needs a reset job, the period derives from each record."""

from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from budgets.models import Budget
from budgets.periods import period_bounds
from budgets.services import budget_states
from tests.counters import counter_total, counters_by_period
from tests.ledger.helpers import record

pytestmark = pytest.mark.django_db
NEW_YORK = ZoneInfo("America/New_York")


@pytest.fixture
def new_york(settings):
    settings.BUDGET_TIMEZONE = "America/New_York"


@pytest.fixture
def lab_budgets(team):
    """Daily and monthly budgets that have existed long enough to count the (past) records below."""
    daily = Budget.objects.create(name="Lab daily", scope="team", team=team, period="daily", limit_usd=100)
    monthly = Budget.objects.create(name="Lab monthly", scope="team", team=team, period="monthly", limit_usd=1000)
    Budget.objects.filter(pk__in=[daily.pk, monthly.pk]).update(created_at=datetime(2020, 1, 1, tzinfo=NEW_YORK))
    daily.refresh_from_db()
    monthly.refresh_from_db()
    return daily, monthly


def local(*args) -> datetime:
    return datetime(*args, tzinfo=NEW_YORK)


def counters(budget) -> dict[str, tuple[Decimal, int]]:
    return counters_by_period(budget)


def test_one_second_before_and_at_local_midnight_fall_in_different_days(new_york, researcher, lab_budgets):
    daily, monthly = lab_budgets
    before, after = local(2025, 8, 6, 23, 59, 59), local(2025, 8, 7, 0, 0, 0)
    # In UTC both are on 7 August (03:59:59Z and 04:00:00Z): only the local cut separates them.
    assert before.astimezone(ZoneInfo("UTC")).date() == after.astimezone(ZoneInfo("UTC")).date()
    record(researcher, cost="1.50", occurred_at=before)
    record(researcher, cost="2.25", occurred_at=after)
    assert counters(daily) == {"2025-08-06": (Decimal("1.50"), 1), "2025-08-07": (Decimal("2.25"), 1)}
    assert counters(monthly) == {"2025-08": (Decimal("3.75"), 2)}


def test_a_new_day_starts_empty_without_any_reset(new_york, researcher, lab_budgets):
    daily, _ = lab_budgets
    record(researcher, cost="90", occurred_at=local(2025, 8, 6, 22, 0))
    (state,) = budget_states(budgets=[daily], at=local(2025, 8, 6, 23, 59, 59))
    assert state.spent == Decimal("90")
    (state,) = budget_states(budgets=[daily], at=local(2025, 8, 7, 0, 0, 0))
    assert (state.period_key, state.spent) == ("2025-08-07", 0)


def test_the_month_rolls_over_at_local_midnight(new_york, researcher, lab_budgets):
    _, monthly = lab_budgets
    record(researcher, cost="5", occurred_at=local(2025, 8, 31, 23, 59, 59))
    record(researcher, cost="7", occurred_at=local(2025, 9, 1, 0, 0, 0))
    assert counters(monthly) == {"2025-08": (Decimal("5"), 1), "2025-09": (Decimal("7"), 1)}
    start, end = period_bounds("monthly", local(2025, 9, 15, 12, 0))
    assert (start, end) == (local(2025, 9, 1), local(2025, 10, 1))


@pytest.mark.parametrize("day, hours", [((2025, 3, 9), 23), ((2025, 11, 2), 25), ((2025, 8, 6), 24)])
def test_dst_change_days_last_23_or_25_hours(new_york, day, hours):
    start, end = period_bounds("daily", local(*day, 12, 0))
    assert end - start == timedelta(hours=hours)
    assert start == local(*day) and end == local(*day) + timedelta(days=1)


def test_both_ends_of_the_25_hour_day_count_in_that_day(new_york, researcher, lab_budgets):
    daily, _ = lab_budgets
    first = local(2025, 11, 2, 0, 30)
    last = first.astimezone(ZoneInfo("UTC")) + timedelta(hours=24)  # 23:30 local: clocks fell back in between
    assert last.astimezone(NEW_YORK).strftime("%d %H:%M") == "02 23:30"
    record(researcher, cost="1", occurred_at=first)
    record(researcher, cost="1", occurred_at=last)
    assert counters(daily) == {"2025-11-02": (Decimal("2"), 2)}


def test_a_fixed_grant_budget_counts_only_inside_its_dates(new_york, researcher, team):
    grant = Budget.objects.create(name="Grant", scope="team", team=team, period="fixed", limit_usd=500,
                                  starts_on=date(2025, 8, 1), ends_on=date(2025, 8, 31))
    record(researcher, cost="3", occurred_at=local(2025, 7, 31, 23, 59, 59))
    record(researcher, cost="4", occurred_at=local(2025, 8, 1, 0, 0, 0))
    record(researcher, cost="5", occurred_at=local(2025, 8, 31, 23, 59, 59))
    record(researcher, cost="6", occurred_at=local(2025, 9, 1, 0, 0, 0))
    assert counters(grant) == {"fixed": (Decimal("9"), 2)}


def test_utc_is_the_default_cut(researcher, lab_budgets):
    daily, _ = lab_budgets
    record(researcher, cost="1", occurred_at=datetime(2025, 8, 6, 23, 59, 59, tzinfo=ZoneInfo("UTC")))
    record(researcher, cost="1", occurred_at=datetime(2025, 8, 7, 0, 0, 0, tzinfo=ZoneInfo("UTC")))
    assert set(counters(daily)) == {"2025-08-06", "2025-08-07"}


def test_a_budget_created_mid_day_weighs_the_spend_already_recorded_that_day(admin_client, researcher, team):
    from django.utils import timezone

    record(researcher, cost="15", occurred_at=timezone.now() - timedelta(seconds=5))
    answer = admin_client.post("/api/v1/budgets/", {"name": "Late", "scope": "team", "team": team.pk,
                                                    "period": "daily", "limit_usd": 20}, format="json")
    assert answer.status_code == 201, answer.content
    counter = counter_total(answer.json()["data"]["id"])
    assert (counter.spent, counter.calls) == (Decimal("15"), 1)


def test_spending_trends_after_a_23_hour_day_cover_only_their_days(new_york, researcher):
    from budgets.selectors import spending_trends

    # The day after clocks go forward: "the last 2 days" are Sunday 8 and Monday 9 March, not Saturday.
    record(researcher, cost="1", occurred_at=local(2026, 3, 7, 12, 0))
    record(researcher, cost="1", occurred_at=local(2026, 3, 9, 0, 10))
    now = local(2026, 3, 9, 0, 30).astimezone(ZoneInfo("UTC"))  # as timezone.now() gives it
    trends = spending_trends(user=researcher, days=2, at=now)
    assert trends["daily_costs"] == {"2026-03-08": 0.0, "2026-03-09": 1.0}
    assert trends["cost_distribution"] == {"weekdays": 100.0, "weekends": 0.0}
    assert trends["peak_usage_hours"] == [0]
