"""Budget checks, limits, reservations and every exception, each from a real server answer."""

from __future__ import annotations

from decimal import Decimal

import pytest

from budgets import accounts
from budgets.models import ApiKey, Budget, Reservation
from budgets.services import global_budget
from costmonitor.sdk import (
    AuthenticationError,
    BudgetExceededException,
    ConfigurationError,
    CostMonitorClient,
    InvalidParametersError,
    MonitorUnavailableError,
    PermissionDeniedError,
    RateLimitExceeded,
)
from tests.counters import counter_total
from tracking.models import UsageRecord

from .conftest import free_port

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def tiny_team_budget(team):
    return Budget.objects.create(name="Tiny pilot", scope=Budget.Scope.TEAM, team=team, period=Budget.Period.DAILY,
                                 limit_usd=Decimal("0.05"), enforcement=Budget.Enforcement.HARD)


def test_budget_check_allows_an_affordable_operation(monitor):
    status = monitor.check_budget_status(cost_amount=5.0, operation_type="llm_call",
                                         research_category="metabolite_identification")
    assert status["operation_allowed"] is True
    assert status["daily_status"]["budget_limit"] == 50.0
    assert status["monthly_status"]["budget_limit"] == 1000.0
    assert status["budget_health"] in ("healthy", "warning", "critical", "exceeded")


def test_budget_check_over_a_hard_budget_raises_with_the_servers_details(monitor, tiny_team_budget):
    with pytest.raises(BudgetExceededException) as caught:
        monitor.check_budget_status(cost_amount=1.0, operation_type="llm_call")
    exc = caught.value
    assert exc.status_code == 402 and exc.code == "BUDGET_EXCEEDED"
    assert exc.details["budget_limit"] == 0.05
    assert exc.details["requested_cost"] == 1.0
    assert "Tiny pilot" in str(exc)
    assert exc.request_id


def test_budget_check_can_answer_instead_of_raising(monitor, tiny_team_budget):
    status = monitor.check_budget_status(cost_amount=1.0, raise_on_exceeded=False)
    assert status["operation_allowed"] is False
    assert status["budget_limit"] == 0.05


def test_admin_updates_limits_and_researcher_may_not(admin_monitor, monitor):
    answer = admin_monitor.update_budget_limits(daily_budget=75.0, monthly_budget=1500.0)
    assert (answer["daily_budget"], answer["monthly_budget"]) == (75.0, 1500.0)
    assert global_budget("daily").limit_usd == Decimal("75")
    with pytest.raises(PermissionDeniedError) as caught:
        monitor.update_budget_limits(daily_budget=1_000_000)
    assert caught.value.status_code == 403
    assert global_budget("daily").limit_usd == Decimal("75")


def test_invalid_parameters_name_the_field(admin_monitor):
    with pytest.raises(InvalidParametersError) as caught:
        admin_monitor.update_budget_limits(daily_budget=-5)
    assert "daily_budget" in caught.value.details
    assert "daily_budget" in str(caught.value)


def test_revoked_key_raises_authentication_error(live_server, researcher, make_client):
    api_key, raw_key = accounts.api_key_create(user=researcher, name="soon revoked")
    client = make_client(live_server.url, raw_key)
    client.log_api_call(operation_name="before", cost_usd=0.01)
    accounts.api_key_revoke(api_key=ApiKey.objects.get(pk=api_key.pk), actor=researcher)
    with pytest.raises(AuthenticationError) as caught:
        client.log_api_call(operation_name="after", cost_usd=0.01)
    assert caught.value.status_code == 401
    assert UsageRecord.objects.count() == 1
    assert client.pending_records == 0  # a bad key is not an outage: nothing is buffered


def test_made_up_key_raises_authentication_error(live_server, make_client):
    with pytest.raises(AuthenticationError):
        make_client(live_server.url, "cm_not-a-real-key").check_budget_status(1.0)


def test_missing_key_or_bad_url_is_a_configuration_error(live_server, make_client):
    with pytest.raises(ConfigurationError):
        make_client(live_server.url, "").get_budget_summary()
    with pytest.raises(ConfigurationError):
        CostMonitorClient("ftp://example.org", "k")


def test_rate_limit_raises_with_retry_after_seconds(monitor, settings):
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "dashboard": "1/min"}
    with pytest.raises(RateLimitExceeded) as caught:
        for _ in range(3):  # fixed windows: at most one boundary falls between these calls
            monitor.get_api_health_check()
    exc = caught.value
    assert exc.status_code == 429
    assert exc.retry_after_seconds is not None and 0 < exc.retry_after_seconds <= 60


def test_budget_check_fails_open_by_default_when_the_server_is_unreachable(researcher_key, make_client):
    client = make_client(f"http://127.0.0.1:{free_port()}", researcher_key)
    status = client.check_budget_status(cost_amount=1.0)
    assert status["operation_allowed"] is True
    assert status["degraded"] is True and status["budget_health"] == "unknown"


def test_budget_check_fails_closed_when_configured(researcher_key, make_client, monkeypatch):
    monkeypatch.setenv("COSTMONITOR_FAIL_OPEN", "false")
    client = make_client(f"http://127.0.0.1:{free_port()}", researcher_key)
    with pytest.raises(MonitorUnavailableError):
        client.check_budget_status(cost_amount=1.0)


def test_reservation_holds_and_releases(monitor, researcher):
    hold = monitor.reserve_budget(estimated_cost=10)
    assert hold["allowed"] is True and hold["estimated_cost"] == 10.0
    daily = counter_total(global_budget("daily"))
    assert daily.reserved == Decimal("10")
    monitor.release_reservation(hold["operation_id"])
    daily = counter_total(global_budget("daily"))
    assert daily.reserved == 0
    assert Reservation.objects.get(operation_id=hold["operation_id"]).status == "released"


def test_reservation_settled_by_recording_with_its_operation_id(monitor):
    hold = monitor.reserve_budget(model_name="gpt-4o-mini", estimated_tokens={"input": 1000, "output": 500},
                                  calls=10)
    assert hold["estimated_cost"] > 0
    monitor.log_api_call(operation_name="the call", cost_usd=0.004, operation_id=hold["operation_id"])
    assert Reservation.objects.get(operation_id=hold["operation_id"]).status == "settled"
    daily = counter_total(global_budget("daily"))
    assert daily.reserved == 0 and daily.spent == Decimal("0.004")


def test_reservation_beyond_the_budget_raises(monitor):
    with pytest.raises(BudgetExceededException) as caught:
        monitor.reserve_budget(estimated_cost=51)
    assert caught.value.details["budget_limit"] == 50.0
