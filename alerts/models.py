"""Alerts as state: channels, budget/system alerts (one per dedupe key), deliveries and their attempts.

An alert row is the record; each matching channel gets one delivery row (an outbox entry) that a
worker claims with a conditional UPDATE before sending, and every send writes an attempt row.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from costmonitor.money import money_field_kwargs

from .crypto import EncryptedJSONField


class AlertLevel(models.TextChoices):
    INFO = "info", "Info"
    WARNING = "warning", "Warning"
    CRITICAL = "critical", "Critical"
    EXCEEDED = "exceeded", "Exceeded"


LEVEL_ORDER = [AlertLevel.INFO, AlertLevel.WARNING, AlertLevel.CRITICAL, AlertLevel.EXCEEDED]


class AlertChannel(models.Model):
    """Where alerts go. `config` holds the kind's plain settings, `secrets` its encrypted ones."""

    class Kind(models.TextChoices):
        EMAIL = "email", "Email"
        SLACK = "slack", "Slack"
        WEBHOOK = "webhook", "Webhook"
        LOG = "log", "Log"

    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    config = models.JSONField(default=dict, blank=True)
    secrets = EncryptedJSONField(help_text="SMTP password, webhook/Slack URL, signing secret (encrypted).")
    # Empty means "all": every level, every team, every budget.
    levels = models.JSONField(default=list, blank=True)
    teams = models.ManyToManyField("budgets.Team", blank=True, related_name="alert_channels")
    budgets = models.ManyToManyField("budgets.Budget", blank=True, related_name="alert_channels")
    is_active = models.BooleanField(default=True)
    last_error = models.TextField(blank=True, default="")
    last_error_at = models.DateTimeField(null=True, blank=True)
    last_sent_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.kind})"


class BudgetAlert(models.Model):
    """The reference's BudgetAlert, plus what it is about and who acknowledged it."""

    class AlertType(models.TextChoices):
        THRESHOLD = "threshold", "Threshold crossed"
        FORECAST = "forecast", "Forecast over budget"
        ANOMALY = "anomaly", "Spend anomaly"
        BREAKER = "breaker", "Circuit breaker"
        MANUAL = "manual", "Sent manually"
        TEST = "test", "Test"

    timestamp = models.DateTimeField(default=timezone.now, db_index=True)
    alert_level = models.CharField(max_length=10, choices=AlertLevel.choices)
    alert_type = models.CharField(max_length=12, choices=AlertType.choices, default=AlertType.THRESHOLD)
    period_type = models.CharField(max_length=16, blank=True, default="")
    period_key = models.CharField(max_length=16, blank=True, default="")
    current_cost = models.DecimalField(**money_field_kwargs())
    budget_limit = models.DecimalField(**money_field_kwargs(null=True, blank=True, default=None))
    percentage_used = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    threshold_percentage = models.DecimalField(max_digits=8, decimal_places=2, null=True, blank=True)
    message = models.TextField()
    budget = models.ForeignKey("budgets.Budget", null=True, blank=True, on_delete=models.SET_NULL,
                               related_name="alerts")
    team = models.ForeignKey("budgets.Team", null=True, blank=True, on_delete=models.SET_NULL, related_name="alerts")
    # Decides "exactly once": threshold:<budget>:<period>:<level>, forecast:<budget>:<period>, …
    dedupe_key = models.CharField(max_length=200, unique=True)
    details = models.JSONField(default=dict, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    acknowledged_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                        related_name="+")
    acknowledged_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-timestamp", "-id"]
        indexes = [
            models.Index(fields=["team", "-timestamp"]),
            models.Index(fields=["budget", "period_key"]),
            models.Index(fields=["acknowledged_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.alert_level}: {self.message[:60]}"


class AlertDelivery(models.Model):
    """One alert to one channel: the outbox row a worker claims, sends and records."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SENDING = "sending", "Sending"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"

    # The webhook's event id: stable across retries so receivers can drop a duplicate.
    event_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    alert = models.ForeignKey(BudgetAlert, on_delete=models.CASCADE, related_name="deliveries")
    channel = models.ForeignKey(AlertChannel, on_delete=models.CASCADE, related_name="deliveries")
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    claimed_at = models.DateTimeField(null=True, blank=True)
    claim_token = models.UUIDField(null=True, blank=True)
    enqueued_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["alert", "channel"], name="one_delivery_per_alert_channel")]
        indexes = [models.Index(fields=["status", "next_attempt_at"])]
        verbose_name_plural = "alert deliveries"

    def __str__(self) -> str:
        return f"alert {self.alert_id} → {self.channel_id}: {self.status}"


class DeliveryAttempt(models.Model):
    """One send (or channel test): what the peer answered and how long it took. Stats read these."""

    delivery = models.ForeignKey(AlertDelivery, null=True, blank=True, on_delete=models.CASCADE,
                                 related_name="attempt_rows")
    channel = models.ForeignKey(AlertChannel, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    channel_name = models.CharField(max_length=100)
    channel_kind = models.CharField(max_length=16)
    is_test = models.BooleanField(default=False)
    success = models.BooleanField()
    permanent = models.BooleanField(default=False)
    error = models.TextField(blank=True, default="")
    error_code = models.CharField(max_length=32, blank=True, default="")
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    smtp_reply = models.CharField(max_length=300, blank=True, default="")
    message_id = models.CharField(max_length=300, blank=True, default="")
    response_time_ms = models.PositiveIntegerField(default=0)
    at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-at", "-id"]

    def __str__(self) -> str:
        return f"{self.channel_name} {'ok' if self.success else 'failed'} at {self.at:%Y-%m-%d %H:%M:%S}"


class SendWindow(models.Model):
    """Messages sent to one channel in one minute: the shared counter behind the alert sending rate."""

    channel = models.ForeignKey(AlertChannel, on_delete=models.CASCADE, related_name="+")
    window_start = models.BigIntegerField()  # Unix seconds at the window's start
    count = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["channel", "window_start"], name="one_window_per_channel")]

    def __str__(self) -> str:
        return f"channel {self.channel_id} at {self.window_start}: {self.count}"


class AnomalyIncident(models.Model):
    """A spend rate far above baseline for one scope; open until the rate is back to normal."""

    scope = models.CharField(max_length=200)  # "team:3", "model:gpt-4o", "category:genomics"
    started_at = models.DateTimeField()
    last_seen_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)
    peak_spend = models.DecimalField(**money_field_kwargs())
    alert = models.ForeignKey(BudgetAlert, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        ordering = ["-started_at"]
        constraints = [models.UniqueConstraint(fields=["scope"], condition=Q(ended_at__isnull=True),
                                               name="one_open_incident_per_scope")]

    def __str__(self) -> str:
        return f"{self.scope} since {self.started_at:%Y-%m-%d %H:%M}"


class DigestSubscription(models.Model):
    """A user's choice to get the daily spend digest, and the last day it covered (so it goes once)."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="alert_digest")
    enabled = models.BooleanField(default=True)
    last_sent_for = models.DateField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.user} digest {'on' if self.enabled else 'off'}"
