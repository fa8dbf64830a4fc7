"""The Alert Management API in the reference's shapes: send, test-channels, delivery-stats, list, acknowledge."""

from decimal import Decimal

import pytest
from django.utils import timezone

from alerts.models import AlertDelivery, BudgetAlert
from alerts.services import system_alert_raise, threshold_alert_raise
from tests.portal.conftest import session_for

from .conftest import Reply, email_channel, make_channel, slack_channel, team_budget

pytestmark = pytest.mark.django_db

WARNING = {"timestamp": 1691337600.0, "alert_level": "warning", "period_type": "daily", "period_key": "2025-08-06",
           "current_cost": 37.50, "budget_limit": 50.0, "percentage_used": 75.0, "threshold_percentage": 75.0,
           "message": "Daily budget warning: 75% of budget used"}


def test_send_alert_delivers_now_and_answers_in_the_reference_shape(admin_client, smtp_peer, http_peer):
    email_channel(smtp_peer)
    slack_channel(http_peer)
    r = admin_client.post("/api/v1/alerts/send", WARNING, format="json")
    assert r.status_code == 201, r.content
    data = r.json()["data"]
    assert data["overall_success"] is True and data["failed_channels"] == []
    results = data["delivery_results"]
    assert set(results) == {"email", "slack", "logging"}
    assert results["email"]["success"] and results["email"]["recipients"] == ["pi@lab.example", "finance@lab.example"]
    assert results["email"]["message_id"].startswith("<")
    assert results["slack"]["success"] and results["slack"]["channel"] == "#budget-alerts"
    assert "message_ts" in results["slack"]
    assert results["logging"] == {**results["logging"], "success": True, "log_level": "WARNING"}
    assert all(isinstance(v["timestamp"], float) for v in results.values())
    alert = BudgetAlert.objects.get(pk=data["alert_id"])
    assert alert.alert_type == "manual" and alert.current_cost == Decimal("37.5")
    assert alert.timestamp.timestamp() == 1691337600.0
    assert len(smtp_peer.handler.messages) == 1 and len(http_peer.received) == 1


def test_send_alert_names_the_failed_channels_and_keeps_retrying_them(admin_client, http_peer, refused_port):
    slack_channel(http_peer)
    make_channel("ops-hook", "webhook", {"url": f"http://127.0.0.1:{refused_port}/x"})
    data = admin_client.post("/api/v1/alerts/send", WARNING, format="json").json()["data"]
    assert data["overall_success"] is False and data["failed_channels"] == ["ops-hook"]
    failed = data["delivery_results"]["ops-hook"]
    assert failed["success"] is False and "Connection refused" in failed["error"] and failed["will_retry"] is True
    assert AlertDelivery.objects.get(channel__name="ops-hook").status == "pending"


def test_send_alert_validates_the_body(admin_client):
    r = admin_client.post("/api/v1/alerts/send", {**WARNING, "alert_level": "panic"}, format="json")
    assert r.status_code == 400 and "alert_level" in r.json()["error"]["details"]
    r = admin_client.post("/api/v1/alerts/send", {**WARNING, "current_cost": -1}, format="json")
    assert r.status_code == 400 and "current_cost" in r.json()["error"]["details"]
    assert not BudgetAlert.objects.exists()


def test_researchers_cannot_send_alerts(researcher_client):
    assert researcher_client.post("/api/v1/alerts/send", WARNING, format="json").status_code == 403


def test_alert_sending_is_rate_limited_to_ten_a_minute(admin_client):
    codes = [admin_client.post("/api/v1/alerts/send", WARNING, format="json").status_code for _ in range(11)]
    assert codes[:10] == [201] * 10 and codes[10] == 429


def test_test_channels_reports_each_channel(admin_client, smtp_peer, http_peer, refused_port):
    email_channel(smtp_peer)
    slack_channel(http_peer)
    make_channel("webhook", "webhook", {"url": f"http://127.0.0.1:{refused_port}/x"})
    data = admin_client.post("/api/v1/alerts/test-channels", {}, format="json").json()["data"]
    assert data["email"]["success"] and data["email"]["message"] == "Test email sent successfully"
    assert data["slack"]["success"] and data["slack"]["message"] == "Test Slack message sent"
    assert data["webhook"]["success"] is False and data["webhook"]["error"] == "Connection refused"
    assert all(isinstance(v["response_time_ms"], int) for v in data.values())
    only = admin_client.post("/api/v1/alerts/test-channels", {"channel_ids": [data["slack"]["channel_id"]]},
                             format="json").json()["data"]
    assert list(only) == ["slack"]
    bad = admin_client.post("/api/v1/alerts/test-channels", {"channel_ids": [999999]}, format="json")
    assert bad.status_code == 400 and "channel_ids" in bad.json()["error"]["details"]


def test_delivery_stats_come_from_the_attempts(admin_client, http_peer, team, settings):
    settings.ALERT_RETRY_BASE_SECONDS = 0
    slack_channel(http_peer)
    http_peer.replies = [Reply(500, b"boom")]
    alert = threshold_alert_raise(budget=team_budget(team), period_key=timezone.localdate().isoformat(),
                                  level="warning", pct=Decimal(75), spent=Decimal("7.5"))
    from alerts import tasks

    for _ in range(2):
        for delivery in alert.deliveries.all():
            tasks.deliver(delivery.pk)
    data = admin_client.get("/api/v1/alerts/delivery-stats").json()["data"]
    assert data["total_alerts_sent"] == 3 and data["successful_deliveries"] == 2 and data["failed_deliveries"] == 1
    assert data["success_rate"] == 66.7
    slack = data["channels"]["slack"]
    assert (slack["total_attempts"], slack["successful_deliveries"], slack["failed_deliveries"]) == (2, 1, 1)
    assert slack["success_rate"] == 50.0 and isinstance(slack["avg_response_time_ms"], int)
    assert data["channels"]["logging"]["success_rate"] == 100.0
    (failure,) = data["recent_failures"]
    assert failure["channel"] == "slack" and "HTTP 500" in failure["error"] and isinstance(failure["timestamp"], float)


def test_alert_list_is_scoped_to_the_callers_teams_and_filters(researcher_client, admin_client, team, other_team):
    mine = team_budget(team)
    theirs = team_budget(other_team)
    today = timezone.localdate().isoformat()
    for budget in (mine, theirs):
        for level, pct in (("warning", 75), ("critical", 90)):
            threshold_alert_raise(budget=budget, period_key=today, level=level, pct=Decimal(pct), spent=Decimal(9.5))
    system_alert_raise(alert_type="breaker", level="critical", message="Breaker opened", dedupe_key="breaker:1")
    seen = researcher_client.get("/api/v1/alerts/").json()["data"]
    assert seen["count"] == 3  # own team's two and the organisation-wide one
    assert {a["team"]["id"] if a["team"] else None for a in seen["results"]} == {team.pk, None}
    assert admin_client.get("/api/v1/alerts").json()["data"]["count"] == 5
    critical = researcher_client.get("/api/v1/alerts/?level=critical").json()["data"]
    assert critical["count"] == 2
    by_budget = admin_client.get(f"/api/v1/alerts/?budget={theirs.pk}&period={today}").json()["data"]
    assert by_budget["count"] == 2
    assert admin_client.get("/api/v1/alerts/?period=monthly").json()["data"]["count"] == 0
    page = admin_client.get("/api/v1/alerts/?page_size=2").json()["data"]
    assert len(page["results"]) == 2 and page["next"]
    first = seen["results"][0]
    assert set(WARNING) - {"timestamp"} <= set(first) and "acknowledged" in first


def test_bad_filters_name_the_field(admin_client):
    for query, field in (("level=panic", "level"), ("acknowledged=maybe", "acknowledged"), ("budget=abc", "budget")):
        r = admin_client.get(f"/api/v1/alerts/?{query}")
        assert r.status_code == 400 and field in r.json()["error"]["details"], query


def test_a_researcher_acknowledges_their_teams_alert_but_not_an_organisation_wide_one(researcher_client, team):
    ours = system_alert_raise(alert_type="anomaly", level="critical", message="Our loop", dedupe_key="a:3", team=team)
    everyone = system_alert_raise(alert_type="anomaly", level="critical", message="Org loop", dedupe_key="a:4")
    r = researcher_client.post(f"/api/v1/alerts/{ours.pk}/acknowledge")
    assert r.status_code == 200 and r.json()["data"]["acknowledged_by"] == "rita"
    r = researcher_client.post(f"/api/v1/alerts/{everyone.pk}/acknowledge")
    assert r.status_code == 403 and r.json()["error"]["code"] == "PERMISSION_DENIED"
    everyone.refresh_from_db()
    assert everyone.acknowledged_at is None


def test_an_admin_acknowledges_an_alert_once(admin_client, admin_user):
    alert = system_alert_raise(alert_type="anomaly", level="critical", message="Runaway loop", dedupe_key="a:1")
    r = admin_client.post(f"/api/v1/alerts/{alert.pk}/acknowledge")
    assert r.status_code == 200, r.content
    body = r.json()["data"]
    assert body["acknowledged"] is True and body["acknowledged_by"] == "alice"
    first_time = body["acknowledged_at"]
    again = admin_client.post(f"/api/v1/alerts/{alert.pk}/acknowledge").json()["data"]
    assert again["acknowledged_at"] == first_time
    assert admin_client.get("/api/v1/alerts/?acknowledged=false").json()["data"]["count"] == 0
    assert admin_client.get("/api/v1/alerts/?acknowledged=true").json()["data"]["count"] == 1


def test_an_outsider_cannot_see_or_acknowledge_another_teams_alert(outsider_client, team):
    alert = system_alert_raise(alert_type="anomaly", level="critical", message="Runaway", dedupe_key="a:2", team=team)
    assert outsider_client.get(f"/api/v1/alerts/{alert.pk}").status_code == 404


def test_trigger_budget_check_runs_a_cycle_in_the_reference_shape(admin_client, researcher_client):
    r = admin_client.post("/api/v1/system/budget-check")
    assert r.status_code == 200, r.content
    results = r.json()["data"]["results"]
    daily = results["budget_status"]["daily_budget"]
    assert set(daily) >= {"percentage_used", "over_budget"} and daily["over_budget"] is False
    cycle = results["monitoring_cycle"]
    assert cycle["cycle_completed"] is True and cycle["alerts_generated"] == 0 and cycle["anomalies_detected"] == 0
    assert researcher_client.post("/api/v1/system/budget-check").status_code == 403


def test_users_switch_the_daily_digest_on_and_off(researcher_client, researcher):
    assert researcher_client.get("/api/v1/alerts/digest").json()["data"]["enabled"] is False
    researcher.email = ""
    researcher.save()
    r = researcher_client.put("/api/v1/alerts/digest", {"enabled": True}, format="json")
    assert r.status_code == 400 and "enabled" in r.json()["error"]["details"]
    researcher.email = "rita@lab.example"
    researcher.save()
    assert researcher_client.put("/api/v1/alerts/digest", {"enabled": True}, format="json").json()["data"][
        "enabled"] is True
    assert researcher_client.put("/api/v1/alerts/digest", {"enabled": False}, format="json").json()["data"][
        "enabled"] is False


@pytest.mark.parametrize("period", ["%00", "2025-08%00"])
def test_a_period_with_a_nul_byte_is_an_invalid_parameter(researcher_client, researcher, period):
    answer = researcher_client.get(f"/api/v1/alerts/?period={period}")
    assert answer.status_code == 400, answer.content
    assert "period" in answer.json()["error"]["details"]
    page = session_for(researcher).get(f"/alerts/?period={period}")
    assert page.status_code == 200
