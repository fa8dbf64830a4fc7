"""Serializers for the platform endpoints (API keys, health)."""

from rest_framework import serializers

from budgets.models import ApiKey


class ApiKeySerializer(serializers.ModelSerializer):
    is_active = serializers.BooleanField(read_only=True)

    class Meta:
        model = ApiKey
        fields = ["id", "name", "prefix", "team", "created_at", "last_used_at", "revoked_at", "is_active"]
        read_only_fields = ["id", "prefix", "created_at", "last_used_at", "revoked_at", "is_active"]


class ApiKeyCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    team = serializers.IntegerField(required=False, allow_null=True)


class ApiKeyCreatedSerializer(ApiKeySerializer):
    key = serializers.CharField(read_only=True, help_text="The key itself. Shown once; store it now.")

    class Meta(ApiKeySerializer.Meta):
        fields = [*ApiKeySerializer.Meta.fields, "key"]


class HealthComponentsSerializer(serializers.Serializer):
    budget_manager = serializers.BooleanField()
    api_metrics_logger = serializers.BooleanField()
    cost_persistence = serializers.BooleanField()
    alert_system = serializers.BooleanField()
    real_time_monitor = serializers.BooleanField()
    circuit_breaker_manager = serializers.BooleanField()


class HealthChecksSerializer(serializers.Serializer):
    """The probes behind the component flags."""

    database = serializers.BooleanField()
    cache = serializers.BooleanField()
    worker_heartbeat = serializers.BooleanField()


class HealthSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=["healthy", "degraded", "unhealthy"])
    timestamp = serializers.FloatField()
    uptime_seconds = serializers.FloatField()
    request_count = serializers.IntegerField()
    components = HealthComponentsSerializer()
    checks = HealthChecksSerializer()
