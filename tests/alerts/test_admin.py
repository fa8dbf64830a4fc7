"""The admin: channels without their secrets, alerts acknowledged in bulk, deliveries with their attempts."""

import pytest
from django.test import Client

from alerts import tasks
from alerts.models import AlertChannel, AlertDelivery, BudgetAlert
from alerts.services import system_alert_raise

from .conftest import webhook_channel

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_browser(admin_user):
    browser = Client()
    browser.force_login(admin_user)
    return browser


def test_the_channel_page_never_shows_secrets_and_saving_keeps_them(admin_browser, http_peer):
    channel = webhook_channel(http_peer, secret="very-secret-signing-key")
    page = admin_browser.get(f"/admin/alerts/alertchannel/{channel.pk}/change/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "very-secret-signing-key" not in html and "/costmonitor-events" not in html and "********" in html
    form = page.context["adminform"].form
    data = {"name": "webhook-renamed", "kind": "webhook", "is_active": "on",
            "settings_json": form["settings_json"].value()}
    response = admin_browser.post(f"/admin/alerts/alertchannel/{channel.pk}/change/", data)
    assert response.status_code == 302, response.content.decode()[:2000]
    channel.refresh_from_db()
    assert channel.name == "webhook-renamed" and channel.secrets["secret"] == "very-secret-signing-key"
    assert channel.secrets["url"].endswith("/costmonitor-events")


def test_admins_acknowledge_alerts_in_bulk_and_see_delivery_attempts(admin_browser, admin_user, http_peer):
    webhook_channel(http_peer)
    alerts = [system_alert_raise(alert_type="manual", level="warning", message=f"m{i}", dedupe_key=f"m:{i}")
              for i in range(2)]
    response = admin_browser.post("/admin/alerts/budgetalert/", {
        "action": "acknowledge", "_selected_action": [a.pk for a in alerts]})
    assert response.status_code == 302
    assert set(BudgetAlert.objects.values_list("acknowledged_by", flat=True)) == {admin_user.pk}
    delivery = AlertDelivery.objects.filter(channel__kind="webhook").first()
    tasks.deliver(delivery.pk)
    page = admin_browser.get(f"/admin/alerts/alertdelivery/{delivery.pk}/change/")
    assert page.status_code == 200 and "200" in page.content.decode()
    assert AlertChannel.objects.filter(kind="webhook").exists()
