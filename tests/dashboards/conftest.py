"""A known data set for the dashboards: records at fixed times across days, models, categories and
teams, recorded through tracking.services like the API does, with fixed model prices (overrides) so
the expected numbers can be worked out by hand in each test."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from budgets.models import Budget
from tracking import services
from tracking.events import UsageEvent
from tracking.models import ModelPriceOverride

# Thursday 20 March 2025, 15:30 UTC: "now" for every test that passes `now` explicitly.
NOW = datetime(2025, 3, 20, 15, 30, tzinfo=UTC)


def at(day: int, hour: int, minute: int = 0, month: int = 3) -> datetime:
    return datetime(2025, month, day, hour, minute, tzinfo=UTC)


def record(user, team, when: datetime, cost, *, model="gpt-4o-mini", category="literature_search",
           prompt=0, completion=0, success=True, response_time_ms=None, batch_size=None, success_count=None):
    event = UsageEvent(cost_usd=Decimal(str(cost)), occurred_at=when, team_id=team.pk, model_name=model,
                       research_category=category, prompt_tokens=prompt, completion_tokens=completion,
                       total_tokens=prompt + completion, success=success,
                       response_time_ms=None if response_time_ms is None else Decimal(str(response_time_ms)),
                       batch_size=batch_size, success_count=success_count,
                       error_count=None if batch_size is None else batch_size - success_count,
                       is_batch=batch_size is not None)
    return services.usage_record(user=user, event=event)


@pytest.fixture(autouse=True)
def _organisation_budgets_since_2020(db):
    """Budgets count spend from the period they were created in; the data set lies in 2025, so the
    organisation's budgets (made by a migration when the test database was) are dated back."""
    Budget.objects.filter(is_global_default=True).update(created_at=datetime(2020, 1, 1, tzinfo=UTC),
                                                         limit_usd=Decimal("50"))
    Budget.objects.filter(is_global_default=True, period=Budget.Period.MONTHLY).update(limit_usd=Decimal("1000"))


@pytest.fixture
def fixed_prices(db):
    """gpt-4o at $2.50 / $10 per million prompt / completion tokens, gpt-4o-mini at $0.15 / $0.60."""
    since = datetime(2020, 1, 1, tzinfo=UTC)
    ModelPriceOverride.objects.create(model_name="gpt-4o", input_per_million_usd=Decimal("2.5"),
                                      output_per_million_usd=Decimal("10"), effective_from=since)
    ModelPriceOverride.objects.create(model_name="gpt-4o-mini", input_per_million_usd=Decimal("0.15"),
                                      output_per_million_usd=Decimal("0.6"), effective_from=since)


@pytest.fixture
def week(researcher, team, outsider, other_team, fixed_prices):
    """Six complete days (14–19 March) and the morning of the 20th.

    The researcher's team, day i = 0…5 (14 + i March):
      10:00 gpt-4o,      metabolite_identification  cost 8 + 2i, 200 prompt + 100 completion tokens, ok
      14:00 gpt-4o-mini, literature_search          cost 2, 1000 + 500 tokens, failing on odd i
    → day totals 10, 12, 14, 16, 18, 20; today 09:00: gpt-4o-mini, data_validation, cost 5, 600 tokens.
    The other team: 19 March 11:00, gpt-4o, pathway_analysis, cost 100, 4000 + 1000 tokens.
    """
    for i in range(6):
        record(researcher, team, at(14 + i, 10), 8 + 2 * i, model="gpt-4o", category="metabolite_identification",
               prompt=200, completion=100, response_time_ms=1000)
        record(researcher, team, at(14 + i, 14), 2, model="gpt-4o-mini", category="literature_search",
               prompt=1000, completion=500, success=i % 2 == 0, response_time_ms=500)
    record(researcher, team, at(20, 9), 5, model="gpt-4o-mini", category="data_validation", prompt=600)
    record(outsider, other_team, at(19, 11), 100, model="gpt-4o", category="pathway_analysis", prompt=4000,
           completion=1000)
