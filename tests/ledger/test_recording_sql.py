"""On PostgreSQL the recording statement decides in SQL which budgets a record counts toward and in
which period (budgets.services.recording_counters_sql); checks, holds and the other databases decide it
in Python (budgets_applicable, budget_counts_from, period_key_of_day). Both must give the same answer
for every scope and period, at the edges of local days and months, on DST days, and for budgets
created after the record's day."""

from collections import defaultdict
from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from budgets.models import Budget
from budgets.periods import budget_counts_from, local_date, period_key_of_day
from budgets.services import SpendTarget, budgets_applicable
from tests.counters import counters_by_period
from tracking import services
from tracking.events import UsageEvent
from tracking.rebuild import counters_rebuild, rollups_rebuild

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]
NEW_YORK = ZoneInfo("America/New_York")


def local(*args, fold=0) -> datetime:
    return datetime(*args, tzinfo=NEW_YORK, fold=fold)


@pytest.fixture
def budgets(settings, team, other_team, researcher):
    settings.BUDGET_TIMEZONE = "America/New_York"
    for budget in [
        Budget(name="Team daily", scope="team", team=team, period="daily", limit_usd=100),
        Budget(name="Other team daily", scope="team", team=other_team, period="daily", limit_usd=100),
        Budget(name="Rita monthly", scope="user", user=researcher, period="monthly", limit_usd=100),
        Budget(name="Pathways daily", scope="category", research_category="pathway_analysis",
               period="daily", limit_usd=100),
        Budget(name="Literature monthly", scope="category", research_category="literature_search",
               period="monthly", limit_usd=100),
        Budget(name="gpt-4o daily", scope="model", model_name="gpt-4o", period="daily", limit_usd=100),
        Budget(name="Grant", scope="team", team=team, period="fixed", limit_usd=100,
               starts_on=date(2025, 3, 1), ends_on=date(2025, 3, 9)),
        Budget(name="Inactive", scope="organization", period="daily", limit_usd=100, is_active=False),
        Budget(name="New daily", scope="team", team=team, period="daily", limit_usd=100),
        Budget(name="New monthly", scope="team", team=team, period="monthly", limit_usd=100),
    ]:
        budget.save()
    old = local(2020, 1, 1)
    Budget.objects.exclude(name__startswith="New").update(created_at=old)
    # Created late on 9 March 2025 (local): the daily one counts from that day, the monthly from 1 March.
    Budget.objects.filter(name__startswith="New").update(created_at=local(2025, 3, 9, 22, 30))
    return list(Budget.objects.all())


# Local instants at the edges that matter: midnight, month ends, the 23-hour and 25-hour days of 2025.
INSTANTS = [local(2025, 2, 28, 23, 59, 59), local(2025, 3, 1, 0, 0, 0), local(2025, 3, 8, 23, 59, 59),
            local(2025, 3, 9, 0, 0, 0), local(2025, 3, 9, 3, 30), local(2025, 3, 9, 23, 59, 59),
            local(2025, 3, 10, 0, 0, 0), local(2025, 10, 31, 23, 59, 59), local(2025, 11, 2, 1, 30, fold=1),
            local(2025, 11, 2, 23, 59, 59), local(2025, 11, 3, 0, 0, 0)]
TARGETS = [("pathway_analysis", "gpt-4o"), ("literature_search", "gpt-4o-mini"), ("", ""), ("general", "gpt-4o")]


def expected_counters(events, user) -> dict[tuple[int, str], tuple[Decimal, int]]:
    """What the Python formulation says each budget period should hold."""
    totals: dict = defaultdict(lambda: [Decimal(0), 0])
    for event, team in events:
        target = SpendTarget(team.pk, user.pk, event.research_category, event.model_name)
        for budget in budgets_applicable(target=target):
            since = budget_counts_from(budget)
            if since is not None and event.occurred_at < since:
                continue
            key = period_key_of_day(budget.period, local_date(event.occurred_at), starts_on=budget.starts_on,
                                    ends_on=budget.ends_on)
            if key is not None:
                totals[(budget.pk, key)][0] += event.cost_usd
                totals[(budget.pk, key)][1] += 1
    return {key: (spent, calls) for key, (spent, calls) in totals.items()}


def stored_counters(budgets) -> dict[tuple[int, str], tuple[Decimal, int]]:
    return {(budget.pk, key): value for budget in budgets for key, value in counters_by_period(budget).items()}


@pytest.mark.parametrize("bulk", [False, True], ids=["one statement per record", "one statement for all"])
def test_the_recording_statement_counts_what_the_python_rules_say(budgets, researcher, team, bulk):
    events = []
    for index, instant in enumerate(INSTANTS):
        for offset, (category, model) in enumerate(TARGETS):
            cost = Decimal(index + 1) + Decimal(offset) / 100
            events.append(UsageEvent(cost_usd=cost, occurred_at=instant, research_category=category,
                                     model_name=model))
    if bulk:
        services.usage_record_many(user=researcher, events=events)
    else:
        for event in events:
            services.usage_record(user=researcher, event=event)
    expected = expected_counters([(event, team) for event in events], researcher)
    assert stored_counters(budgets) == expected
    # Spot checks of the rules themselves, so that both formulations cannot be wrong together.
    by_name = {budget.name: budget for budget in budgets}
    assert not counters_by_period(by_name["Inactive"]) and not counters_by_period(by_name["Other team daily"])
    assert set(counters_by_period(by_name["Grant"])) == {"fixed"}
    assert counters_by_period(by_name["Grant"])["fixed"][1] == 5 * len(TARGETS)  # 1 March 00:00 … 9 March 23:59:59
    assert min(counters_by_period(by_name["New daily"])) == "2025-03-09"
    assert min(counters_by_period(by_name["New monthly"])) == "2025-03"
    assert "2025-11-02" in counters_by_period(by_name["Team daily"])  # both halves of the 25-hour day
    assert counters_by_period(by_name["Team daily"])["2025-11-02"][1] == 2 * len(TARGETS)
    report = counters_rebuild(budgets=[b for b in budgets if b.is_active], write=False)
    assert not report.has_drift, report.counter_drift


def test_hourly_rollups_from_the_statement_match_the_records(budgets, researcher):
    events = [UsageEvent(cost_usd=Decimal("0.25"), occurred_at=instant + timedelta(minutes=minute),
                         research_category="pathway_analysis", model_name="gpt-4o", success=minute % 2 == 0,
                         response_time_ms=Decimal(100 + minute), batch_size=3 if minute == 5 else None,
                         success_count=2 if minute == 5 else None)
              for instant in INSTANTS[:3] for minute in range(0, 50, 5)]
    services.usage_record_many(user=researcher, events=events[:10])
    for event in events[10:]:
        services.usage_record(user=researcher, event=event)
    report = rollups_rebuild(write=False)
    assert report.rollups_drifted == 0 and report.rollups_actual == report.rollups_stored == 4  # 23:59:59 + 45 min
    assert report.rollup_totals_stored == report.rollup_totals_actual
    assert report.rollup_totals_stored["calls"] == 30 - 3 + 3 * 3  # the batch rows count their calls
