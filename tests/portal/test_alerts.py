"""Alerts in the portal: the list with filters and acknowledgement for everyone; channels, their
settings, team and budget limits, deletion and "send test" with each channel's result for admins."""

from __future__ import annotations

import socket
from decimal import Decimal

import pytest

from alerts import services as alert_services
from alerts.models import AlertChannel, BudgetAlert
from budgets.models import AuditLog, Budget
from tests.portal.conftest import session_for

pytestmark = pytest.mark.django_db


def _alert(level: str, message: str, team=None, key: str = "") -> BudgetAlert:
    return BudgetAlert.objects.create(alert_level=level, message=message, team=team, current_cost=Decimal("1"),
                                      period_type="daily", period_key="2025-08-06", dedupe_key=key or message)


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # closed again when the block ends: connections are refused


def test_a_researcher_sees_their_teams_alerts_filters_and_acknowledges(researcher_web, researcher, team, other_team):
    ours = _alert("warning", "Metabolomics at 75%", team=team)
    _alert("exceeded", "Proteomics over budget", team=other_team)
    _alert("critical", "Organisation at 90%")
    page = researcher_web.get("/alerts/").content.decode()
    assert "Metabolomics at 75%" in page and "Organisation at 90%" in page and "Proteomics" not in page
    assert "Alert channels" not in page
    filtered = researcher_web.get("/alerts/?level=warning").content.decode()
    assert "Metabolomics at 75%" in filtered and "Organisation at 90%" not in filtered
    page = researcher_web.post(f"/alerts/{ours.pk}/acknowledge/", {"query": "level=warning"}, follow=True)
    assert "Alert acknowledged." in page.content.decode() and page.redirect_chain[-1][0] == "/alerts/?level=warning"
    ours.refresh_from_db()
    assert ours.acknowledged_by == researcher and ours.acknowledged_at is not None
    assert "Metabolomics at 75%" not in researcher_web.get("/alerts/?acknowledged=false").content.decode()


def test_a_researcher_leaves_organisation_wide_alerts_to_the_admins(researcher_web, admin_web):
    everyone = _alert("critical", "Organisation at 90%")
    page = researcher_web.get("/alerts/").content.decode()
    assert "Open (for admins)" in page
    assert researcher_web.post(f"/alerts/{everyone.pk}/acknowledge/").status_code == 403
    everyone.refresh_from_db()
    assert everyone.acknowledged_at is None
    assert "Alert acknowledged." in admin_web.post(f"/alerts/{everyone.pk}/acknowledge/", follow=True).content.decode()


def test_nobody_acknowledges_an_alert_they_cannot_see(researcher_web, other_team):
    theirs = _alert("exceeded", "Proteomics over budget", team=other_team)
    assert researcher_web.post(f"/alerts/{theirs.pk}/acknowledge/").status_code == 404


def test_channels_are_for_admins_only(researcher_web):
    channel = AlertChannel.objects.create(name="ops log", kind="log")
    for url in ["/alerts/channels/", "/alerts/channels/new/", f"/alerts/channels/{channel.pk}/edit/"]:
        assert researcher_web.get(url).status_code == 403
    assert researcher_web.post(f"/alerts/channels/{channel.pk}/test/").status_code == 403


def test_an_admin_adds_a_webhook_channel_and_its_secret_stays_hidden(admin_web):
    response = admin_web.post("/alerts/channels/new/", {
        "name": "lab webhook", "kind": "webhook", "levels": ["critical", "exceeded"], "is_active": "on",
        "url": "http://127.0.0.1:9/hook", "secret": "s3cret-signing-key"}, follow=True)
    page = response.content.decode()
    assert "Channel “lab webhook” saved." in page
    channel = AlertChannel.objects.get(name="lab webhook")
    assert channel.secrets["url"] == "http://127.0.0.1:9/hook" and channel.levels == ["critical", "exceeded"]
    assert "s3cret-signing-key" not in page and "s3cret-signing-key" not in admin_web.get(
        f"/alerts/channels/{channel.pk}/edit/").content.decode()
    # Saving again without retyping the secrets keeps them.
    admin_web.post(f"/alerts/channels/{channel.pk}/edit/", {"name": "lab webhook", "kind": "webhook",
                                                            "is_active": "on"})
    channel.refresh_from_db()
    assert channel.secrets["secret"] == "s3cret-signing-key" and channel.levels == []


def test_a_channel_with_bad_settings_is_refused_at_the_field(admin_web):
    data = {"name": "mail", "kind": "email", "is_active": "on"}  # no recipients
    page = admin_web.post("/alerts/channels/new/", data).content.decode()
    assert "The channel was not saved" in page and not AlertChannel.objects.filter(name="mail").exists()


def test_send_test_shows_each_channels_result(admin_web):
    ok = AlertChannel.objects.get_or_create(name="ops log", kind="log")[0]
    broken = AlertChannel.objects.create(name="dead webhook", kind="webhook",
                                         secrets={"url": f"http://127.0.0.1:{_closed_port()}/hook"})
    page = admin_web.post(f"/alerts/channels/{ok.pk}/test/", follow=True).content.decode()
    assert "Test to “ops log” delivered" in page
    page = admin_web.post(f"/alerts/channels/{broken.pk}/test/", follow=True).content.decode()
    assert "Test to “dead webhook” failed" in page
    page = admin_web.post("/alerts/channels/").content.decode()
    assert 'data-testid="test-results"' in page and "Delivered" in page and "Failed" in page
    assert "failed on: dead webhook" in page


def test_an_admin_limits_a_channel_to_a_team_and_a_budget(admin_web, team, other_team):
    budget = Budget.objects.get(is_global_default=True, period="daily")
    response = admin_web.post("/alerts/channels/new/", {
        "name": "metabolomics log", "kind": "log", "is_active": "on", "teams": [team.pk], "budgets": [budget.pk]},
        follow=True)
    assert "Channel “metabolomics log” saved." in response.content.decode()
    channel = AlertChannel.objects.get(name="metabolomics log")
    assert list(channel.teams.all()) == [team] and list(channel.budgets.all()) == [budget]
    row = admin_web.get("/alerts/channels/").content.decode()
    assert f"Teams: {team.name}" in row and f"Budgets: {budget.name}" in row
    edit = admin_web.get(f"/alerts/channels/{channel.pk}/edit/").content.decode()
    assert f'<option value="{team.pk}" selected>' in edit and f'<option value="{budget.pk}" selected>' in edit
    # The filters decide where alerts go: another team's alert passes this channel by.
    ours = alert_services.alert_create_once(dedupe_key="ours", alert_level="warning", message="ours", team=team,
                                            budget=budget, current_cost=Decimal("1"), enqueue=False)
    theirs = alert_services.alert_create_once(dedupe_key="theirs", alert_level="warning", message="theirs",
                                              team=other_team, budget=budget, current_cost=Decimal("1"),
                                              enqueue=False)
    assert ours.deliveries.filter(channel=channel).exists()
    assert not theirs.deliveries.filter(channel=channel).exists()
    # Saving with nothing chosen lifts the limits again.
    admin_web.post(f"/alerts/channels/{channel.pk}/edit/", {"name": "metabolomics log", "kind": "log",
                                                            "is_active": "on"})
    assert not channel.teams.exists() and not channel.budgets.exists()


def test_an_admin_deletes_a_channel_after_confirming(admin_web, admin_user):
    channel = AlertChannel.objects.create(name="old webhook", kind="webhook", secrets={"url": "http://127.0.0.1:9/"})
    confirm = admin_web.get(f"/alerts/channels/{channel.pk}/delete/").content.decode()
    assert "Delete channel “old webhook”?" in confirm and "csrfmiddlewaretoken" in confirm
    assert AlertChannel.objects.filter(pk=channel.pk).exists()  # asking deletes nothing
    page = admin_web.post(f"/alerts/channels/{channel.pk}/delete/", follow=True).content.decode()
    assert "Channel “old webhook” deleted." in page
    assert not AlertChannel.objects.filter(pk=channel.pk).exists()
    audit = AuditLog.objects.get(action="alert_channel.deleted")
    assert (audit.actor, audit.object_id, audit.changes["name"]) == (admin_user, str(channel.pk), ["old webhook", None])


def test_deleting_a_channel_needs_the_csrf_token(admin_user):
    channel = AlertChannel.objects.create(name="ops log", kind="log")
    strict = session_for(admin_user, enforce_csrf=True)
    assert strict.post(f"/alerts/channels/{channel.pk}/delete/").status_code == 403
    assert AlertChannel.objects.filter(pk=channel.pk).exists()


def test_a_researcher_cannot_delete_a_channel(researcher_web):
    channel = AlertChannel.objects.create(name="ops log", kind="log")
    assert researcher_web.get(f"/alerts/channels/{channel.pk}/delete/").status_code == 403
    assert researcher_web.post(f"/alerts/channels/{channel.pk}/delete/").status_code == 403
    assert AlertChannel.objects.filter(pk=channel.pk).exists()
