"""Delivery through real peers: SMTP (aiosmtpd) and HTTP (Slack, webhooks) on 127.0.0.1."""

import email
import email.policy
import hashlib
import hmac
import time
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from alerts import tasks
from alerts.models import AlertDelivery, DeliveryAttempt
from alerts.selectors import delivery_stats
from alerts.services import system_alert_raise, threshold_alert_raise

from .conftest import Reply, email_channel, make_channel, slack_channel, team_budget, webhook_channel

pytestmark = pytest.mark.django_db


@pytest.fixture
def no_backoff(settings):
    settings.ALERT_RETRY_BASE_SECONDS = 0  # retries are due at once, so the test can run them


def raise_warning(budget, spent="7.60", level="warning", pct="75"):
    return threshold_alert_raise(budget=budget, period_key=timezone.localdate().isoformat(), level=level,
                                 pct=Decimal(pct), spent=Decimal(spent))


def delivery_to(alert, channel) -> AlertDelivery:
    return AlertDelivery.objects.get(alert=alert, channel=channel)


def test_email_alert_arrives_with_recipients_subject_and_amounts(smtp_peer, team):
    channel = email_channel(smtp_peer)
    alert = raise_warning(team_budget(team, limit="10"))
    delivery = delivery_to(alert, channel)
    assert tasks.deliver(delivery.pk) == "sent"
    (message,) = smtp_peer.handler.messages
    assert message["to"] == ["pi@lab.example", "finance@lab.example"]
    assert message["from"] == "alerts@lab.example"
    parsed = email.message_from_string(message["data"], policy=email.policy.default)
    assert parsed["Subject"].startswith("[CostMonitor WARNING] Daily budget warning: 76% of Metabolomics daily used")
    body = parsed.get_content()
    assert "$7.60 of $10.00 (76%)" in body and "Threshold:  75%" in body
    attempt = DeliveryAttempt.objects.get(delivery=delivery)
    assert attempt.success and attempt.smtp_reply.startswith("250")
    assert attempt.message_id and attempt.message_id in message["data"]
    delivery.refresh_from_db()
    assert delivery.status == "sent" and delivery.attempts == 1


def test_smtp_451_is_retried_then_delivered(smtp_peer, team, no_backoff):
    channel = email_channel(smtp_peer)
    smtp_peer.handler.replies = ["451 4.3.0 Mailbox temporarily unavailable"]
    delivery = delivery_to(raise_warning(team_budget(team)), channel)
    assert tasks.deliver(delivery.pk) == "retrying"
    delivery.refresh_from_db()
    assert delivery.status == "pending" and delivery.attempts == 1 and "451" in delivery.last_error
    assert tasks.deliver(delivery.pk) == "sent"
    assert len(smtp_peer.handler.messages) == 1
    replies = list(DeliveryAttempt.objects.filter(delivery=delivery).order_by("at").values_list("smtp_reply",
                                                                                                  "success"))
    assert replies[0] == ("451 4.3.0 Mailbox temporarily unavailable", False) and replies[1][1] is True


def test_smtp_550_is_not_retried_and_shows_as_alert_delivery_failed(smtp_peer, team, no_backoff):
    channel = email_channel(smtp_peer)
    smtp_peer.handler.replies = ["550 5.1.1 No such user here"]
    delivery = delivery_to(raise_warning(team_budget(team)), channel)
    assert tasks.deliver(delivery.pk) == "failed"
    assert tasks.deliver(delivery.pk) == "skipped"  # failed for good: nobody sends it again
    assert smtp_peer.handler.data_commands == 1 and smtp_peer.handler.messages == []
    delivery.refresh_from_db()
    assert delivery.status == "failed"
    stats = delivery_stats()
    assert stats["channels"]["email"]["failed_deliveries"] == 1
    (failure,) = [f for f in stats["recent_failures"] if f["channel"] == "email"]
    assert failure["error_code"] == "ALERT_DELIVERY_FAILED" and "550" in failure["error"]
    channel.refresh_from_db()
    assert "550" in channel.last_error


def test_slack_and_webhook_bodies_arrive_and_the_signature_verifies(http_peer, team):
    slack = slack_channel(http_peer)
    webhook = webhook_channel(http_peer, secret="s3cret-signing-key")
    alert = raise_warning(team_budget(team))
    assert tasks.deliver(delivery_to(alert, slack).pk) == "sent"
    assert tasks.deliver(delivery_to(alert, webhook).pk) == "sent"
    slack_request, webhook_request = http_peer.received
    assert slack_request.path == "/services/T000/B000/XXX"
    assert slack_request.json["channel"] == "#budget-alerts"
    assert "WARNING" in slack_request.json["text"] and "76% of Metabolomics daily" in slack_request.json["text"]
    body = webhook_request.json
    delivery = delivery_to(alert, webhook)
    assert body["event_id"] == str(delivery.event_id) == webhook_request.headers["x-costmonitor-event-id"]
    assert body["alert"]["alert_level"] == "warning" and body["alert"]["current_cost"] == 7.6
    assert body["alert"]["budget_limit"] == 10.0 and body["alert"]["threshold_percentage"] == 75.0
    expected = hmac.new(b"s3cret-signing-key", webhook_request.body, hashlib.sha256).hexdigest()
    assert webhook_request.headers["x-costmonitor-signature"] == f"sha256={expected}"
    assert int(webhook_request.headers["x-costmonitor-timestamp"]) == int(body["sent_at"])


def test_an_unsigned_webhook_carries_no_signature(http_peer, team):
    webhook = webhook_channel(http_peer, secret=None)
    assert tasks.deliver(delivery_to(raise_warning(team_budget(team)), webhook).pk) == "sent"
    assert "x-costmonitor-signature" not in http_peer.received[0].headers


def test_http_500_is_retried_with_the_same_event_id(http_peer, team, no_backoff):
    webhook = webhook_channel(http_peer)
    http_peer.replies = [Reply(500, b"upstream exploded")]
    delivery = delivery_to(raise_warning(team_budget(team)), webhook)
    assert tasks.deliver(delivery.pk) == "retrying"
    assert tasks.deliver(delivery.pk) == "sent"
    first, second = http_peer.received
    assert first.json["event_id"] == second.json["event_id"] == str(delivery.event_id)
    statuses = list(DeliveryAttempt.objects.filter(delivery=delivery).order_by("at").values_list("http_status",
                                                                                                   flat=True))
    assert statuses == [500, 200]


def test_http_429_waits_at_least_retry_after(http_peer, team):
    webhook = webhook_channel(http_peer)
    http_peer.replies = [Reply(429, b"slow down", {"Retry-After": "600"})]
    delivery = delivery_to(raise_warning(team_budget(team)), webhook)
    before = timezone.now()
    assert tasks.deliver(delivery.pk) == "retrying"
    delivery.refresh_from_db()
    assert delivery.status == "pending" and delivery.next_attempt_at >= before + timedelta(seconds=600)
    assert tasks.deliver(delivery.pk) == "skipped"  # not due yet


def test_http_4xx_is_permanent(http_peer, team, no_backoff):
    slack = slack_channel(http_peer)
    http_peer.replies = [Reply(404, b"no_service")]
    delivery = delivery_to(raise_warning(team_budget(team)), slack)
    assert tasks.deliver(delivery.pk) == "failed"
    assert tasks.deliver(delivery.pk) == "skipped"
    assert len(http_peer.received) == 1
    assert DeliveryAttempt.objects.get(delivery=delivery).error_code == "ALERT_DELIVERY_FAILED"


def test_a_slow_webhook_times_out_within_the_bound_and_is_retried(http_peer, team, settings):
    settings.ALERT_SEND_TIMEOUT_SECONDS = 0.5
    webhook = webhook_channel(http_peer)
    http_peer.replies = [Reply(200, delay=3)]
    delivery = delivery_to(raise_warning(team_budget(team)), webhook)
    assert tasks.deliver(delivery.pk) == "retrying"
    attempt = DeliveryAttempt.objects.get(delivery=delivery)
    assert not attempt.success and "Timed out after 0.5 s" in attempt.error
    delivery.refresh_from_db()
    assert delivery.status == "pending"


def test_a_refused_port_fails_while_the_other_channels_deliver(http_peer, smtp_peer, refused_port, team):
    broken = make_channel("broken-hook", "webhook", {"url": f"http://127.0.0.1:{refused_port}/hook"})
    email = email_channel(smtp_peer)
    slack = slack_channel(http_peer)
    alert = raise_warning(team_budget(team))
    outcomes = {d.channel.name: tasks.deliver(d.pk) for d in alert.deliveries.select_related("channel")}
    assert outcomes == {"broken-hook": "retrying", "email": "sent", "slack": "sent", "logging": "sent"}
    assert "Connection refused" in delivery_to(alert, broken).last_error
    assert len(smtp_peer.handler.messages) == 1 and len(http_peer.received) == 1
    assert delivery_to(alert, email).status == delivery_to(alert, slack).status == "sent"


def test_attempts_are_bounded(http_peer, team, settings, no_backoff):
    settings.ALERT_MAX_ATTEMPTS = 3
    webhook = webhook_channel(http_peer)
    http_peer.default = Reply(503, b"maintenance")
    delivery = delivery_to(raise_warning(team_budget(team)), webhook)
    outcomes = [tasks.deliver(delivery.pk) for _ in range(5)]
    assert outcomes == ["retrying", "retrying", "failed", "skipped", "skipped"]
    assert len(http_peer.received) == 3
    last = DeliveryAttempt.objects.filter(delivery=delivery).order_by("-at").first()
    assert last.error_code == "ALERT_DELIVERY_FAILED" and "gave up after 3 attempts" in last.error


def test_backoff_grows_exponentially(http_peer, team, settings):
    settings.ALERT_RETRY_BASE_SECONDS = 30
    webhook = webhook_channel(http_peer)
    http_peer.default = Reply(500)
    delivery = delivery_to(raise_warning(team_budget(team)), webhook)
    delays = []
    for _ in range(3):
        assert tasks.deliver(delivery.pk) == "retrying"
        delivery.refresh_from_db()
        delays.append(round((delivery.next_attempt_at - timezone.now()).total_seconds() / 30))
        AlertDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())  # let time pass
    assert delays == [1, 2, 4]


def test_a_worker_killed_mid_send_leaves_a_delivery_a_later_worker_completes(http_peer, team, settings):
    webhook = webhook_channel(http_peer)
    delivery = delivery_to(raise_warning(team_budget(team)), webhook)
    # The first worker claimed it and died before recording anything.
    AlertDelivery.objects.filter(pk=delivery.pk).update(status="sending", attempts=1, claimed_at=timezone.now())
    assert tasks.deliver(delivery.pk) == "skipped"  # a live claim is respected
    from alerts.services import deliveries_due

    assert delivery.pk not in deliveries_due()
    abandoned = timezone.now() - timedelta(seconds=settings.ALERT_CLAIM_TIMEOUT_SECONDS + 1)
    AlertDelivery.objects.filter(pk=delivery.pk).update(claimed_at=abandoned)
    assert delivery.pk in deliveries_due()  # the monitor cycle will queue it again
    assert tasks.deliver(delivery.pk) == "sent"
    delivery.refresh_from_db()
    assert delivery.status == "sent" and delivery.attempts == 2 and len(http_peer.received) == 1


def test_sending_rate_defers_the_excess_and_drops_nothing(team, settings):
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "alerts": "10/min"}
    if 60 - time.time() % 60 < 10:  # start in a fresh minute so all twelve sends share one window
        time.sleep(60 - time.time() % 60 + 0.1)
    alerts = [system_alert_raise(alert_type="manual", level="info", message=f"note {i}", dedupe_key=f"note:{i}")
              for i in range(12)]
    outcomes = [tasks.deliver(a.deliveries.get().pk) for a in alerts]
    assert outcomes.count("sent") == 10 and outcomes.count("deferred") == 2
    waiting = AlertDelivery.objects.filter(status="pending")
    assert waiting.count() == 2
    next_minute = (int(time.time()) // 60 + 1) * 60
    assert all(int(d.next_attempt_at.timestamp()) == next_minute for d in waiting)
    assert all(d.attempts == 0 for d in waiting)  # waiting for the rate is not a failed attempt
    AlertDelivery.objects.filter(status="pending").update(next_attempt_at=timezone.now())
    from alerts.models import SendWindow

    SendWindow.objects.all().delete()  # the next minute
    assert [tasks.deliver(d.pk) for d in waiting] == ["sent", "sent"]


def test_private_urls_are_refused_when_sending_unless_allowed(http_peer, team, settings):
    webhook = webhook_channel(http_peer)  # saved while private URLs are allowed (tests, local demos)
    settings.ALERTS_ALLOW_PRIVATE_URLS = False
    delivery = delivery_to(raise_warning(team_budget(team)), webhook)
    assert tasks.deliver(delivery.pk) == "failed"
    assert http_peer.received == []
    assert "127.0.0.1" in DeliveryAttempt.objects.get(delivery=delivery).error
