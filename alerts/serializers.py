"""Request bodies of the alert endpoints (answers are shaped in selectors.py)."""

from __future__ import annotations

from datetime import UTC, datetime

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from budgets.models import Budget, Team
from costmonitor.money import MONEY_DIGITS, MONEY_PLACES

from .models import AlertChannel, AlertLevel


def _money_field(**kwargs):
    return serializers.DecimalField(max_digits=MONEY_DIGITS, decimal_places=MONEY_PLACES, min_value=0,
                                    coerce_to_string=False, **kwargs)


@extend_schema_field(OpenApiTypes.NUMBER)
class UnixTimestampField(serializers.Field):
    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, (int, float)):
            raise serializers.ValidationError("A Unix timestamp (seconds).")
        try:
            return datetime.fromtimestamp(data, tz=UTC)
        except (OverflowError, OSError, ValueError):
            raise serializers.ValidationError("Not a valid Unix timestamp.") from None

    def to_representation(self, value):
        return value.timestamp()


class SendAlertSerializer(serializers.Serializer):
    """send_alert's BudgetAlert (the reference's fields), optionally tied to a budget or team."""

    timestamp = UnixTimestampField(required=False)
    alert_level = serializers.ChoiceField(choices=AlertLevel.choices)
    period_type = serializers.CharField(required=False, allow_blank=True, max_length=16, default="")
    period_key = serializers.CharField(required=False, allow_blank=True, max_length=16, default="")
    current_cost = _money_field(required=False, default=0)
    budget_limit = _money_field(required=False, allow_null=True, default=None)
    percentage_used = serializers.DecimalField(max_digits=12, decimal_places=2, required=False, allow_null=True,
                                               min_value=0, default=None)
    threshold_percentage = serializers.DecimalField(max_digits=8, decimal_places=2, required=False,
                                                    allow_null=True, min_value=0, default=None)
    message = serializers.CharField(max_length=2000)
    budget = serializers.PrimaryKeyRelatedField(queryset=Budget.objects.all(), required=False, allow_null=True)
    team = serializers.PrimaryKeyRelatedField(queryset=Team.objects.all(), required=False, allow_null=True)
    details = serializers.DictField(required=False, default=dict)

    def validate(self, attrs):
        budget = attrs.get("budget")
        if budget is not None and attrs.get("team") is None and budget.team_id:
            attrs["team"] = budget.team
        return attrs


class TestChannelsSerializer(serializers.Serializer):
    channel_ids = serializers.ListField(child=serializers.IntegerField(min_value=1), required=False,
                                        allow_empty=False, max_length=100)


class ChannelWriteSerializer(serializers.Serializer):
    """A channel: `config` carries the kind's settings; secrets in it are write-only."""

    name = serializers.CharField(max_length=100)
    kind = serializers.ChoiceField(choices=AlertChannel.Kind.choices)
    is_active = serializers.BooleanField(required=False)
    config = serializers.DictField(required=False)
    levels = serializers.ListField(child=serializers.CharField(), required=False,
                                   help_text="Levels this channel receives (info, warning, critical, exceeded); "
                                             "empty for all.")
    teams = serializers.PrimaryKeyRelatedField(queryset=Team.objects.all(), many=True, required=False)
    budgets = serializers.PrimaryKeyRelatedField(queryset=Budget.objects.all(), many=True, required=False)


class DigestSubscriptionSerializer(serializers.Serializer):
    enabled = serializers.BooleanField()


# --- Answers (documentation of the shapes built in selectors.py and services.py) -------------------

class NamedRefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()


class AlertSerializer(serializers.Serializer):
    """The reference's BudgetAlert fields, plus id, type, budget, team and acknowledgement."""

    id = serializers.IntegerField()
    timestamp = serializers.FloatField()
    alert_level = serializers.ChoiceField(choices=AlertLevel.choices)
    alert_type = serializers.CharField()
    period_type = serializers.CharField()
    period_key = serializers.CharField()
    current_cost = serializers.FloatField()
    budget_limit = serializers.FloatField(allow_null=True)
    percentage_used = serializers.FloatField(allow_null=True)
    threshold_percentage = serializers.FloatField(allow_null=True)
    message = serializers.CharField()
    budget = NamedRefSerializer(allow_null=True)
    team = NamedRefSerializer(allow_null=True)
    details = serializers.DictField()
    acknowledged = serializers.BooleanField()
    acknowledged_at = serializers.FloatField(allow_null=True)
    acknowledged_by = serializers.CharField(allow_null=True)


class ChannelSerializer(serializers.Serializer):
    """A channel with its secrets masked."""

    id = serializers.IntegerField()
    name = serializers.CharField()
    kind = serializers.CharField()
    is_active = serializers.BooleanField()
    config = serializers.DictField()
    levels = serializers.ListField(child=serializers.CharField())
    teams = serializers.ListField(child=serializers.IntegerField())
    budgets = serializers.ListField(child=serializers.IntegerField())
    last_error = serializers.CharField()
    last_error_at = serializers.FloatField(allow_null=True)
    last_sent_at = serializers.FloatField(allow_null=True)
    created_at = serializers.FloatField()


class SendAlertResultSerializer(serializers.Serializer):
    alert_id = serializers.IntegerField()
    delivery_results = serializers.DictField(child=serializers.DictField(),
                                             help_text="Per channel name: success, timestamp and what the "
                                                       "channel reports (recipients/message_id, channel/"
                                                       "message_ts, log_level), or error and will_retry.")
    overall_success = serializers.BooleanField()
    failed_channels = serializers.ListField(child=serializers.CharField())
    pending_channels = serializers.ListField(child=serializers.CharField(),
                                             help_text="Failed channels that will be retried by the workers.")


class ChannelTestResultSerializer(serializers.Serializer):
    success = serializers.BooleanField()
    message = serializers.CharField(required=False)
    error = serializers.CharField(required=False)
    response_time_ms = serializers.IntegerField()


class ChannelStatsSerializer(serializers.Serializer):
    kind = serializers.CharField()
    total_attempts = serializers.IntegerField()
    successful_deliveries = serializers.IntegerField()
    failed_deliveries = serializers.IntegerField()
    success_rate = serializers.FloatField()
    avg_response_time_ms = serializers.IntegerField()


class RecentFailureSerializer(serializers.Serializer):
    timestamp = serializers.FloatField()
    channel = serializers.CharField()
    error = serializers.CharField()
    error_code = serializers.CharField(allow_null=True)


class DeliveryStatsSerializer(serializers.Serializer):
    total_alerts_sent = serializers.IntegerField()
    successful_deliveries = serializers.IntegerField()
    failed_deliveries = serializers.IntegerField()
    success_rate = serializers.FloatField()
    channels = serializers.DictField(child=ChannelStatsSerializer())
    recent_failures = RecentFailureSerializer(many=True)
    deliveries = serializers.DictField(child=serializers.IntegerField())


class DigestStateSerializer(serializers.Serializer):
    enabled = serializers.BooleanField()
    email = serializers.CharField()
    last_sent_for = serializers.DateField(allow_null=True)


class BudgetFlagSerializer(serializers.Serializer):
    percentage_used = serializers.FloatField()
    over_budget = serializers.BooleanField()


class MonitoringCycleSerializer(serializers.Serializer):
    cycle_completed = serializers.BooleanField()
    alerts_generated = serializers.IntegerField()
    anomalies_detected = serializers.IntegerField()
    threshold_alerts = serializers.IntegerField()
    forecast_alerts = serializers.IntegerField()
    reservations_expired = serializers.IntegerField()
    deliveries_queued = serializers.IntegerField()
    budgets_checked = serializers.IntegerField()


class BudgetCheckResultsSerializer(serializers.Serializer):
    budget_status = serializers.DictField(child=BudgetFlagSerializer())
    monitoring_cycle = MonitoringCycleSerializer()


class TriggerBudgetCheckSerializer(serializers.Serializer):
    results = BudgetCheckResultsSerializer()
