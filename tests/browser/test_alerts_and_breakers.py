"""Alerts and circuit breakers in headless Chromium: what an admin does there, and what a researcher
does not get to do."""

from __future__ import annotations

from decimal import Decimal

import httpx
import pytest
from playwright.sync_api import expect

from alerts.models import AlertChannel, BudgetAlert, DeliveryAttempt
from breakers import services as breaker_services
from breakers.models import CircuitBreaker
from budgets.models import Budget
from tests.browser.conftest import log_in
from tests.conftest import client_for
from tests.portal.conftest import record

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _team_budget(team, limit: str = "10") -> Budget:
    return Budget.objects.create(name=f"{team.name} daily", scope=Budget.Scope.TEAM, team=team,
                                 period=Budget.Period.DAILY, limit_usd=Decimal(limit))


def test_an_admin_acknowledges_an_alert_on_the_alerts_page(page, live_server, admin_user, researcher, team):
    _team_budget(team)
    record(researcher, cost="8.00")  # 80% of the team's $10: the warning threshold (75%) is crossed
    alert = BudgetAlert.objects.get(team=team, alert_level="warning")
    log_in(page, live_server.url, "alice", "pw-alice-123")
    page.get_by_role("link", name="Alerts", exact=True).click()
    row = page.locator(f'tr[data-alert="{alert.pk}"]')
    expect(row).to_contain_text("80% of Metabolomics daily used")
    row.get_by_role("button", name=f"Acknowledge alert {alert.pk}").click()
    expect(page.get_by_text("Alert acknowledged.")).to_be_visible()
    expect(row).to_contain_text("alice")
    expect(row.get_by_role("button")).to_have_count(0)
    alert.refresh_from_db()
    assert alert.acknowledged_by == admin_user and alert.acknowledged_at is not None


def test_an_admin_creates_a_channel_and_sends_it_a_test(page, live_server, admin_user, team):
    log_in(page, live_server.url, "alice", "pw-alice-123")
    page.get_by_role("link", name="Alerts", exact=True).click()
    page.get_by_role("link", name="Alert channels").click()
    page.get_by_role("link", name="New channel").click()
    page.get_by_role("textbox", name="Name", exact=True).fill("lab log")
    page.get_by_role("combobox", name="Kind", exact=True).select_option("log")
    page.get_by_label("Critical").check()
    page.get_by_label("Only alerts of these teams").select_option(label=team.name)
    page.get_by_role("button", name="Save channel").click()
    expect(page.get_by_text("Channel “lab log” saved.")).to_be_visible()
    row = page.locator('tr[data-channel="lab log"]')
    expect(row).to_contain_text("Levels: critical")
    expect(row).to_contain_text(f"Teams: {team.name}")

    row.get_by_role("button", name="Send test to lab log").click()
    expect(page.get_by_text("Test to “lab log” delivered")).to_be_visible()
    expect(page.locator('tr[data-channel="lab log"]')).to_contain_text("✓ test")
    page.get_by_role("button", name="Test every active channel").click()
    results = page.get_by_test_id("test-results")
    expect(results.locator("tr", has_text="lab log")).to_contain_text("Delivered")
    channel = AlertChannel.objects.get(name="lab log")
    assert list(channel.teams.all()) == [team] and channel.levels == ["critical"]
    assert DeliveryAttempt.objects.filter(channel=channel, is_test=True, success=True).count() == 2


def test_an_admin_creates_a_breaker_and_resets_it_after_it_opened(page, live_server, admin_user, researcher):
    log_in(page, live_server.url, "alice", "pw-alice-123")
    page.get_by_role("link", name="Breakers", exact=True).click()
    page.get_by_role("link", name="New breaker").click()
    page.get_by_role("textbox", name="Name", exact=True).fill("llm_operations")
    page.get_by_label("Failure threshold").fill("1")
    page.get_by_role("button", name="Create breaker").click()
    expect(page.get_by_text("Circuit breaker “llm_operations” created.")).to_be_visible()

    # A pipeline's call through the breaker fails: with a threshold of one failure, it opens.
    api = f"{live_server.url}/api/v1/breakers/llm_operations"
    headers = {"Authorization": f"Bearer {client_for(researcher).raw_key}"}
    allowed = httpx.post(f"{api}/execute", headers=headers, json={"estimated_cost": 0.1})
    assert allowed.status_code == 201, allowed.text
    failed = httpx.post(f"{api}/operations/{allowed.json()['data']['operation_id']}/result", headers=headers,
                        json={"success": False, "error_type": "Timeout"})
    assert failed.status_code == 200 and failed.json()["data"]["state"] == "open", failed.text

    page.get_by_role("link", name="Breakers", exact=True).click()
    row = page.locator('tr[data-breaker="llm_operations"]')
    expect(row.locator(".badge")).to_contain_text("Open")
    row.get_by_role("button", name="Reset llm_operations").click()
    expect(page.get_by_text("Circuit breaker “llm_operations” reset: it is closed again.")).to_be_visible()
    expect(page.locator(".badge.state-closed").first).to_be_visible()
    expect(page.get_by_text("reset by alice")).to_be_visible()
    assert CircuitBreaker.objects.get(name="llm_operations").state == "closed"


def test_a_researcher_sees_no_admin_controls_on_alerts_and_breakers(page, live_server, admin_user, researcher, team):
    BudgetAlert.objects.create(alert_level="warning", message="Metabolomics at 75%", team=team,
                               current_cost=Decimal("7.50"), dedupe_key="browser-researcher")
    breaker_services.breaker_create(name="llm_operations", actor=admin_user)
    CircuitBreaker.objects.filter(name="llm_operations").update(state="open")
    log_in(page, live_server.url, "rita", "pw-rita-123")

    page.get_by_role("link", name="Alerts", exact=True).click()
    expect(page.locator("tr.alert-row", has_text="Metabolomics at 75%")).to_be_visible()
    expect(page.get_by_role("link", name="Alert channels")).to_have_count(0)
    assert page.goto(f"{live_server.url}/alerts/channels/").status == 403

    page.goto(f"{live_server.url}/breakers/")
    row = page.locator('tr[data-breaker="llm_operations"]')
    expect(row.locator(".badge")).to_contain_text("Open")
    expect(page.get_by_role("link", name="New breaker")).to_have_count(0)
    expect(row.get_by_role("link", name="Edit")).to_have_count(0)
    expect(row.get_by_role("button")).to_have_count(0)
    row.get_by_role("link", name="llm_operations").click()
    expect(page.get_by_role("heading", name="Circuit breaker “llm_operations”")).to_be_visible()
    expect(page.get_by_role("button", name="Reset breaker")).to_have_count(0)
    expect(page.get_by_role("link", name="Edit", exact=True)).to_have_count(0)
