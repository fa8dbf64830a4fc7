"""Response shapes for usage records, and documentation-only request shapes for the schema.

Requests are validated by tracking.events (fast, hand-written); these serializers describe them.
"""

from rest_framework import serializers

from .models import UsageRecord


def usage_record_dict(record) -> dict:
    """A stored record as JSON types, field for field like UsageRecordSerializer (which documents it).

    Hand-built: a ModelSerializer rebuilds its fields on every instantiation, which costs more than
    the whole database work of a track request.
    """
    return {
        "id": record.pk, "kind": record.kind, "operation_name": record.operation_name,
        "operation_type": record.operation_type, "model_name": record.model_name,
        "research_category": record.research_category, "experiment": record.experiment, "run_id": record.run_id,
        "prompt_tokens": record.prompt_tokens, "completion_tokens": record.completion_tokens,
        "total_tokens": record.total_tokens, "cost_usd": float(record.cost_usd), "price_source": record.price_source,
        "price_version": record.price_version,
        "response_time_ms": float(record.response_time_ms) if record.response_time_ms is not None else None,
        "request_size": record.request_size, "response_size": record.response_size, "success": record.success,
        "error_type": record.error_type, "error_message": record.error_message, "batch_size": record.batch_size,
        "success_count": record.success_count, "error_count": record.error_count, "metadata": record.metadata,
        "occurred_at": _iso(record.occurred_at), "recorded_at": _iso(record.recorded_at),
        "operation_id": str(record.operation_id) if record.operation_id else None,
        "user": record.user.username, "team": record.team_id, "team_name": record.team.name,
        "api_key": record.api_key_id,
    }


def _iso(moment) -> str:
    value = moment.isoformat()
    return value[:-6] + "Z" if value.endswith("+00:00") else value


class UsageRecordSerializer(serializers.ModelSerializer):
    user = serializers.CharField(source="user.username", read_only=True)
    team_name = serializers.CharField(source="team.name", read_only=True)

    class Meta:
        model = UsageRecord
        fields = [
            "id", "kind", "operation_name", "operation_type", "model_name", "research_category", "experiment",
            "run_id", "prompt_tokens", "completion_tokens", "total_tokens", "cost_usd", "price_source",
            "price_version", "response_time_ms", "request_size", "response_size", "success", "error_type",
            "error_message", "batch_size", "success_count", "error_count", "metadata", "occurred_at",
            "recorded_at", "operation_id", "user", "team", "team_name", "api_key",
        ]


class TokenUsageSerializer(serializers.Serializer):
    prompt_tokens = serializers.IntegerField(min_value=0)
    completion_tokens = serializers.IntegerField(min_value=0)
    total_tokens = serializers.IntegerField(min_value=0, required=False)


class TrackCostRequestSerializer(serializers.Serializer):
    """log_api_call fields, or the short shape {operation_type, cost, tokens, model}."""

    operation_name = serializers.CharField(required=False, max_length=200)
    operation_type = serializers.CharField(required=False, max_length=100, default="llm_call")
    model_name = serializers.CharField(required=False, max_length=100)
    model = serializers.CharField(required=False, help_text="Alias of model_name (short shape).")
    research_category = serializers.CharField(required=False, default="general")
    token_usage = TokenUsageSerializer(required=False)
    tokens = serializers.IntegerField(required=False, min_value=0, help_text="Short shape: total tokens.")
    cost_usd = serializers.DecimalField(max_digits=18, decimal_places=6, required=False, min_value=0,
                                        help_text="Omit to price from tokens and model (genai-prices/overrides).")
    cost = serializers.DecimalField(max_digits=18, decimal_places=6, required=False, help_text="Alias of cost_usd.")
    response_time_ms = serializers.DecimalField(max_digits=14, decimal_places=3, required=False)
    request_size = serializers.IntegerField(required=False, min_value=0)
    response_size = serializers.IntegerField(required=False, min_value=0)
    success = serializers.BooleanField(required=False, default=True)
    error_type = serializers.CharField(required=False)
    error_message = serializers.CharField(required=False)
    metadata = serializers.DictField(required=False)
    occurred_at = serializers.DateTimeField(required=False, help_text="When the call happened; default now.")
    experiment = serializers.CharField(required=False)
    run_id = serializers.CharField(required=False)
    team = serializers.IntegerField(required=False, help_text="Team id; default the key's or your first team.")
    operation_id = serializers.UUIDField(required=False, help_text="Settles this reservation.")
    request_id = serializers.CharField(required=False, help_text="Idempotency key (or the Idempotency-Key header).")


class BatchOperationRequestSerializer(serializers.Serializer):
    """log_batch_operation fields."""

    operation_name = serializers.CharField()
    batch_size = serializers.IntegerField(min_value=0)
    total_tokens = serializers.IntegerField(min_value=0, required=False)
    total_cost = serializers.DecimalField(max_digits=24, decimal_places=6, required=False)
    processing_time_ms = serializers.DecimalField(max_digits=16, decimal_places=3, required=False)
    success_count = serializers.IntegerField(min_value=0, required=False)
    error_count = serializers.IntegerField(min_value=0, required=False)
    research_category = serializers.CharField(required=False)
    model_name = serializers.CharField(required=False)
    request_id = serializers.CharField(required=False)


class BulkTrackRequestSerializer(serializers.Serializer):
    events = TrackCostRequestSerializer(many=True, help_text="Up to 1,000 track bodies, stored all or nothing.")


class BulkTrackResponseSerializer(serializers.Serializer):
    recorded = serializers.IntegerField()
    total_cost_usd = serializers.DecimalField(max_digits=24, decimal_places=6)
    ids = serializers.ListField(child=serializers.IntegerField())
