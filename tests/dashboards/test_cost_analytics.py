"""Cost analytics on a known week: series, totals, trend, forecast, categories and efficiency, each
checked against numbers worked out by hand (see the `week` fixture)."""

from __future__ import annotations

import pytest

from budgets import analytics

from .conftest import NOW

pytestmark = pytest.mark.django_db


def test_researcher_sees_the_daily_series_of_their_team_zero_filled_and_totalled(researcher, week):
    trends = analytics.get_cost_analytics(user=researcher, time_range="last_7_days", now=NOW)["trends"]
    assert trends["time_range"] == "last_7_days" and trends["granularity"] == "daily"
    assert trends["time_series"] == {"2025-03-14": 10.0, "2025-03-15": 12.0, "2025-03-16": 14.0,
                                     "2025-03-17": 16.0, "2025-03-18": 18.0, "2025-03-19": 20.0,
                                     "2025-03-20": 5.0}
    assert trends["total_cost"] == 95.0
    assert trends["average_cost"] == round(95 / 7, 6)
    assert trends["min_cost"] == 5.0 and trends["max_cost"] == 20.0


def test_a_steady_rise_is_an_increasing_trend_fitted_by_least_squares(researcher, week):
    trends = analytics.get_cost_analytics(user=researcher, time_range="last_7_days", now=NOW)["trends"]
    # Complete days 10, 12, …, 20: slope 2 per day over 6 days, mean 15 → 100 × 2 × 6 / 15; a perfect fit.
    assert trends["trend_analysis"] == {"trend_percentage": 80.0, "trend_direction": "increasing",
                                        "confidence": 1.0}
    # The fitted line continues 22, 24, 26 from today (the day still filling up) on; confidence R² × 6/(6+k).
    assert trends["forecast"] == [
        {"period": 1, "period_start": "2025-03-20", "projected_value": 22.0, "confidence": 0.86},
        {"period": 2, "period_start": "2025-03-21", "projected_value": 24.0, "confidence": 0.75},
        {"period": 3, "period_start": "2025-03-22", "projected_value": 26.0, "confidence": 0.67},
    ]


def test_flat_noisy_spend_is_stable_with_low_confidence():
    trend = analytics.trend_analysis([10.0, 14.0, 9.0, 13.0, 10.0, 14.0, 9.0, 13.0])
    assert trend["trend_direction"] == "stable"
    assert trend["confidence"] < 0.2


def test_a_falling_series_is_decreasing():
    trend = analytics.trend_analysis([30.0, 27.0, 25.0, 21.0, 20.0, 16.0, 14.0])
    assert trend["trend_direction"] == "decreasing" and trend["trend_percentage"] < 0
    assert 0.9 < trend["confidence"] <= 1.0


def test_categories_are_broken_down_with_calls_averages_and_percentages(researcher, week):
    categories = analytics.get_cost_analytics(user=researcher, time_range="last_7_days", now=NOW)[
        "category_analysis"]
    assert categories["category_breakdown"] == {"metabolite_identification": 78.0, "literature_search": 12.0,
                                                "data_validation": 5.0}
    assert categories["top_categories"] == [
        {"category": "metabolite_identification", "total_cost": 78.0, "total_calls": 6,
         "average_cost_per_call": 13.0, "percentage": round(78 / 95 * 100, 2)},
        {"category": "literature_search", "total_cost": 12.0, "total_calls": 6, "average_cost_per_call": 2.0,
         "percentage": round(12 / 95 * 100, 2)},
        {"category": "data_validation", "total_cost": 5.0, "total_calls": 1, "average_cost_per_call": 5.0,
         "percentage": round(5 / 95 * 100, 2)},
    ]


def test_short_prompts_on_an_expensive_model_and_failing_calls_are_savings(researcher, week):
    efficiency = analytics.get_cost_analytics(user=researcher, time_range="last_7_days", now=NOW)[
        "efficiency_analysis"]
    # 11,400 tokens (6 × 300 + 6 × 1,500 + 600) for $95; 10 successful calls.
    assert efficiency["cost_per_token"] == round(95 / 11400, 8)
    assert efficiency["cost_per_successful_operation"] == 9.5
    # gpt-4o, 200 prompt tokens per call: its 1,200 + 600 tokens cost $0.009 on gpt-4o and $0.00054 on
    # gpt-4o-mini, so 94% of its $78 could be saved. Half the literature_search calls failed: $6.
    model, errors = efficiency["optimization_opportunities"]
    assert model["type"] == "model_optimization" and model["model"] == "gpt-4o"
    assert model["research_category"] == "metabolite_identification"
    assert model["potential_savings"] == 73.32
    assert "gpt-4o-mini" in model["recommendation"]
    assert errors["type"] == "error_reduction" and errors["potential_savings"] == 6.0
    assert errors["research_category"] == "literature_search"
    # Avoidable = failed $6 + 94% of the successful gpt-4o $78 → score 100 × (1 − 79.32 / 95).
    assert efficiency["overall_efficiency_score"] == round(100 * (1 - 79.32 / 95), 1)


def test_long_prompts_are_not_flagged_for_a_cheaper_model(admin_user, other_team, week):
    efficiency = analytics.get_cost_analytics(user=admin_user, team_id=other_team.pk, time_range="last_7_days",
                                              now=NOW)["efficiency_analysis"]
    assert efficiency["optimization_opportunities"] == []
    assert efficiency["overall_efficiency_score"] == 100.0


def test_admin_sees_every_team_and_can_narrow_to_one(admin_user, other_team, week):
    everything = analytics.get_cost_analytics(user=admin_user, time_range="last_7_days", now=NOW)
    assert everything["trends"]["total_cost"] == 195.0
    assert everything["trends"]["time_series"]["2025-03-19"] == 120.0
    assert everything["category_analysis"]["category_breakdown"]["pathway_analysis"] == 100.0
    one = analytics.get_cost_analytics(user=admin_user, team_id=other_team.pk, time_range="last_7_days", now=NOW)
    assert one["trends"]["total_cost"] == 100.0
    assert one["category_analysis"]["category_breakdown"] == {"pathway_analysis": 100.0}


def test_hour_ranges_are_hourly_buckets_ending_with_the_current_hour(researcher, week):
    trends = analytics.get_cost_analytics(user=researcher, time_range="last_24_hours", now=NOW)["trends"]
    assert trends["granularity"] == "hourly"
    keys = list(trends["time_series"])
    assert len(keys) == 24 and keys[0] == "2025-03-19T16:00:00Z" and keys[-1] == "2025-03-20T15:00:00Z"
    assert trends["time_series"]["2025-03-20T09:00:00Z"] == 5.0 and trends["total_cost"] == 5.0
    last_hour = analytics.get_cost_analytics(user=researcher, time_range="last_hour", now=NOW)["trends"]
    assert list(last_hour["time_series"]) == ["2025-03-20T15:00:00Z"]


def test_current_month_is_zero_filled_from_the_first(researcher, week):
    analysis = analytics.get_cost_analytics(user=researcher, time_range="current_month", now=NOW,
                                            include_categories=False)
    series = analysis["trends"]["time_series"]
    assert len(series) == 20 and series["2025-03-01"] == 0.0 and series["2025-03-13"] == 0.0
    assert "category_analysis" not in analysis


def test_current_year_is_daily_and_refuses_hourly(researcher, week):
    from costmonitor.errors import InvalidParameters

    series = analytics.get_cost_analytics(user=researcher, time_range="current_year", now=NOW)["trends"][
        "time_series"]
    assert len(series) == 31 + 28 + 20 and sum(series.values()) == 95.0
    with pytest.raises(InvalidParameters) as refused:
        analytics.get_cost_analytics(user=researcher, time_range="current_year", granularity="hourly", now=NOW)
    assert "granularity" in refused.value.details


def test_days_are_cut_in_the_budget_timezone(researcher, team, settings):
    from .conftest import at, record

    settings.BUDGET_TIMEZONE = "America/New_York"  # UTC−4 after 9 March 2025
    record(researcher, team, at(20, 2), 7)  # 19 March, 22:00 in New York
    record(researcher, team, at(20, 5), 3)  # 20 March, 01:00 in New York
    series = analytics.get_cost_analytics(user=researcher, time_range="last_7_days", now=NOW)["trends"][
        "time_series"]
    assert series["2025-03-19"] == 7.0 and series["2025-03-20"] == 3.0


def test_a_late_record_for_a_closed_day_shows_at_once(researcher, team, week):
    from .conftest import at, record

    first = analytics.get_cost_analytics(user=researcher, time_range="last_7_days", now=NOW)["trends"]
    assert first["time_series"]["2025-03-16"] == 14.0
    record(researcher, team, at(16, 20), 1.5)  # the SDK's outbox resends a call from four days ago
    again = analytics.get_cost_analytics(user=researcher, time_range="last_7_days", now=NOW)["trends"]
    assert again["time_series"]["2025-03-16"] == 15.5 and again["total_cost"] == 96.5


def test_closed_days_read_from_the_cache_answer_like_the_rollups(admin_user, week):
    from django.core.cache import cache

    cold = analytics.get_cost_report(user=admin_user, start_date="2025-03-14", end_date="2025-03-20", now=NOW)
    warm = analytics.get_cost_report(user=admin_user, start_date="2025-03-14", end_date="2025-03-20", now=NOW)
    cache.clear()
    assert warm == cold == analytics.get_cost_report(user=admin_user, start_date="2025-03-14",
                                                     end_date="2025-03-20", now=NOW)
