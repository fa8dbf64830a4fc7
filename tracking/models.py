"""Usage records (one per API call or batch), hourly rollups, idempotency keys and price overrides."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from costmonitor.money import money_field_kwargs


class UsageRecord(models.Model):
    class OperationKind(models.TextChoices):
        CALL = "call", "Single call"
        BATCH = "batch", "Batch operation"

    # Who and where (no single-column indexes: the (team, -occurred_at) and (user, -occurred_at) ones
    # serve those lookups, and every index is one more write per recorded call)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="usage_records",
                             db_index=False)
    team = models.ForeignKey("budgets.Team", on_delete=models.PROTECT, related_name="usage_records", db_index=False)
    api_key = models.ForeignKey("budgets.ApiKey", null=True, blank=True, on_delete=models.SET_NULL,
                                related_name="usage_records")
    # What
    kind = models.CharField(max_length=8, choices=OperationKind.choices, default=OperationKind.CALL)
    operation_name = models.CharField(max_length=200, blank=True, default="")
    operation_type = models.CharField(max_length=100, blank=True, default="llm_call")
    model_name = models.CharField(max_length=100, blank=True, default="")
    research_category = models.CharField(max_length=100, blank=True, default="general")
    experiment = models.CharField(max_length=100, blank=True, default="")
    run_id = models.CharField(max_length=100, blank=True, default="")
    # Tokens and money
    prompt_tokens = models.BigIntegerField(default=0)
    completion_tokens = models.BigIntegerField(default=0)
    total_tokens = models.BigIntegerField(default=0)
    cost_usd = models.DecimalField(**money_field_kwargs())
    price_source = models.CharField(max_length=32, default="client")  # client | genai-prices | override
    price_version = models.CharField(max_length=64, blank=True, default="")
    # Performance and outcome
    response_time_ms = models.DecimalField(max_digits=14, decimal_places=3, null=True, blank=True)
    request_size = models.BigIntegerField(null=True, blank=True)
    response_size = models.BigIntegerField(null=True, blank=True)
    success = models.BooleanField(default=True)
    error_type = models.CharField(max_length=100, blank=True, default="")
    error_message = models.TextField(blank=True, default="")
    # Batches (log_batch_operation)
    batch_size = models.IntegerField(null=True, blank=True)
    success_count = models.IntegerField(null=True, blank=True)
    error_count = models.IntegerField(null=True, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    # When: the call happened (client-supplied) vs. when we stored it
    occurred_at = models.DateTimeField(db_index=True)
    recorded_at = models.DateTimeField(auto_now_add=True)
    operation_id = models.UUIDField(null=True, blank=True, help_text="Reservation settled by this record.")

    class Meta:
        ordering = ["-occurred_at", "-id"]
        indexes = [
            models.Index(fields=["team", "-occurred_at"]),
            models.Index(fields=["user", "-occurred_at"]),
            models.Index(fields=["model_name", "-occurred_at"]),
            models.Index(fields=["research_category", "-occurred_at"]),
            models.Index(fields=["experiment", "-occurred_at"], condition=~Q(experiment=""),
                         name="usage_experiment_idx"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(cost_usd__gte=0), name="usage_cost_not_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.operation_name or self.operation_type} {self.model_name} ${self.cost_usd}"


class HourlyRollup(models.Model):
    """Per-hour totals by team, user, model, category and operation type; analytics read these (summed).

    Like the spend counters, each group's totals are spread over up to SPEND_COUNTER_SLOTS rows
    (`slot`): a recording adds to its connection's slot, so concurrent recordings of the same team,
    user, model and category do not queue on one row lock (held until each commit is on disk).
    """

    hour = models.DateTimeField()  # UTC, truncated to the hour
    team = models.ForeignKey("budgets.Team", on_delete=models.CASCADE, related_name="+", db_index=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    model_name = models.CharField(max_length=100, blank=True, default="")
    research_category = models.CharField(max_length=100, blank=True, default="")
    operation_type = models.CharField(max_length=100, blank=True, default="")
    calls = models.BigIntegerField(default=0)
    successful_calls = models.BigIntegerField(default=0)
    failed_calls = models.BigIntegerField(default=0)
    cost_usd = models.DecimalField(**money_field_kwargs())
    successful_cost_usd = models.DecimalField(**money_field_kwargs())
    prompt_tokens = models.BigIntegerField(default=0)
    completion_tokens = models.BigIntegerField(default=0)
    total_tokens = models.BigIntegerField(default=0)
    response_time_ms_sum = models.DecimalField(max_digits=20, decimal_places=3, default=0)
    response_time_count = models.BigIntegerField(default=0)
    slot = models.PositiveSmallIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["hour", "team", "user", "model_name", "research_category", "operation_type", "slot"],
                name="unique_hourly_rollup_slot"),
        ]
        indexes = [models.Index(fields=["hour"]), models.Index(fields=["team", "hour"])]

    def __str__(self) -> str:
        return f"{self.hour:%Y-%m-%d %H:00} {self.model_name or '-'}/{self.research_category or '-'}: ${self.cost_usd}"


class IdempotencyRecord(models.Model):
    """The first answer to an idempotency key, replayed on retries from the same owner."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=200)
    request_hash = models.CharField(max_length=64)
    response_status = models.PositiveSmallIntegerField(default=201)
    response_body = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "key"], name="unique_idempotency_key_per_owner")]

    def __str__(self) -> str:
        return f"{self.key} (user {self.user_id})"


class ModelPriceOverride(models.Model):
    """An admin's price for a model, effective from a date; newer rows supersede older ones."""

    model_name = models.CharField(max_length=100)
    input_per_million_usd = models.DecimalField(max_digits=14, decimal_places=6)
    output_per_million_usd = models.DecimalField(max_digits=14, decimal_places=6)
    effective_from = models.DateTimeField()
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    note = models.CharField(max_length=200, blank=True, default="")

    class Meta:
        ordering = ["model_name", "-effective_from"]
        constraints = [
            models.UniqueConstraint(fields=["model_name", "effective_from"], name="unique_price_version"),
            models.CheckConstraint(condition=Q(input_per_million_usd__gte=0) & Q(output_per_million_usd__gte=0),
                                   name="price_not_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.model_name} from {self.effective_from:%Y-%m-%d}"
