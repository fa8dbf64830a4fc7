"""Research analysis and the performance summary on the known week."""

from __future__ import annotations

import pytest

from budgets import analytics

from .conftest import NOW, at, record

pytestmark = pytest.mark.django_db


def test_research_analysis_ranks_categories_and_reads_the_trends(researcher, week):
    analysis = analytics.get_research_analysis(user=researcher, days=7, now=NOW)
    assert analysis["analysis_period"] == {"days": 7, "start_date": "2025-03-14", "end_date": "2025-03-20"}
    assert analysis["total_cost"] == 95.0 and analysis["total_calls"] == 13
    assert analysis["category_breakdown"] == {"metabolite_identification": 78.0, "literature_search": 12.0,
                                              "data_validation": 5.0}
    assert analysis["top_categories"][0] == {"category": "metabolite_identification", "total_cost": 78.0,
                                             "total_calls": 6, "percentage": round(78 / 95 * 100, 2),
                                             "avg_cost_per_call": 13.0}
    # Cost per successful call: literature_search 12/3 = 4, data_validation 5/1 = 5, metabolite 78/6 = 13.
    assert analysis["efficiency_metrics"]["most_efficient_category"] == "literature_search"
    assert analysis["efficiency_metrics"]["least_efficient_category"] == "metabolite_identification"
    assert analysis["efficiency_metrics"]["overall_efficiency_score"] == round(100 * (1 - 79.32 / 95), 1)
    # Complete days cost 10 … 20 (rising) with 2 calls each (flat).
    assert analysis["trends"]["cost_trend"] == "increasing" and analysis["trends"]["usage_trend"] == "stable"


def test_performance_summary_covers_this_hour_and_today(researcher, team, week):
    # A batch this hour: 10 calls, 8 succeeded, $1 for 800 + 200 tokens, 2 s.
    record(researcher, team, at(20, 15, 10), 1, model="gpt-4o", category="data_validation", prompt=800,
           completion=200, batch_size=10, success_count=8, response_time_ms=2000)
    summary = analytics.get_performance_summary(user=researcher, now=NOW)
    assert summary["current_hour"] == {
        "total_calls": 10, "successful_calls": 8, "failed_calls": 2, "total_cost": 1.0, "avg_cost_per_call": 0.1,
        "total_tokens": 1000, "avg_tokens_per_call": 100.0, "avg_response_time_ms": 2000.0,
        "error_rate_percent": 20.0}
    # Today adds the 09:00 call: 11 calls, $6, 1,600 tokens.
    assert summary["current_day"] == {
        "total_calls": 11, "successful_calls": 9, "failed_calls": 2, "total_cost": 6.0,
        "avg_cost_per_call": round(6 / 11, 6), "total_tokens": 1600, "avg_response_time_ms": 2000.0,
        "error_rate_percent": round(2 / 11 * 100, 2)}
    assert summary["model_breakdown"] == {"gpt-4o-mini": {"total_calls": 1, "total_cost": 5.0, "success_rate": 100.0},
                                          "gpt-4o": {"total_calls": 10, "total_cost": 1.0, "success_rate": 80.0}}
    assert summary["category_breakdown"] == {"data_validation": {"total_calls": 11, "total_cost": 6.0,
                                                                 "avg_cost_per_call": round(6 / 11, 6)}}


def test_performance_metrics_measure_this_hour_the_process_and_the_database(researcher, team):
    record(researcher, team, at(20, 15, 10), 1, batch_size=30, success_count=30)
    metrics = analytics.get_performance_metrics(user=researcher, now=NOW)["performance_summary"]
    assert metrics["current_hour"]["total_calls"] == 30
    assert metrics["current_hour"]["throughput_per_minute"] == 1.0  # 30 calls in the 30 minutes since 15:00
    assert metrics["system_resources"]["memory_usage_mb"] > 0
    assert metrics["system_resources"]["disk_usage_mb"] > 0
    assert 0 <= metrics["system_resources"]["cpu_usage_percent"] <= 100
    database = metrics["database_performance"]
    assert database["avg_query_time_ms"] > 0 and database["total_connections"] >= database["connection_pool_usage"] >= 1
