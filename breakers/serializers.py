"""Request and response shapes of the circuit breaker endpoints."""

from decimal import Decimal

from rest_framework import serializers

from budgets.serializers import EstimatedTokensSerializer
from costmonitor.money import MAX_SINGLE_COST, MONEY_PLACES
from tracking.events import MAX_RESPONSE_TIME_MS, MAX_TOKENS

from . import selectors
from .models import CircuitBreaker, CostThresholdRule

_MONEY = {"max_digits": 18, "decimal_places": MONEY_PLACES, "min_value": Decimal(0), "max_value": MAX_SINGLE_COST}


class RuleSerializer(serializers.ModelSerializer):
    class Meta:
        model = CostThresholdRule
        fields = ["rule_id", "threshold_type", "threshold_value", "action", "throttle_factor", "cooldown_seconds",
                  "window_minutes", "team", "model_name", "research_category", "is_active", "last_fired_at"]
        read_only_fields = ["last_fired_at"]


class BreakerSerializer(serializers.ModelSerializer):
    """A breaker with its rules (writing `rules` replaces them) and its live state and statistics."""

    rules = RuleSerializer(many=True, required=False)
    statistics = serializers.SerializerMethodField()
    failure_count = serializers.IntegerField(source="consecutive_failures", read_only=True)

    class Meta:
        model = CircuitBreaker
        fields = ["name", "description", "state", "failure_threshold", "recovery_timeout", "throttle_rate", "rules",
                  "failure_count", "opened_at", "last_failure_time", "last_success_time", "last_state_change_at",
                  "statistics", "created_at", "updated_at"]
        read_only_fields = ["state", "opened_at", "last_failure_time", "last_success_time", "last_state_change_at",
                            "created_at", "updated_at"]
        extra_kwargs = {"name": {"validators": []}}  # uniqueness is the service's answer (field "name")

    def get_statistics(self, breaker) -> dict:
        return selectors.breaker_statistics(breaker)


class ExecuteRequestSerializer(serializers.Serializer):
    """execute_with_protection: estimated_cost, or model_name with estimated_tokens (priced)."""

    operation_type = serializers.CharField(max_length=100, required=False, default="llm_call")
    model_name = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")
    estimated_tokens = EstimatedTokensSerializer(required=False)
    estimated_cost = serializers.DecimalField(required=False, **_MONEY)
    research_category = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")
    team = serializers.IntegerField(required=False, min_value=1)
    ttl_seconds = serializers.IntegerField(required=False, min_value=1, max_value=7 * 86400)

    def validate(self, attrs):
        if attrs.get("estimated_cost") is None and not (attrs.get("model_name") and attrs.get("estimated_tokens")):
            raise serializers.ValidationError(
                {"estimated_cost": ["Send estimated_cost, or model_name with estimated_tokens."]})
        return attrs


class ExecuteResponseSerializer(serializers.Serializer):
    allowed = serializers.BooleanField()
    operation_id = serializers.UUIDField()
    breaker = serializers.CharField()
    state = serializers.CharField()
    trial = serializers.BooleanField()
    estimated_cost = serializers.FloatField()
    expires_at = serializers.DateTimeField()


class ResultRequestSerializer(serializers.Serializer):
    """update_operation_cost: the call's outcome; actual_cost, or the tokens it used (priced)."""

    success = serializers.BooleanField(required=False, default=True)
    actual_cost = serializers.DecimalField(required=False, **_MONEY)
    prompt_tokens = serializers.IntegerField(required=False, min_value=0, max_value=MAX_TOKENS)
    completion_tokens = serializers.IntegerField(required=False, min_value=0, max_value=MAX_TOKENS)
    error_type = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")
    error_message = serializers.CharField(max_length=10_000, required=False, allow_blank=True, default="")
    response_time_ms = serializers.DecimalField(max_digits=14, decimal_places=3, min_value=Decimal(0),
                                                max_value=MAX_RESPONSE_TIME_MS, required=False)
    operation_type = serializers.CharField(max_length=100, required=False)  # the reference sends it; informative
    metadata = serializers.DictField(required=False)


class ResultResponseSerializer(serializers.Serializer):
    operation_id = serializers.UUIDField()
    settled = serializers.BooleanField()
    success = serializers.BooleanField()
    actual_cost = serializers.FloatField()
    breaker = serializers.CharField()
    state = serializers.CharField()
    consecutive_failures = serializers.IntegerField()
    usage_record_id = serializers.IntegerField()


class ResetRequestSerializer(serializers.Serializer):
    clear_statistics = serializers.BooleanField(required=False, default=False)


class SystemHealthSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=["healthy", "degraded", "critical"])
    message = serializers.CharField()
    total_breakers = serializers.IntegerField()


class ManagerStatisticsSerializer(serializers.Serializer):
    breakers_created = serializers.IntegerField()
    total_operations = serializers.IntegerField()
    total_blocks = serializers.IntegerField()
    total_cost_saved = serializers.FloatField()


class SystemStatusSerializer(serializers.Serializer):
    """get_system_status: circuit_breakers is keyed by breaker name."""

    circuit_breakers = serializers.DictField(child=serializers.DictField())
    manager_statistics = ManagerStatisticsSerializer()
    system_health = SystemHealthSerializer()
