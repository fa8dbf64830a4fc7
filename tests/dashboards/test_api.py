"""The dashboard endpoints over HTTP with real API keys: the reference's shapes field for field,
team scoping by role, the cost report as JSON and as a streamed CSV file, and bad parameters."""

from __future__ import annotations

import csv
import io

import pytest
from django.utils import timezone

from .conftest import record

pytestmark = pytest.mark.django_db

OVERVIEW_METRICS = {
    "budget_health_score", "budget_health_status", "daily_cost", "daily_budget", "daily_percentage", "monthly_cost",
    "monthly_budget", "monthly_percentage", "daily_projected_cost", "monthly_projected_cost",
    "cost_trend_percentage", "cost_trend_direction", "active_alerts", "critical_alerts", "circuit_breakers_healthy",
    "circuit_breakers_open", "total_api_calls", "average_response_time", "error_rate_percentage", "tokens_consumed",
    "system_uptime", "monitoring_active", "last_update_time"}


@pytest.fixture
def today(researcher, team, outsider, other_team):
    """$3 for the researcher's team and $7 for the other team, just now."""
    now = timezone.now()
    record(researcher, team, now, 3, category="pathway_analysis")
    record(outsider, other_team, now, 7, category="data_validation")


def _data(answer):
    assert answer.status_code == 200, answer.content
    body = answer.json()
    assert body["status"] == "success" and set(body["meta"]) >= {"timestamp", "request_id", "version"}
    return body["data"]


def test_overview_has_the_reference_shape_field_for_field(researcher_client, today):
    data = _data(researcher_client.get("/api/v1/dashboard/overview"))
    assert set(data) == {"metrics", "system_health", "recent_alerts", "trends"}
    assert set(data["metrics"]) == OVERVIEW_METRICS
    assert set(data["system_health"]) == {"overall_status", "components"}
    assert set(data["system_health"]["components"]) == {"budget_manager", "real_time_monitor", "circuit_breakers",
                                                        "alert_system"}
    assert all(set(c) == {"status"} for c in data["system_health"]["components"].values())
    assert set(data["trends"]["spending_trends"]) == {"daily_average", "weekly_average", "trend_direction"}
    assert isinstance(data["recent_alerts"], list)


def test_researcher_sees_only_their_teams_spend(researcher_client, today):
    assert _data(researcher_client.get("/api/v1/dashboard/overview"))["metrics"]["daily_cost"] == 3.0
    analytics = _data(researcher_client.get("/api/v1/analytics/costs?time_range=last_24_hours"))
    assert analytics["trends"]["total_cost"] == 3.0
    assert analytics["category_analysis"]["category_breakdown"] == {"pathway_analysis": 3.0}


def test_admin_sees_everything_and_filters_by_team(admin_client, other_team, today):
    assert _data(admin_client.get("/api/v1/dashboard/overview"))["metrics"]["daily_cost"] == 10.0
    narrowed = _data(admin_client.get(f"/api/v1/dashboard/overview?team={other_team.pk}"))
    assert narrowed["metrics"]["daily_cost"] == 7.0
    report = _data(admin_client.get(f"/api/v1/analytics/research?days=1&team={other_team.pk}"))
    assert report["category_breakdown"] == {"data_validation": 7.0}


def test_researcher_cannot_look_at_another_team(researcher_client, other_team, today):
    answer = researcher_client.get(f"/api/v1/analytics/costs?team={other_team.pk}")
    assert answer.status_code == 403 and answer.json()["error"]["code"] == "PERMISSION_DENIED"


def test_an_unknown_team_is_an_invalid_parameter(admin_client, today):
    for query in ("team=999999", "team=abc"):
        answer = admin_client.get(f"/api/v1/dashboard/overview?{query}")
        assert answer.status_code == 400 and "team" in answer.json()["error"]["details"], query


def test_dashboards_need_an_api_key(anon_client):
    for path in ("/api/v1/dashboard/overview", "/api/v1/analytics/costs", "/api/v1/reports/costs",
                 "/api/v1/analytics/research", "/api/v1/metrics/performance-summary", "/api/v1/system/performance",
                 "/api/v1/budget/status"):
        assert anon_client.get(path).status_code == 401, path


def test_budget_status_endpoint_answers_with_projections(researcher_client, today):
    data = _data(researcher_client.get("/api/v1/budget/status?include_projections=true"))
    assert data["budget_summary"]["daily_budget"]["total_cost"] == 3.0
    assert set(data["projections"]) == {"daily", "monthly"}
    assert set(data["projections"]["monthly"]) == {"projected_cost", "confidence", "projection_method"}
    assert 0 <= data["projections"]["daily"]["confidence"] <= 1


def test_every_analytics_option_of_the_reference_answers(researcher_client, today):
    for time_range in ("last_hour", "last_6_hours", "last_24_hours", "last_7_days", "last_30_days", "current_month",
                       "current_year"):
        data = _data(researcher_client.get(f"/api/v1/analytics/costs?time_range={time_range}"
                                           "&include_categories=true"))
        assert data["trends"]["total_cost"] == 3.0, time_range
        assert set(data) == {"trends", "category_analysis", "efficiency_analysis"}
    hourly = _data(researcher_client.get("/api/v1/analytics/costs?time_range=last_7_days&granularity=hourly"))
    assert len(hourly["trends"]["time_series"]) >= 6 * 24 + 1


@pytest.mark.parametrize("query, field", [
    ("time_range=last_decade", "time_range"),
    ("time_range=last_7_days&granularity=weekly", "granularity"),
    ("time_range=current_year&granularity=hourly", "granularity"),
    ("include_categories=perhaps", "include_categories"),
])
def test_bad_analytics_parameters_name_the_field(researcher_client, query, field):
    answer = researcher_client.get(f"/api/v1/analytics/costs?{query}")
    assert answer.status_code == 400, answer.content
    assert answer.json()["error"]["code"] == "INVALID_PARAMETERS" and field in answer.json()["error"]["details"]


def test_cost_report_json_matches_the_week(researcher_client, week):
    data = _data(researcher_client.get("/api/v1/reports/costs?start_date=2025-03-14&end_date=2025-03-20"))
    report = data["cost_report"]
    assert report["summary"] == {"total_cost": 95.0, "total_calls": 13, "success_rate": round(10 / 13 * 100, 2),
                                 "avg_cost_per_call": round(95 / 13, 6),
                                 "date_range": {"start": "2025-03-14T00:00:00Z", "end": "2025-03-20T23:59:59Z"}}
    assert report["daily_costs"] == {"2025-03-14": 10.0, "2025-03-15": 12.0, "2025-03-16": 14.0,
                                     "2025-03-17": 16.0, "2025-03-18": 18.0, "2025-03-19": 20.0, "2025-03-20": 5.0}
    assert report["category_breakdown"]["metabolite_identification"] == {"cost": 78.0, "calls": 6,
                                                                         "percentage": round(78 / 95 * 100, 2)}
    assert report["model_breakdown"] == {"gpt-4o": {"cost": 78.0, "calls": 6, "avg_cost": 13.0},
                                         "gpt-4o-mini": {"cost": 17.0, "calls": 7, "avg_cost": round(17 / 7, 6)}}
    hours = report["hourly_distribution"]
    assert list(hours) == [f"{h:02d}" for h in range(24)]
    assert (hours["10"], hours["14"], hours["09"], hours["11"]) == (78.0, 12.0, 5.0, 0.0)


def test_cost_report_with_datetimes_keeps_the_hours_inside(researcher_client, week):
    data = _data(researcher_client.get(
        "/api/v1/reports/costs?start_date=2025-03-19T12:00:00Z&end_date=2025-03-20T23:59:59Z&format=json"))
    # 19 March 14:00 ($2) and 20 March 09:00 ($5); the 10:00 call of the 19th is before the start.
    assert data["cost_report"]["summary"]["total_cost"] == 7.0


def test_cost_report_csv_is_a_streamed_spreadsheet_file(admin_client, week):
    answer = admin_client.get("/api/v1/reports/costs?start_date=2025-03-14&end_date=2025-03-20&format=csv")
    assert answer.status_code == 200 and answer.streaming
    assert answer["Content-Type"] == "text/csv; charset=utf-8"
    assert answer["Content-Disposition"] == 'attachment; filename="costmonitor-report-2025-03-14-2025-03-20.csv"'
    text = b"".join(answer.streaming_content).decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["date", "team", "model", "research_category", "calls", "successful_calls", "failed_calls",
                       "prompt_tokens", "completion_tokens", "total_tokens", "cost_usd"]
    body = rows[1:]
    assert len(body) == 6 * 2 + 1 + 1  # two lines a day for six days, today's call, the other team's day
    assert body[0] == ["2025-03-14", "Metabolomics", "gpt-4o", "metabolite_identification", "1", "1", "0", "200",
                       "100", "300", "8.000000"]
    assert body[3] == ["2025-03-15", "Metabolomics", "gpt-4o-mini", "literature_search", "1", "0", "1", "1000",
                       "500", "1500", "2.000000"]
    assert ["2025-03-19", "Proteomics", "gpt-4o", "pathway_analysis", "1", "1", "0", "4000", "1000", "5000",
            "100.000000"] in body
    assert sum(float(row[-1]) for row in body) == 195.0


def test_csv_rows_stay_within_the_researchers_team_and_cannot_run_formulas(researcher, team, researcher_client):
    from .conftest import at

    record(researcher, team, at(14, 10), 1, category="=HYPERLINK(\"http://x\")")
    answer = researcher_client.get("/api/v1/reports/costs?start_date=2025-03-14&end_date=2025-03-14&format=csv")
    rows = list(csv.reader(io.StringIO(b"".join(answer.streaming_content).decode("utf-8-sig"))))
    assert rows[1][3] == "'=HYPERLINK(\"http://x\")"


@pytest.mark.parametrize("query, field", [
    ("start_date=2025-03-20&end_date=2025-03-14", "end_date"),
    ("start_date=yesterday", "start_date"),
    ("start_date=2025-02-30", "start_date"),
    ("start_date=2024-01-01&end_date=2025-03-14", "end_date"),
    ("start_date=2025-03-01&format=xml", "format"),
    # At the ends of the calendar: the day after, or the UTC instant, is out of Python's range.
    ("start_date=9999-12-30&end_date=9999-12-31", "end_date"),
    ("end_date=9999-12-31", "end_date"),
    ("end_date=0001-01-01T00:00:00%2B05:00", "end_date"),
    ("start_date=0001-01-01T00:00:00%2B05:00&end_date=0001-01-01T00:00:00%2B05:00", "start_date"),
])
def test_bad_report_ranges_are_invalid_parameters(researcher_client, query, field):
    for output in ("json", "csv"):
        answer = researcher_client.get(f"/api/v1/reports/costs?{query}&format={output}"
                                       if "format=" not in query else f"/api/v1/reports/costs?{query}")
        assert answer.status_code == 400, answer.content
        error = answer.json()["error"]
        assert error["code"] == "INVALID_PARAMETERS" and field in error["details"], (query, output)


def test_research_analysis_refuses_nonsense_days(researcher_client):
    for days in ("0", "400", "ten"):
        answer = researcher_client.get(f"/api/v1/analytics/research?days={days}")
        assert answer.status_code == 400 and "days" in answer.json()["error"]["details"], days


def test_performance_endpoints_answer_in_the_reference_shapes(researcher_client, today):
    summary = _data(researcher_client.get("/api/v1/metrics/performance-summary"))
    assert set(summary) == {"current_hour", "current_day", "model_breakdown", "category_breakdown"}
    assert summary["current_day"]["total_cost"] == 3.0
    system = _data(researcher_client.get("/api/v1/system/performance"))["performance_summary"]
    assert set(system) == {"current_hour", "system_resources", "database_performance"}
    assert set(system["current_hour"]) == {"total_calls", "avg_response_time_ms", "error_rate_percent",
                                           "throughput_per_minute"}
    assert set(system["system_resources"]) == {"memory_usage_mb", "cpu_usage_percent", "disk_usage_mb"}
    assert set(system["database_performance"]) == {"avg_query_time_ms", "connection_pool_usage", "total_connections"}


def test_dashboards_are_rate_limited_per_user(researcher_client, settings):
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "dashboard": "2/min"}
    assert researcher_client.get("/api/v1/dashboard/overview").status_code == 200
    assert researcher_client.get("/api/v1/analytics/costs").status_code == 200
    answer = researcher_client.get("/api/v1/reports/costs")
    assert answer.status_code == 429 and answer.json()["error"]["code"] == "RATE_LIMIT_EXCEEDED"
