"""Alert channels through the API: who may manage them, validation, secrets encrypted and masked, URL safety."""

import pytest
from cryptography.fernet import Fernet
from django.db import connection

from alerts import crypto
from alerts.models import AlertChannel
from alerts.services import alert_create_once, channels_matching
from budgets.models import AuditLog

from .conftest import team_budget

pytestmark = pytest.mark.django_db

EMAIL = {"name": "finance-mail", "kind": "email",
         "config": {"smtp_server": "smtp.lab.example", "smtp_port": 587, "username": "alerts@lab.example",
                    "password": "app-password-123", "sender_email": "alerts@lab.example",
                    "recipient_emails": ["admin@lab.example"], "use_tls": True}}


def test_admin_creates_an_email_channel_and_the_password_never_comes_back(admin_client):
    r = admin_client.post("/api/v1/alert-channels/", EMAIL, format="json")
    assert r.status_code == 201, r.content
    data = r.json()["data"]
    assert data["config"]["password"] == "********" and data["config"]["smtp_server"] == "smtp.lab.example"
    assert "app-password-123" not in r.content.decode()
    listed = admin_client.get("/api/v1/alert-channels")
    assert "app-password-123" not in listed.content.decode()
    channel = AlertChannel.objects.get(name="finance-mail")
    assert channel.secrets == {"password": "app-password-123"}


def test_creating_and_changing_a_channel_is_audited_without_its_secrets(admin_client, admin_user):
    created = admin_client.post("/api/v1/alert-channels/", EMAIL, format="json").json()["data"]
    admin_client.patch(f"/api/v1/alert-channels/{created['id']}", {"levels": ["exceeded"]}, format="json")
    rows = list(AuditLog.objects.filter(object_type="AlertChannel", object_id=str(created["id"])).order_by("id"))
    assert [row.action for row in rows] == ["alert_channel.created", "alert_channel.updated"]
    assert all(row.actor == admin_user for row in rows)
    assert rows[1].changes["levels"] == ["exceeded"] and rows[1].changes["fields"] == ["levels"]
    assert "app-password-123" not in str([row.changes for row in rows])


def test_secrets_are_encrypted_at_rest(admin_client):
    admin_client.post("/api/v1/alert-channels/", {"name": "hook", "kind": "webhook", "config": {
        "url": "https://hooks.example.com/abc-secret-path", "secret": "signing-secret"}}, format="json")
    with connection.cursor() as cursor:
        cursor.execute("SELECT secrets FROM alerts_alertchannel WHERE name = 'hook'")
        (stored,) = cursor.fetchone()
    assert "abc-secret-path" not in stored and "signing-secret" not in stored
    assert "abc-secret-path" in crypto.decrypt_text(stored)


def test_a_rotated_key_still_reads_old_secrets_and_rotation_rewrites_them(admin_client, settings):
    admin_client.post("/api/v1/alert-channels/", EMAIL, format="json")
    old_key = crypto.derived_key(settings.SECRET_KEY).decode()
    new_key = Fernet.generate_key().decode()
    settings.FIELD_ENCRYPTION_KEY = [new_key, old_key]
    assert AlertChannel.objects.get(name="finance-mail").secrets["password"] == "app-password-123"
    from django.core.management import call_command

    call_command("alerts_rotate_secrets")
    settings.FIELD_ENCRYPTION_KEY = [new_key]
    assert AlertChannel.objects.get(name="finance-mail").secrets["password"] == "app-password-123"


def test_a_researcher_can_read_channels_but_not_create_them(researcher_client, admin_client):
    assert researcher_client.post("/api/v1/alert-channels/", EMAIL, format="json").status_code == 403
    assert researcher_client.get("/api/v1/alert-channels/").status_code == 200
    assert not AlertChannel.objects.filter(name="finance-mail").exists()


def test_an_email_channel_without_recipients_is_refused_naming_the_field(admin_client):
    body = {**EMAIL, "config": {**EMAIL["config"], "recipient_emails": []}}
    r = admin_client.post("/api/v1/alert-channels/", body, format="json")
    assert r.status_code == 400 and r.json()["error"]["code"] == "INVALID_PARAMETERS"
    assert "config.recipient_emails" in r.json()["error"]["details"]
    r = admin_client.post("/api/v1/alert-channels/", {**EMAIL, "config": {**EMAIL["config"], "smtp_port": "x"}},
                          format="json")
    assert r.status_code == 400 and "config.smtp_port" in r.json()["error"]["details"]
    r = admin_client.post("/api/v1/alert-channels/", {"name": "x", "kind": "pager"}, format="json")
    assert r.status_code == 400 and "kind" in r.json()["error"]["details"]
    assert not AlertChannel.objects.exclude(name="logging").exists()


def test_sending_back_the_masked_secret_keeps_it_and_a_new_one_replaces_it(admin_client):
    channel_id = admin_client.post("/api/v1/alert-channels/", EMAIL, format="json").json()["data"]["id"]
    shown = admin_client.get(f"/api/v1/alert-channels/{channel_id}").json()["data"]
    r = admin_client.put(f"/api/v1/alert-channels/{channel_id}", {
        "name": "finance-mail", "kind": "email", "config": {**shown["config"], "smtp_port": 2525}}, format="json")
    assert r.status_code == 200, r.content
    channel = AlertChannel.objects.get(pk=channel_id)
    assert channel.secrets["password"] == "app-password-123" and channel.config["smtp_port"] == 2525
    r = admin_client.patch(f"/api/v1/alert-channels/{channel_id}", {"config": {"password": "rotated-pw"}},
                           format="json")
    assert r.status_code == 200, r.content
    assert AlertChannel.objects.get(pk=channel_id).secrets["password"] == "rotated-pw"


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:8080/hook", "http://localhost/hook", "http://169.254.169.254/latest/meta-data/",
    "http://10.0.0.5/hook", "http://192.168.1.10/hook", "http://[::1]/hook", "http://[fd00:ec2::254]/",
    # IPv6 forms carrying an IPv4 address: NAT64 (a NAT64 gateway forwards them), 6to4, IPv4-compatible.
    "http://[64:ff9b::a9fe:a9fe]/latest/meta-data/", "http://[64:ff9b::10.0.0.5]/hook",
    "http://[2002:a9fe:a9fe::1]/", "http://[::127.0.0.1]/hook",
])
def test_private_and_metadata_urls_are_refused_when_saved(admin_client, settings, url):
    settings.ALERTS_ALLOW_PRIVATE_URLS = False
    r = admin_client.post("/api/v1/alert-channels/", {"name": "hook", "kind": "webhook", "config": {"url": url}},
                          format="json")
    assert r.status_code == 400, r.content
    assert "config.url" in r.json()["error"]["details"]
    assert not AlertChannel.objects.filter(name="hook").exists()


def test_non_http_schemes_are_refused_even_when_private_urls_are_allowed(admin_client):
    for url in ("ftp://hooks.example.com/x", "file:///etc/passwd", "gopher://example.com/"):
        r = admin_client.post("/api/v1/alert-channels/", {"name": "slack", "kind": "slack",
                                                          "config": {"webhook_url": url}}, format="json")
        assert r.status_code == 400 and "config.webhook_url" in r.json()["error"]["details"], url


def test_a_channel_limited_to_levels_teams_and_budgets_only_matches_those(admin_client, team, other_team):
    budget = team_budget(team)
    r = admin_client.post("/api/v1/alert-channels/", {
        "name": "team-slack", "kind": "slack", "config": {"webhook_url": "https://hooks.slack.com/services/T/B/X"},
        "levels": ["critical", "exceeded"], "teams": [team.pk]}, format="json")
    assert r.status_code == 201, r.content
    assert r.json()["data"]["config"]["webhook_url"] == "https://hooks.slack.com/********"
    channel = AlertChannel.objects.get(name="team-slack")

    def matches(**fields):
        alert = alert_create_once(dedupe_key=f"t:{len(fields)}:{fields}", message="m", **fields)
        return channel in channels_matching(alert)

    assert matches(alert_level="critical", team=team, budget=budget)
    assert not matches(alert_level="warning", team=team, budget=budget)
    assert not matches(alert_level="critical", team=other_team)
    assert not matches(alert_level="exceeded")  # organisation-wide: not this team's
    channel.budgets.set([budget])
    assert not matches(alert_level="critical", team=team, details={"budget": "none"})  # not about that budget
    assert matches(alert_level="critical", team=team, budget=budget, details={"budget": "same"})


def test_channels_can_be_deleted_by_admins_only_and_the_delete_is_audited(admin_client, researcher_client,
                                                                          admin_user):
    channel_id = admin_client.post("/api/v1/alert-channels/", EMAIL, format="json").json()["data"]["id"]
    assert researcher_client.delete(f"/api/v1/alert-channels/{channel_id}").status_code == 403
    assert admin_client.delete(f"/api/v1/alert-channels/{channel_id}").status_code == 204
    assert not AlertChannel.objects.filter(pk=channel_id).exists()
    assert AuditLog.objects.filter(action="alert_channel.deleted", object_id=str(channel_id), actor=admin_user).exists()
