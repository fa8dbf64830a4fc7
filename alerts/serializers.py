"""Request bodies of the alert endpoints (answers are shaped in selectors.py)."""

from __future__ import annotations

from datetime import datetime
from datetime import timezone as dt_timezone

from rest_framework import serializers

from budgets.models import Budget, Team
from costmonitor.money import MONEY_DIGITS, MONEY_PLACES

from .models import AlertChannel, AlertLevel


def _money_field(**kwargs):
    return serializers.DecimalField(max_digits=MONEY_DIGITS, decimal_places=MONEY_PLACES, min_value=0,
                                    coerce_to_string=False, **kwargs)


class UnixTimestampField(serializers.Field):
    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, (int, float)):
            raise serializers.ValidationError("A Unix timestamp (seconds).")
        try:
            return datetime.fromtimestamp(data, tz=dt_timezone.utc)
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
    levels = serializers.ListField(child=serializers.ChoiceField(choices=AlertLevel.choices), required=False)
    teams = serializers.PrimaryKeyRelatedField(queryset=Team.objects.all(), many=True, required=False)
    budgets = serializers.PrimaryKeyRelatedField(queryset=Budget.objects.all(), many=True, required=False)


class DigestSubscriptionSerializer(serializers.Serializer):
    enabled = serializers.BooleanField()
