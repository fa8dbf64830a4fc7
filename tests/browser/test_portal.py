"""The portal in headless Chromium against a live server: what a researcher and an admin do."""

from __future__ import annotations

import csv
import io
from decimal import Decimal

import httpx
import pytest
from playwright.sync_api import expect

from budgets.models import Budget
from tests.browser.conftest import log_in
from tests.conftest import client_for
from tests.portal.conftest import record
from tracking.models import UsageRecord


def _charts_drawn(page) -> None:
    for chart in ("daily", "models", "categories", "hours"):
        figure = page.get_by_test_id(f"chart-{chart}")
        expect(figure.locator("svg[role=img]")).to_be_visible()
        assert figure.locator("svg .point").count() > 0, f"{chart} chart has no data points"


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_a_researcher_logs_in_and_sees_the_cards_and_every_chart(page, live_server, researcher):
    record(researcher, cost="12.50", model="gpt-4o", category="metabolite_identification")
    record(researcher, cost="3.25", model="gpt-4o-mini", category="pathway_analysis", hours_ago=26)
    log_in(page, live_server.url, "rita", "pw-rita-123")
    for card in ("card-daily", "card-monthly", "card-alerts", "card-breakers"):
        expect(page.get_by_test_id(card)).to_be_visible()
    expect(page.get_by_test_id("card-daily")).to_contain_text("$12.50")
    expect(page.get_by_test_id("card-monthly").get_by_role("progressbar")).to_be_visible()
    _charts_drawn(page)
    daily = page.get_by_test_id("chart-daily")
    assert daily.locator(".budget-line").count() == 1 and daily.locator(".forecast").count() == 1
    expect(page.get_by_role("link", name="Budgets")).to_be_visible()
    page.get_by_role("link", name="Budgets").click()
    expect(page.get_by_role("link", name="New budget")).to_have_count(0)
    page.get_by_role("link", name="Overview").click()
    _charts_drawn(page)


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_an_admin_creates_a_budget_and_sees_it_listed(page, live_server, admin_user, team):
    log_in(page, live_server.url, "alice", "pw-alice-123")
    page.get_by_role("link", name="Budgets").click()
    page.get_by_role("link", name="New budget").click()
    page.get_by_label("Name").fill("Metabolomics weekly grant")
    page.get_by_label("Scope").select_option("team")
    page.get_by_label("Team").select_option(label=team.name)
    page.get_by_label("Limit (USD)").fill("42.50")
    page.get_by_label("Enforcement").select_option("soft")
    # A wrong threshold first: the form says what is wrong and keeps the input.
    page.get_by_label("Warning at (% of limit)").fill("95")
    page.get_by_role("button", name="Create budget").click()
    expect(page.get_by_text("Thresholds must rise")).to_be_visible()
    expect(page.get_by_label("Name")).to_have_value("Metabolomics weekly grant")
    page.get_by_label("Warning at (% of limit)").fill("70")
    page.get_by_role("button", name="Create budget").click()
    expect(page.get_by_text("Budget “Metabolomics weekly grant” created.")).to_be_visible()
    row = page.locator('tr[data-budget="Metabolomics weekly grant"]')
    expect(row).to_contain_text("$0.00 / $42.50")
    expect(row).to_contain_text("Soft")
    budget = Budget.objects.get(name="Metabolomics weekly grant")
    assert (budget.team_id, budget.limit_usd, budget.warning_percentage) == (team.pk, Decimal("42.50"), 70)


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_usage_recorded_through_the_api_appears_in_the_explorer(page, live_server, researcher):
    api = client_for(researcher)
    response = httpx.post(f"{live_server.url}/api/v1/costs/track", headers={"Authorization": f"Bearer {api.raw_key}"},
                          json={"operation_type": "llm_call", "model_name": "gpt-4o", "cost_usd": 0.4321,
                                "research_category": "literature_search", "prompt_tokens": 1200,
                                "completion_tokens": 300, "operation_name": "browser-test-call"})
    assert response.status_code in (200, 201), response.text
    log_in(page, live_server.url, "rita", "pw-rita-123")
    page.get_by_role("link", name="Usage").click()
    row = page.locator("tr.usage-row", has_text="browser-test-call")
    expect(row).to_contain_text("gpt-4o")
    expect(row).to_contain_text("$0.432100")
    expect(row).to_contain_text("1500")


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_csv_export_downloads_the_filtered_rows(page, live_server, researcher, admin_user):
    for i in range(12):
        record(researcher, cost=f"0.{i + 10}", model="gpt-4o" if i % 3 == 0 else "gpt-4o-mini",
               success=i % 2 == 0)
    log_in(page, live_server.url, "alice", "pw-alice-123")
    page.get_by_role("link", name="Usage").click()
    page.get_by_label("Model").select_option("gpt-4o")
    page.get_by_label("Outcome").select_option("yes")
    page.get_by_role("button", name="Apply filters").click()
    expected = UsageRecord.objects.filter(model_name="gpt-4o", success=True)
    expect(page.locator("tr.usage-row")).to_have_count(expected.count())
    with page.expect_download() as info:
        page.get_by_test_id("export-csv").click()
    download = info.value
    assert download.suggested_filename == "usage.csv"
    rows = list(csv.DictReader(io.StringIO(open(download.path(), encoding="utf-8").read())))
    assert sorted(int(r["id"]) for r in rows) == sorted(expected.values_list("id", flat=True))
    assert rows and {r["model_name"] for r in rows} == {"gpt-4o"} and {r["success"] for r in rows} == {"True"}


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_a_researcher_cannot_reach_the_budget_editor(page, live_server, researcher):
    log_in(page, live_server.url, "rita", "pw-rita-123")
    response = page.goto(f"{live_server.url}/budgets/new/")
    assert response.status == 403
    expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()
    daily = Budget.objects.get(is_global_default=True, period="daily")
    assert page.goto(f"{live_server.url}/budgets/{daily.pk}/edit/").status == 403


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_a_researcher_creates_a_key_copies_it_and_revokes_it(page, live_server, researcher):
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.url)
    log_in(page, live_server.url, "rita", "pw-rita-123")
    page.get_by_role("link", name="API keys").click()
    page.get_by_label("Key name").fill("notebook")
    page.get_by_role("button", name="Create key").click()
    raw = page.get_by_test_id("new-key").input_value()
    assert raw.startswith("cm_")
    page.get_by_role("button", name="Copy key").click()
    expect(page.get_by_text("Copied to the clipboard.")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == raw
    assert httpx.get(f"{live_server.url}/api/v1/system/health", headers={"X-API-Key": raw}).status_code == 200
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Revoke notebook").click()
    expect(page.get_by_text("API key “notebook” revoked")).to_be_visible()
    assert httpx.get(f"{live_server.url}/api/v1/system/health", headers={"X-API-Key": raw}).status_code == 401


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_at_phone_width_the_navigation_and_overview_still_work(phone_page, live_server, researcher):
    page = phone_page
    record(researcher, cost="4.00", model="gpt-4o-mini", category="pathway_analysis")
    log_in(page, live_server.url, "rita", "pw-rita-123")
    _charts_drawn(page)
    # Nothing is wider than the screen: no sideways scrolling of the whole page.
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    for name in ("Budgets", "Usage", "Reports", "API keys", "Overview"):
        link = page.get_by_role("navigation", name="Main").get_by_role("link", name=name, exact=True)
        expect(link).to_be_visible()
    page.get_by_role("link", name="Usage", exact=True).click()
    expect(page.get_by_role("heading", name="Usage explorer")).to_be_visible()
    expect(page.locator("tr.usage-row")).to_have_count(1)
    page.get_by_role("link", name="Overview", exact=True).click()
    expect(page.get_by_test_id("card-daily")).to_contain_text("$4.00")


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_keyboard_reaches_the_login_form_and_the_navigation(page, live_server, researcher):
    page.goto(f"{live_server.url}/accounts/login/")
    # The username field has focus on arrival (autofocus may land just after the load event).
    expect(page.get_by_label("Username")).to_be_focused()
    page.keyboard.type("rita")
    page.keyboard.press("Tab")
    page.keyboard.type("pw-rita-123")
    page.keyboard.press("Enter")
    page.wait_for_url(f"{live_server.url}/")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    for _ in range(3):
        page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Budgets"
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Budgets")).to_be_visible()


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_report_draws_its_chart_and_offers_downloads(page, live_server, researcher, admin_user):
    record(researcher, cost="2.00", model="gpt-4o", category="genomics")
    log_in(page, live_server.url, "alice", "pw-alice-123")
    page.get_by_role("link", name="Reports").click()
    expect(page.get_by_test_id("chart-report").locator("svg .point").first).to_be_visible()
    with page.expect_download() as info:
        page.get_by_role("link", name="Download JSON").click()
    assert info.value.suggested_filename.endswith(".json")
    assert '"total_cost": 2.0' in open(info.value.path(), encoding="utf-8").read()
