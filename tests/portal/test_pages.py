"""The portal with Django's test client: logins, roles, team scoping, CSRF, pagination, budgets,
usage explorer and its CSV export, API keys and reports."""

from __future__ import annotations

import csv
import io
import json
import re
from decimal import Decimal

import pytest
from django.test import Client
from rest_framework.test import APIClient

from budgets.models import ApiKey, AuditLog, Budget
from budgets.services import budget_create
from tests.conftest import client_for
from tests.portal.conftest import record, session_for
from tracking.models import UsageRecord

pytestmark = pytest.mark.django_db

PAGES = ["/", "/budgets/", "/usage/", "/usage/export.csv", "/alerts/", "/breakers/", "/reports/", "/keys/"]


def html(response) -> str:
    assert response.status_code == 200, response.content[:500]
    return response.content.decode()


@pytest.mark.parametrize("url", PAGES + ["/budgets/new/"])
def test_every_page_asks_an_anonymous_visitor_to_log_in(client, url):
    response = client.get(url)
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


@pytest.mark.parametrize("url", PAGES)
def test_a_researcher_can_open_every_team_page(researcher_web, url):
    assert researcher_web.get(url).status_code == 200


def test_a_researcher_cannot_reach_the_budget_editor(researcher_web, admin_user):
    budget = budget_create(actor=admin_user, name="Lab", scope="organization", period="daily", limit_usd=Decimal("9"))
    for url in ["/budgets/new/", f"/budgets/{budget.pk}/edit/", f"/budgets/{budget.pk}/delete/"]:
        response = researcher_web.get(url)
        assert response.status_code == 403 and "Not allowed" in response.content.decode()
    response = researcher_web.post("/budgets/new/", {"name": "Sneaky", "scope": "organization", "period": "daily",
                                                     "limit_usd": "1000000"})
    assert response.status_code == 403 and not Budget.objects.filter(name="Sneaky").exists()
    assert researcher_web.post(f"/budgets/{budget.pk}/delete/").status_code == 403
    assert Budget.objects.filter(pk=budget.pk).exists()


def test_a_researcher_sees_no_admin_controls(researcher_web):
    page = html(researcher_web.get("/budgets/"))
    assert "New budget" not in page and "/edit/" not in page and "/delete/" not in page


def test_an_admin_sees_the_budget_controls(admin_web):
    page = html(admin_web.get("/budgets/"))
    assert "New budget" in page and "/edit/" in page


def test_an_admin_creates_a_budget_and_an_audit_row_says_who(admin_web, admin_user, team):
    response = admin_web.post("/budgets/new/", {
        "name": "Metabolomics daily", "scope": "team", "team": team.pk, "period": "daily", "limit_usd": "25.50",
        "warning_percentage": "70", "critical_percentage": "85", "exceeded_percentage": "100",
        "enforcement": "soft", "is_active": "on"}, follow=True)
    page = html(response)
    assert "Budget “Metabolomics daily” created." in page
    budget = Budget.objects.get(name="Metabolomics daily")
    assert (budget.team, budget.limit_usd, budget.enforcement) == (team, Decimal("25.50"), "soft")
    assert 'data-budget="Metabolomics daily"' in page
    audit = AuditLog.objects.get(action="budget.created", object_id=str(budget.pk))
    assert audit.actor == admin_user


@pytest.mark.parametrize("fields, field, message", [
    ({"scope": "team"}, "team", "needs a team"),
    ({"warning_percentage": "95", "critical_percentage": "90"}, "critical_percentage", "Thresholds must rise"),
    ({"limit_usd": "-5"}, "limit_usd", "must not be negative"),
    ({"period": "fixed"}, "ends_on", "needs a start and an end date"),
    ({"limit_usd": "abc"}, "limit_usd", "Enter a number"),
])
def test_an_invalid_budget_is_refused_with_a_message_at_its_field(admin_web, fields, field, message):
    data = {"name": "Bad", "scope": "organization", "period": "daily", "limit_usd": "10", "warning_percentage": "75",
            "critical_percentage": "90", "exceeded_percentage": "100", "enforcement": "hard", **fields}
    response = admin_web.post("/budgets/new/", data)
    page = html(response)
    assert message in page and "The budget was not saved" in page
    assert not Budget.objects.filter(name="Bad").exists()


def test_an_admin_edits_a_budget_and_the_audit_keeps_old_and_new(admin_web, admin_user):
    budget = budget_create(actor=admin_user, name="Grant", scope="organization", period="monthly",
                           limit_usd=Decimal("100"))
    data = {"name": "Grant", "scope": "organization", "period": "monthly", "limit_usd": "150",
            "warning_percentage": "75", "critical_percentage": "90", "exceeded_percentage": "100",
            "enforcement": "hard", "is_active": "on"}
    page = html(admin_web.post(f"/budgets/{budget.pk}/edit/", data, follow=True))
    assert "Budget “Grant” saved." in page
    budget.refresh_from_db()
    assert budget.limit_usd == Decimal("150")
    audit = AuditLog.objects.get(action="budget.updated", object_id=str(budget.pk))
    assert audit.changes["limit_usd"] == ["100.000000", "150"] and audit.actor == admin_user


def test_the_organisation_budget_keeps_its_scope_and_cannot_be_deleted(admin_web):
    daily = Budget.objects.get(is_global_default=True, period="daily")
    data = {"name": daily.name, "scope": "team", "period": "monthly", "limit_usd": "60",
            "warning_percentage": "75", "critical_percentage": "90", "exceeded_percentage": "100",
            "enforcement": "hard", "is_active": "on"}
    html(admin_web.post(f"/budgets/{daily.pk}/edit/", data, follow=True))
    daily.refresh_from_db()
    assert (daily.scope, daily.period, daily.limit_usd) == ("organization", "daily", Decimal("60"))
    page = html(admin_web.post(f"/budgets/{daily.pk}/delete/", follow=True))
    assert "can be changed, not deleted" in page and Budget.objects.filter(pk=daily.pk).exists()


def test_an_admin_deletes_a_budget(admin_web, admin_user):
    budget = budget_create(actor=admin_user, name="Old", scope="model", model_name="gpt-4", period="daily",
                           limit_usd=Decimal("5"))
    assert "Delete budget “Old”?" in html(admin_web.get(f"/budgets/{budget.pk}/delete/"))
    page = html(admin_web.post(f"/budgets/{budget.pk}/delete/", follow=True))
    assert "Budget “Old” deleted." in page and not Budget.objects.filter(pk=budget.pk).exists()


def test_budget_list_shows_current_spend_and_health(admin_web, admin_user, researcher):
    budget = budget_create(actor=admin_user, name="Tiny", scope="user", user=researcher, period="daily",
                           limit_usd=Decimal("1"))
    record(researcher, cost="0.80")
    page = html(admin_web.get("/budgets/"))
    row = re.search(r'<tr data-budget="Tiny">(.*?)</tr>', page, re.S).group(1)
    assert "$0.80 / $1.00" in row and "health-warning" in row and "80.0%" in row
    assert budget.pk


def test_a_researcher_sees_only_budgets_that_can_apply_to_them(researcher_web, admin_user, team, other_team, outsider):
    budget_create(actor=admin_user, name="Ours", scope="team", team=team, period="daily", limit_usd=Decimal("5"))
    budget_create(actor=admin_user, name="Theirs", scope="team", team=other_team, period="daily",
                  limit_usd=Decimal("5"))
    budget_create(actor=admin_user, name="Otto's", scope="user", user=outsider, period="daily", limit_usd=Decimal("5"))
    page = html(researcher_web.get("/budgets/"))
    assert 'data-budget="Ours"' in page and "Theirs" not in page and "Otto" not in page
    theirs = Budget.objects.get(name="Theirs")
    assert session_for(admin_user).get(f"/budgets/{theirs.pk}/edit/").status_code == 200


def test_the_usage_explorer_shows_only_the_researchers_teams(researcher_web, researcher, outsider, other_team):
    record(researcher, model="gpt-4o-mini")
    record(outsider, model="claude-secret-model")
    page = html(researcher_web.get("/usage/"))
    assert "gpt-4o-mini" in page and "claude-secret-model" not in page
    assert other_team.name not in page  # not even as a filter choice
    # Asking for the other team's records explicitly is refused as an invalid choice, not answered.
    page = html(researcher_web.get(f"/usage/?team={other_team.pk}"))
    assert "claude-secret-model" not in page and "Select a valid choice" in page
    export = researcher_web.get(f"/usage/export.csv?team={other_team.pk}")
    assert "claude-secret-model" not in b"".join(export.streaming_content).decode()


def test_the_usage_explorer_paginates_and_keeps_the_filters(admin_web, researcher):
    for i in range(120):
        record(researcher, cost="0.01", model="gpt-4o-mini" if i % 2 else "gpt-4o")
    page = html(admin_web.get("/usage/?model=gpt-4o-mini"))
    assert page.count('class="usage-row"') == 50 and "Page 1 of 2 (60 in all)" in page
    assert "?model=gpt-4o-mini&amp;page=2" in page
    last = html(admin_web.get("/usage/?model=gpt-4o-mini&page=2"))
    assert last.count('class="usage-row"') == 10 and "gpt-4o</td>" not in last


def test_csv_export_is_exactly_the_filtered_records(admin_web, researcher, admin_user):
    for i in range(30):
        record(researcher if i % 3 else admin_user, cost=f"0.{i + 10:02d}", success=i % 4 != 0,
               model="gpt-4o" if i % 2 else "gpt-4o-mini", category="pathway_analysis" if i % 5 else "genomics")
    query = f"model=gpt-4o&success=yes&user={researcher.pk}"
    response = admin_web.get(f"/usage/export.csv?{query}")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    expected = UsageRecord.objects.filter(model_name="gpt-4o", success=True, user=researcher)
    assert sorted(int(r["id"]) for r in rows) == sorted(expected.values_list("id", flat=True))
    assert len(rows) > 0 and all(r["model_name"] == "gpt-4o" and r["success"] == "True" for r in rows)
    assert sum(Decimal(r["cost_usd"]) for r in rows) == sum(e.cost_usd for e in expected)
    page = html(admin_web.get(f"/usage/?{query}"))
    assert f"Export CSV ({len(rows)} record" in page and f"/usage/export.csv?{query.replace('&', '&amp;')}" in page


def test_bad_filters_give_a_message_not_an_error(researcher_web):
    page = html(researcher_web.get("/usage/?start=yesterday&success=maybe"))
    assert "Some filters were not understood" in page and "Enter a valid date" in page


def test_every_post_form_carries_a_csrf_token(admin_user, admin_web):
    budget = Budget.objects.get(is_global_default=True, period="daily")
    for url in ["/", "/budgets/new/", f"/budgets/{budget.pk}/edit/", f"/budgets/{budget.pk}/delete/", "/keys/",
                "/usage/", "/reports/"]:
        page = html(admin_web.get(url))
        for form in re.findall(r"<form[^>]*method=\"post\"[^>]*>.*?</form>", page, re.S):
            assert "csrfmiddlewaretoken" in form, (url, form[:200])


def test_a_post_without_the_csrf_token_is_refused(admin_user):
    strict = session_for(admin_user, enforce_csrf=True)
    response = strict.post("/budgets/new/", {"name": "No token", "scope": "organization", "period": "daily",
                                             "limit_usd": "1"})
    assert response.status_code == 403 and not Budget.objects.filter(name="No token").exists()
    assert strict.post("/keys/", {"name": "No token"}).status_code == 403
    assert not ApiKey.objects.filter(name="No token").exists()


def test_an_api_key_is_shown_once_works_and_can_be_revoked(researcher_web, researcher):
    response = researcher_web.post("/keys/", {"name": "nightly pipeline"})
    page = html(response)
    raw = re.search(r'id="new-key" type="text" value="(cm_[^"]+)"', page).group(1)
    assert "Copy key" in page and response["Cache-Control"] == "no-store"
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert api.get("/api/v1/system/health").status_code == 200
    listing = html(researcher_web.get("/keys/"))
    assert raw not in listing and raw[:11] in listing
    key = ApiKey.objects.get(name="nightly pipeline")
    page = html(researcher_web.post(f"/keys/{key.pk}/revoke/", follow=True))
    assert "revoked: it no longer authenticates" in page
    assert api.get("/api/v1/system/health").status_code == 401
    assert AuditLog.objects.filter(action="api_key.revoked", object_id=str(key.pk), actor=researcher).exists()


def test_nobody_revokes_someone_elses_key(researcher_web, outsider):
    from budgets.accounts import api_key_create

    key, _ = api_key_create(user=outsider, name="otto's")
    assert researcher_web.post(f"/keys/{key.pk}/revoke/").status_code == 404
    key.refresh_from_db()
    assert key.revoked_at is None
    assert "otto&#x27;s" not in html(researcher_web.get("/keys/"))


def test_a_key_needs_a_name(researcher_web):
    page = html(researcher_web.post("/keys/", {"name": ""}))
    assert "This field is required" in page and "The key was not created" in page
    assert not ApiKey.objects.filter(user__username="rita").exclude(name="test key").exists()


def test_the_report_adds_up_the_records_and_downloads_as_csv_and_json(admin_web, researcher, admin_user):
    record(researcher, cost="1.25", model="gpt-4o", category="genomics")
    record(researcher, cost="0.75", model="gpt-4o-mini", category="genomics", success=False)
    record(admin_user, cost="2.00", model="gpt-4o", category="pathway_analysis", hours_ago=30)
    page = html(admin_web.get("/reports/"))
    assert "$4.00" in page and 'data-testid="chart-report"' in page and 'class="point' in page
    data = json.loads(admin_web.get("/reports/download.json?" + _range()).content)["cost_report"]
    assert data["summary"]["total_cost"] == 4.0 and data["summary"]["total_calls"] == 3
    assert data["model_breakdown"]["gpt-4o"] == {"cost": 3.25, "calls": 2, "avg_cost": 1.625}
    assert data["category_breakdown"]["genomics"]["cost"] == 2.0
    assert data["summary"]["success_rate"] == pytest.approx(200 / 3, abs=0.01)
    response = admin_web.get("/reports/download.csv?" + _range())
    assert "attachment" in response["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode().lstrip("\ufeff"))))
    assert sum(Decimal(r["cost_usd"]) for r in rows) == Decimal("4")
    assert {(r["model"], r["research_category"]) for r in rows} == {
        ("gpt-4o", "genomics"), ("gpt-4o-mini", "genomics"), ("gpt-4o", "pathway_analysis")}


def test_the_report_page_and_downloads_equal_the_api_report(admin_web, admin_user, researcher):
    record(researcher, cost="1.25", model="gpt-4o", category="genomics")
    record(researcher, cost="0.50", model="gpt-4o-mini", category="pathway_analysis", hours_ago=50)
    start, end = _range().split("&")
    api = client_for(admin_user)
    from_api = api.get(f"/api/v1/reports/costs?start_date={start[6:]}&end_date={end[4:]}").json()["data"]
    assert json.loads(admin_web.get("/reports/download.json?" + _range()).content) == from_api
    api_csv = b"".join(api.get(f"/api/v1/reports/costs?start_date={start[6:]}&end_date={end[4:]}&format=csv")
                       .streaming_content)
    assert b"".join(admin_web.get("/reports/download.csv?" + _range()).streaming_content) == api_csv


def test_a_reversed_report_range_is_explained(admin_web):
    page = html(admin_web.get("/reports/?start=2025-08-10&end=2025-08-01"))
    assert "The end date is before the start date." in page
    assert admin_web.get("/reports/download.json?start=2025-08-10&end=2025-08-01").status_code == 400


def test_a_researchers_report_counts_only_their_teams(researcher_web, researcher, outsider):
    record(researcher, cost="1.00")
    record(outsider, cost="5.00")
    data = json.loads(researcher_web.get("/reports/download.json?" + _range()).content)["cost_report"]
    assert data["summary"]["total_cost"] == 1.0


def test_the_overview_shows_the_cards_and_draws_every_chart(admin_web, researcher):
    record(researcher, cost="12.50", model="gpt-4o", category="genomics")
    record(researcher, cost="2.50", model="gpt-4o-mini", category="pathway_analysis", hours_ago=3)
    page = html(admin_web.get("/"))
    for card in ("card-daily", "card-monthly", "card-alerts", "card-breakers"):
        assert f'data-testid="{card}"' in page
    assert "$15.00" in page  # today's spend (the organisation's daily budget counter)
    for chart in ("daily", "models", "categories", "hours"):
        figure = re.search(rf'data-testid="chart-{chart}">(.*?)</figure>', page, re.S).group(1)
        assert "<svg" in figure and "<title" in figure and "<desc" in figure and 'class="point' in figure
    assert 'class="budget-line"' in page and 'class="forecast"' in page


@pytest.mark.parametrize("persona", ["admin_user", "researcher"])
def test_the_overview_numbers_equal_the_apis_dashboard_overview(persona, request, researcher, outsider):
    user = request.getfixturevalue(persona)
    # Spend from two hours ago: the projections then hardly move in the milliseconds between the requests.
    record(researcher, cost="7.25", model="gpt-4o", hours_ago=2)
    record(outsider, cost="3.50", model="gpt-4o-mini", hours_ago=2)
    metrics = client_for(user).get("/api/v1/dashboard/overview").json()["data"]["metrics"]
    page = html(session_for(user).get("/"))
    for period in ("daily", "monthly"):
        card = re.search(rf'data-testid="card-{period}">(.*?)</article>', page, re.S).group(1)
        assert f"${metrics[f'{period}_cost']:.2f}" in card and f"${metrics[f'{period}_budget']:.2f}" in card
        assert f"{metrics[f'{period}_percentage']:.1f}% used" in card
        # The projection moves with the clock between the two requests: equal within 0.1 %.
        shown = Decimal(re.search(r"Projected by the end of the \w+: <strong>\$([\d.]+)</strong>", card).group(1))
        expected = Decimal(str(metrics[f"{period}_projected_cost"]))
        assert abs(shown - expected) <= max(Decimal("0.01"), expected / 1000)
    alerts = re.search(r'data-testid="card-alerts">(.*?)</article>', page, re.S).group(1)
    assert f'<p class="big">{metrics["active_alerts"]}</p>' in alerts


def test_an_empty_overview_still_draws(researcher_web):
    page = html(researcher_web.get("/"))
    assert page.count("<svg") == 4 and "No spend in this period" in page


def _range() -> str:
    from datetime import timedelta

    from django.utils import timezone

    today = timezone.now().date()
    return f"start={today - timedelta(days=3)}&end={today}"


def test_logging_in_through_the_form_reaches_the_overview(researcher):
    client = Client()
    response = client.post("/accounts/login/", {"username": "rita", "password": "pw-rita-123"}, follow=True)
    assert 'aria-current="page"' in html(response) and "Overview" in response.content.decode()


def test_a_huge_usage_list_is_counted_only_up_to_the_cap(admin_web, researcher, monkeypatch):
    from costmonitor.portal.views import CappedPaginator

    monkeypatch.setattr(CappedPaginator, "cap", 5)  # the cap is a number, not our code's behaviour
    for _ in range(8):
        record(researcher, cost="0.01")
    page = html(admin_web.get("/usage/"))
    assert "Over 5 records" in page and page.count('class="usage-row"') == 6
    rows = b"".join(admin_web.get("/usage/export.csv").streaming_content).decode().strip().splitlines()
    assert len(rows) == 1 + 8  # the export is never capped


def test_the_usage_export_neutralises_formulas_a_pipeline_sent(researcher_web, researcher):
    record(researcher, model="=HYPERLINK(\"http://evil.example/\",\"gpt\")", category="+cmd|'/c calc'!A0",
           operation_name="@SUM(1+1)", experiment="-2+3")
    rows = list(csv.DictReader(io.StringIO(
        b"".join(researcher_web.get("/usage/export.csv").streaming_content).decode())))
    assert len(rows) == 1
    row = rows[0]
    assert row["model_name"] == "'=HYPERLINK(\"http://evil.example/\",\"gpt\")"
    assert row["research_category"] == "'+cmd|'/c calc'!A0"
    assert row["operation_name"] == "'@SUM(1+1)"
    assert row["experiment"] == "'-2+3"
    assert row["cost_usd"] == "0.100000"  # numbers stay numbers


def test_a_report_at_the_end_of_the_calendar_is_explained_not_an_error(admin_web):
    page = html(admin_web.get("/reports/?start=9999-12-30&end=9999-12-31"))
    assert "The date is out of range." in page
    for fmt in ("csv", "json"):
        assert admin_web.get(f"/reports/download.{fmt}?start=9999-12-30&end=9999-12-31").status_code == 400


def test_usage_up_to_the_last_day_of_the_calendar_lists_everything(researcher_web, researcher):
    record(researcher, model="gpt-4o")
    assert "gpt-4o" in html(researcher_web.get("/usage/?start=2000-01-01&end=9999-12-31"))
    export = b"".join(researcher_web.get("/usage/export.csv?end=9999-12-31").streaming_content).decode()
    assert len(export.strip().splitlines()) == 2
