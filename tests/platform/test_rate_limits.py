"""Rate limits: per user, with the reference's rates, configurable, answered with 429 and Retry-After."""

import pytest
from django.core.checks import run_checks

from costmonitor.api.throttles import parse_rate

pytestmark = pytest.mark.django_db
HEALTH = "/api/v1/system/health"  # a dashboard endpoint: counted against RATE_LIMIT_DASHBOARD


@pytest.fixture
def dashboard_limit_of_two(settings):
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "dashboard": "2/min"}


def test_reference_rates_are_the_defaults(settings):
    assert settings.RATE_LIMITS["dashboard"] == "100/min"
    assert settings.RATE_LIMITS["budget_checks"] == "1000/min"
    assert settings.RATE_LIMITS["alerts"] == "10/min"
    assert settings.RATE_LIMITS["tracking"] == "none"


def test_throttled_call_gets_429_with_retry_after(dashboard_limit_of_two, researcher_client):
    assert [researcher_client.get(HEALTH).status_code for _ in range(2)] == [200, 200]
    response = researcher_client.get(HEALTH)
    assert response.status_code == 429
    body = response.json()
    assert body["status"] == "error"
    assert body["error"]["code"] == "RATE_LIMIT_EXCEEDED"
    retry_after = body["error"]["retry_after"]
    assert isinstance(retry_after, int) and 1 <= retry_after <= 60
    assert response["Retry-After"] == str(retry_after)
    assert body["meta"]["request_id"] == response["X-Request-ID"]


def test_limits_are_counted_per_user(dashboard_limit_of_two, researcher_client, admin_client):
    for _ in range(3):
        researcher_client.get(HEALTH)
    assert researcher_client.get(HEALTH).status_code == 429
    assert admin_client.get(HEALTH).status_code == 200


def test_limits_are_per_user_not_per_key(dashboard_limit_of_two, researcher):
    from ..conftest import client_for

    first, second = client_for(researcher), client_for(researcher)
    assert [first.get(HEALTH).status_code, second.get(HEALTH).status_code] == [200, 200]
    assert first.get(HEALTH).status_code == 429


def test_none_means_unlimited(settings, researcher_client):
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "dashboard": "none"}
    assert {researcher_client.get(HEALTH).status_code for _ in range(5)} == {200}


@pytest.mark.parametrize(("text", "expected"), [
    ("1000/min", (1000, 60)), ("100/minute", (100, 60)), ("10/s", (10, 1)), ("5/hour", (5, 3600)),
    ("3/day", (3, 86400)), (" 7 / m ", (7, 60)), ("none", None), ("unlimited", None), ("", None),
])
def test_rate_values_from_the_environment_are_understood(text, expected):
    assert parse_rate(text) == expected


@pytest.mark.parametrize("text", ["100 per minute", "abc", "10/fortnight", "-1/min", "0/min"])
def test_a_mistyped_rate_is_refused(text):
    with pytest.raises(ValueError):
        parse_rate(text)


def test_a_mistyped_rate_fails_the_system_check(settings):
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "alerts": "10 per minute"}
    errors = [message for message in run_checks() if message.id == "costmonitor.E002"]
    assert len(errors) == 1 and "alerts" in errors[0].msg
