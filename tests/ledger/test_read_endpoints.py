"""The read side: the usage list (filters, cursor pages, team scoping), budget CRUD with visibility
and audit, get_budget_summary, get_spending_trends and get_budget_status in the reference's shapes."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from budgets.models import AuditLog, Budget
from tests.ledger.helpers import record

pytestmark = pytest.mark.django_db


def test_researcher_lists_only_their_teams_records(researcher, outsider, researcher_client):
    mine = record(researcher, cost="0.10", model_name="gpt-4o")
    record(outsider, cost="9.00", model_name="gpt-4o")
    answer = researcher_client.get("/api/v1/costs/")
    assert answer.status_code == 200, answer.content
    ids = [row["id"] for row in answer.json()["data"]["results"]]
    assert ids == [mine.pk]


def test_researcher_cannot_see_another_teams_records_even_when_filtering_by_it(outsider, other_team,
                                                                                researcher_client):
    record(outsider, cost="1.00")
    answer = researcher_client.get(f"/api/v1/costs/?team={other_team.pk}")
    assert answer.status_code == 200
    assert answer.json()["data"]["results"] == []


def test_admin_filters_records_by_model_category_success_experiment_and_time(admin_user, admin_client):
    now = timezone.now()
    wanted = record(admin_user, cost="0.5", model_name="gpt-4o", research_category="pathway_analysis",
                    experiment="exp-7", success=False, occurred_at=now - timedelta(hours=2))
    record(admin_user, cost="0.5", model_name="gpt-4o-mini", research_category="pathway_analysis",
           experiment="exp-7", success=False, occurred_at=now - timedelta(hours=2))
    record(admin_user, cost="0.5", model_name="gpt-4o", research_category="literature_search",
           experiment="exp-7", success=False, occurred_at=now - timedelta(hours=2))
    record(admin_user, cost="0.5", model_name="gpt-4o", research_category="pathway_analysis",
           experiment="exp-7", success=True, occurred_at=now - timedelta(hours=2))
    record(admin_user, cost="0.5", model_name="gpt-4o", research_category="pathway_analysis",
           experiment="exp-8", success=False, occurred_at=now - timedelta(hours=2))
    record(admin_user, cost="0.5", model_name="gpt-4o", research_category="pathway_analysis",
           experiment="exp-7", success=False, occurred_at=now - timedelta(days=3))
    start = (now - timedelta(days=1)).isoformat()
    answer = admin_client.get("/api/v1/costs/", {"model": "gpt-4o", "category": "pathway_analysis",
                                                 "success": "false", "experiment": "exp-7", "start": start,
                                                 "user": admin_user.pk})
    assert answer.status_code == 200, answer.content
    assert [row["id"] for row in answer.json()["data"]["results"]] == [wanted.pk]


def test_record_list_pages_with_a_cursor_newest_first(admin_user, admin_client):
    base = timezone.now() - timedelta(hours=1)
    created = [record(admin_user, cost="0.01", occurred_at=base + timedelta(seconds=i)) for i in range(7)]
    seen, url = [], "/api/v1/costs/?page_size=3"
    while url:
        page = admin_client.get(url).json()["data"]
        seen += [row["id"] for row in page["results"]]
        url = page["next"]
    assert seen == [r.pk for r in reversed(created)]


def test_a_bad_record_filter_names_the_field(admin_client):
    answer = admin_client.get("/api/v1/costs/", {"start": "yesterday-ish"})
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "INVALID_PARAMETERS"
    assert "start" in answer.json()["error"]["details"]


def test_admin_creates_a_team_budget_and_the_change_is_audited(admin_user, admin_client, team):
    answer = admin_client.post("/api/v1/budgets/", {"name": "Metabolomics daily", "scope": "team", "team": team.pk,
                                                    "period": "daily", "limit_usd": "20.00"}, format="json")
    assert answer.status_code == 201, answer.content
    budget = Budget.objects.get(pk=answer.json()["data"]["id"])
    assert budget.limit_usd == Decimal("20") and budget.enforcement == "hard"
    answer = admin_client.patch(f"/api/v1/budgets/{budget.pk}/", {"limit_usd": "25.5"}, format="json")
    assert answer.status_code == 200, answer.content
    audit = AuditLog.objects.filter(object_type="Budget", object_id=str(budget.pk), action="budget.updated").get()
    assert audit.actor == admin_user
    assert [Decimal(v) for v in audit.changes["limit_usd"]] == [Decimal("20"), Decimal("25.5")]
    assert admin_client.delete(f"/api/v1/budgets/{budget.pk}").status_code == 204
    assert AuditLog.objects.filter(object_id=str(budget.pk), action="budget.deleted").exists()


def test_a_team_budget_without_a_team_is_refused_naming_the_field(admin_client):
    answer = admin_client.post("/api/v1/budgets/", {"name": "x", "scope": "team", "period": "daily",
                                                    "limit_usd": 5}, format="json")
    assert answer.status_code == 400
    assert "team" in answer.json()["error"]["details"]
    assert not Budget.objects.filter(name="x").exists()


@pytest.mark.parametrize("body, field", [
    ({"limit_usd": -1}, "limit_usd"),
    ({"period": "fixed"}, "ends_on"),
    ({"period": "fixed", "starts_on": "2025-09-01", "ends_on": "2025-08-01"}, "ends_on"),
    ({"warning_percentage": 95, "critical_percentage": 90}, "critical_percentage"),
    ({"scope": "organization", "research_category": "x"}, "research_category"),
    ({"limit_usd": "1.0000001"}, "limit_usd"),
])
def test_invalid_budgets_are_refused_naming_the_field(admin_client, body, field):
    answer = admin_client.post("/api/v1/budgets/", {"name": "bad", "scope": "organization", "period": "daily",
                                                    "limit_usd": 5, **body}, format="json")
    assert answer.status_code == 400, answer.content
    assert field in answer.json()["error"]["details"], answer.json()
    assert not Budget.objects.filter(name="bad").exists()


def test_a_fixed_grant_budget_is_created_with_its_dates(admin_client):
    answer = admin_client.post("/api/v1/budgets/", {"name": "Grant 42", "scope": "organization", "period": "fixed",
                                                    "starts_on": "2025-01-01", "ends_on": "2025-12-31",
                                                    "limit_usd": 5000, "enforcement": "soft"}, format="json")
    assert answer.status_code == 201, answer.content


def test_researcher_cannot_create_change_or_delete_budgets(researcher_client):
    daily = Budget.objects.get(is_global_default=True, period="daily")
    assert researcher_client.post("/api/v1/budgets/", {"name": "mine", "scope": "organization", "period": "daily",
                                                       "limit_usd": 1000}, format="json").status_code == 403
    assert researcher_client.patch(f"/api/v1/budgets/{daily.pk}/", {"limit_usd": 9999},
                                   format="json").status_code == 403
    assert researcher_client.delete(f"/api/v1/budgets/{daily.pk}/").status_code == 403
    daily.refresh_from_db()
    assert daily.limit_usd == Decimal("50")


def test_researcher_sees_organisation_team_own_category_budgets_but_not_other_teams(
        researcher, outsider, team, other_team, researcher_client):
    visible = [
        Budget.objects.create(name="team", scope="team", team=team, limit_usd=1),
        Budget.objects.create(name="own", scope="user", user=researcher, limit_usd=1),
        Budget.objects.create(name="category", scope="category", research_category="pathway_analysis", limit_usd=1),
        Budget.objects.create(name="model", scope="model", model_name="gpt-4o", limit_usd=1),
    ]
    Budget.objects.create(name="their team", scope="team", team=other_team, limit_usd=1)
    Budget.objects.create(name="their user", scope="user", user=outsider, limit_usd=1)
    answer = researcher_client.get("/api/v1/budgets")
    assert answer.status_code == 200
    names = {row["name"] for row in answer.json()["data"]}
    globals_ = set(Budget.objects.filter(is_global_default=True).values_list("name", flat=True))
    assert names == {b.name for b in visible} | globals_


def test_the_global_budgets_cannot_be_deleted_or_rescoped(admin_client):
    daily = Budget.objects.get(is_global_default=True, period="daily")
    assert admin_client.delete(f"/api/v1/budgets/{daily.pk}/").status_code == 400
    answer = admin_client.patch(f"/api/v1/budgets/{daily.pk}/", {"period": "monthly"}, format="json")
    assert answer.status_code == 400 and "period" in answer.json()["error"]["details"]
    answer = admin_client.patch(f"/api/v1/budgets/{daily.pk}/", {"enforcement": "soft"}, format="json")
    assert answer.status_code == 200


def test_budget_summary_has_the_reference_fields(researcher, researcher_client):
    record(researcher, cost="10.00")
    record(researcher, cost="2.50")
    answer = researcher_client.get("/api/v1/budget/summary")
    assert answer.status_code == 200, answer.content
    data = answer.json()["data"]
    daily = data["daily_budget"]
    assert set(daily) >= {"total_cost", "budget_limit", "percentage_used", "over_budget", "remaining_budget",
                          "days_in_period", "last_updated"}
    assert daily["total_cost"] == 12.5 and daily["budget_limit"] == 50.0 and daily["percentage_used"] == 25.0
    assert daily["remaining_budget"] == 37.5 and daily["days_in_period"] == 1 and daily["over_budget"] is False
    monthly = data["monthly_budget"]
    assert monthly["total_cost"] == 12.5 and monthly["days_in_period"] == timezone.now().day
    assert data["budget_health"] == "healthy"
    assert data["total_operations"] == 2 and data["average_cost_per_operation"] == 6.25


def test_budget_status_projects_the_end_of_the_period(researcher, researcher_client):
    record(researcher, cost="40.00")
    answer = researcher_client.get("/api/v1/budget/status")
    assert answer.status_code == 200, answer.content
    data = answer.json()["data"]
    daily = data["budget_summary"]["daily_budget"]
    assert daily["total_cost"] == 40.0 and daily["percentage_used"] == 80.0
    assert daily["projected_end_of_day"] >= 40.0
    assert data["budget_summary"]["budget_health"] == "warning"
    assert set(data["projections"]["daily"]) == {"projected_cost", "confidence", "projection_method"}
    assert "projected_end_of_month" in data["budget_summary"]["monthly_budget"]
    plain = researcher_client.get("/api/v1/budget/status?include_projections=false").json()["data"]
    assert "projections" not in plain and "projected_end_of_day" not in plain["budget_summary"]["daily_budget"]


def test_spending_trends_split_days_weekdays_and_peak_hours(researcher, researcher_client, settings):
    settings.BUDGET_TIMEZONE = "UTC"
    now = timezone.now()
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    # Two earlier days cheap, the last two expensive: increasing. Hours 9 and 14 carry most spend.
    for days_ago, cost in ((3, "1.00"), (2, "1.00"), (1, "3.00")):
        record(researcher, cost=cost, occurred_at=today - timedelta(days=days_ago) + timedelta(hours=9))
    record(researcher, cost="3.00", occurred_at=min(now, today + timedelta(hours=14)) - timedelta(seconds=1)
           if now.hour >= 14 else today - timedelta(days=1) + timedelta(hours=14))
    answer = researcher_client.get("/api/v1/budget/trends?days=4")
    assert answer.status_code == 200, answer.content
    data = answer.json()["data"]
    assert data["period_days"] == 4 and len(data["daily_costs"]) == 4
    assert data["total_cost"] == 8.0 and data["average_daily_cost"] == 2.0
    assert data["trend_direction"] == "increasing"
    weekend = sum(cost for day, cost in data["daily_costs"].items()
                  if datetime.fromisoformat(day).replace(tzinfo=UTC).weekday() >= 5)
    assert data["cost_distribution"]["weekends"] == round(weekend / 8 * 100, 2)
    assert 9 in data["peak_usage_hours"]


def test_trends_refuse_an_absurd_number_of_days(researcher_client):
    answer = researcher_client.get("/api/v1/budget/trends?days=0")
    assert answer.status_code == 400 and "days" in answer.json()["error"]["details"]
