"""Cost circuit breakers (the reference's CostCircuitBreakerManager): breakers, their threshold rules,
the operations they admitted, and an audit row for every change of state.

All of it lives in the database: every web process and worker sees the same breaker, and every
decision is taken under the breaker's row lock (see services.py), never in process memory.
"""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.db.models import Q

from costmonitor.money import money_field_kwargs

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
# /api/v1/breakers/status is the system status and /breakers/new/ the portal's create form: not breakers.
RESERVED_NAMES = frozenset({"status", "new"})
FRACTION = {"max_digits": 5, "decimal_places": 4,
            "validators": [MinValueValidator(Decimal("0")), MaxValueValidator(Decimal("1"))]}


class CircuitBreaker(models.Model):
    class State(models.TextChoices):
        CLOSED = "closed", "Closed (calls flow)"
        OPEN = "open", "Open (calls blocked)"
        HALF_OPEN = "half_open", "Half-open (one trial call)"

    name = models.CharField(max_length=100, unique=True,
                            validators=[RegexValidator(NAME_PATTERN, "Letters, digits, '_', '-' and '.' only.")])
    description = models.CharField(max_length=300, blank=True, default="")
    state = models.CharField(max_length=10, choices=State.choices, default=State.CLOSED)
    failure_threshold = models.PositiveIntegerField(default=5, validators=[MinValueValidator(1)],
                                                    help_text="Consecutive failed calls that open the breaker.")
    recovery_timeout = models.FloatField(default=60.0, validators=[MinValueValidator(0.001)],
                                         help_text="Seconds an open breaker waits before admitting one trial call.")
    throttle_rate = models.DecimalField(default=Decimal("1"), **FRACTION,
                                        help_text="Fraction of calls admitted at all times (1 = all).")
    consecutive_failures = models.PositiveIntegerField(default=0)
    opened_at = models.DateTimeField(null=True, blank=True)
    half_open_trial_operation = models.UUIDField(null=True, blank=True)
    trial_started_at = models.DateTimeField(null=True, blank=True)
    last_failure_time = models.DateTimeField(null=True, blank=True)
    last_success_time = models.DateTimeField(null=True, blank=True)
    last_state_change_at = models.DateTimeField(null=True, blank=True)
    # The reference's statistics; total_calls = allowed_calls + blocked_calls + throttled_calls.
    total_calls = models.BigIntegerField(default=0)
    allowed_calls = models.BigIntegerField(default=0)
    blocked_calls = models.BigIntegerField(default=0)
    cost_blocked_calls = models.BigIntegerField(default=0)
    throttled_calls = models.BigIntegerField(default=0)
    total_estimated_cost = models.DecimalField(**money_field_kwargs())
    total_actual_cost = models.DecimalField(**money_field_kwargs())
    cost_savings = models.DecimalField(**money_field_kwargs())
    # Calls evaluated while throttling: call n is admitted iff ceil(n·f) > ceil((n-1)·f).
    throttle_counter = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(condition=Q(failure_threshold__gte=1), name="breaker_failure_threshold_positive"),
            models.CheckConstraint(condition=Q(recovery_timeout__gt=0), name="breaker_recovery_timeout_positive"),
            models.CheckConstraint(condition=Q(throttle_rate__gte=0) & Q(throttle_rate__lte=1),
                                   name="breaker_throttle_rate_fraction"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.state})"

    def clean(self):
        if self.name in RESERVED_NAMES:
            raise ValidationError({"name": f"{self.name!r} is reserved; choose another name."})


class CostThresholdRule(models.Model):
    """The reference's CostThresholdRule: when its value reaches threshold_value, the action applies."""

    class ThresholdType(models.TextChoices):
        PERCENTAGE_DAILY = "percentage_daily", "Percentage of the daily budget"
        PERCENTAGE_MONTHLY = "percentage_monthly", "Percentage of the monthly budget"
        ABSOLUTE_DAILY = "absolute_daily", "Spend today (USD)"
        ABSOLUTE_MONTHLY = "absolute_monthly", "Spend this month (USD)"
        OPERATION_COST = "operation_cost", "Estimated cost of one operation (USD)"
        RATE_PER_MINUTE = "rate_per_minute", "Spend rate (USD per minute over the window)"
        OPERATION_TOKENS = "operation_tokens", "Estimated tokens of one operation"

    class Action(models.TextChoices):
        BLOCK = "block", "Block (503)"
        THROTTLE = "throttle", "Throttle (admit a fraction, 429 for the rest)"
        ALERT_ONLY = "alert_only", "Alert only"

    breaker = models.ForeignKey(CircuitBreaker, on_delete=models.CASCADE, related_name="rules")
    rule_id = models.CharField(max_length=100, validators=[RegexValidator(NAME_PATTERN)])
    threshold_type = models.CharField(max_length=24, choices=ThresholdType.choices)
    threshold_value = models.DecimalField(max_digits=18, decimal_places=6,
                                          validators=[MinValueValidator(Decimal("0"))])
    action = models.CharField(max_length=12, choices=Action.choices, default=Action.BLOCK)
    throttle_factor = models.DecimalField(default=Decimal("0.5"), **FRACTION,
                                          help_text="Throttle rules: fraction of calls admitted while it fires.")
    cooldown_seconds = models.PositiveIntegerField(
        default=60, help_text="Least time between two alerts of this rule; also the Retry-After of its refusals.")
    window_minutes = models.PositiveIntegerField(default=5, validators=[MinValueValidator(1)],
                                                 help_text="rate_per_minute rules: the window the rate is taken over.")
    # Optional scope: the rule applies only to matching calls, and measures only their spend.
    team = models.ForeignKey("budgets.Team", null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    model_name = models.CharField(max_length=100, blank=True, default="")
    research_category = models.CharField(max_length=100, blank=True, default="")
    is_active = models.BooleanField(default=True)
    last_fired_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["breaker", "rule_id"]
        constraints = [
            models.UniqueConstraint(fields=["breaker", "rule_id"], name="unique_rule_per_breaker"),
            models.CheckConstraint(condition=Q(threshold_value__gte=0), name="rule_threshold_not_negative"),
            models.CheckConstraint(condition=Q(throttle_factor__gte=0) & Q(throttle_factor__lte=1),
                                   name="rule_throttle_factor_fraction"),
        ]

    def __str__(self) -> str:
        return f"{self.rule_id}: {self.threshold_type} ≥ {self.threshold_value} → {self.action}"

    @property
    def is_scoped(self) -> bool:
        return bool(self.team_id or self.model_name or self.research_category)


class BreakerOperation(models.Model):
    """A call a breaker admitted; its operation_id is also the ledger reservation's."""

    class Status(models.TextChoices):
        ALLOWED = "allowed", "Allowed (in flight)"
        SETTLED = "settled", "Settled"
        EXPIRED = "expired", "Expired (never settled)"

    operation_id = models.UUIDField(unique=True, editable=False)
    breaker = models.ForeignKey(CircuitBreaker, on_delete=models.CASCADE, related_name="operations")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    team = models.ForeignKey("budgets.Team", on_delete=models.CASCADE, related_name="+")
    operation_type = models.CharField(max_length=100, blank=True, default="llm_call")
    model_name = models.CharField(max_length=100, blank=True, default="")
    research_category = models.CharField(max_length=100, blank=True, default="")
    estimated_cost = models.DecimalField(**money_field_kwargs())
    estimated_input_tokens = models.BigIntegerField(default=0)
    estimated_output_tokens = models.BigIntegerField(default=0)
    is_trial = models.BooleanField(default=False)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.ALLOWED)
    actual_cost = models.DecimalField(max_digits=18, decimal_places=6, null=True, blank=True)
    success = models.BooleanField(null=True, blank=True)
    error_type = models.CharField(max_length=100, blank=True, default="")
    created_at = models.DateTimeField(db_index=True)
    settled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["breaker", "status", "created_at"])]

    def __str__(self) -> str:
        return f"{self.operation_id} {self.status}"


class BreakerEvent(models.Model):
    """Audit row for every change of a breaker's state, a reset, or a rule that fired."""

    class Kind(models.TextChoices):
        STATE_CHANGE = "state_change", "State change"
        RULE_FIRED = "rule_fired", "Rule fired"
        RESET = "reset", "Reset"

    breaker = models.ForeignKey(CircuitBreaker, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.STATE_CHANGE)
    from_state = models.CharField(max_length=10, choices=CircuitBreaker.State.choices)
    to_state = models.CharField(max_length=10, choices=CircuitBreaker.State.choices)
    reason = models.CharField(max_length=300)
    rule_id = models.CharField(max_length=100, blank=True, default="")
    operation_id = models.UUIDField(null=True, blank=True)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                              related_name="+")
    details = models.JSONField(default=dict, blank=True)
    at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["-at", "-id"]

    def __str__(self) -> str:
        return f"{self.breaker.name}: {self.from_state} → {self.to_state} ({self.reason})"
