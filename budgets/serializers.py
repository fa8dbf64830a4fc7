"""Request and response shapes of the budget endpoints."""

from decimal import Decimal

from rest_framework import serializers

from costmonitor.money import MAX_RESERVATION, MAX_SINGLE_COST, MONEY_PLACES

from .models import Budget

_MONEY = {"max_digits": 18, "decimal_places": MONEY_PLACES}


class BudgetCheckRequestSerializer(serializers.Serializer):
    cost_amount = serializers.DecimalField(min_value=Decimal(0), max_value=MAX_SINGLE_COST, **_MONEY)
    operation_type = serializers.CharField(max_length=100, required=False, default="llm_call")
    research_category = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")
    model_name = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")
    team = serializers.IntegerField(required=False, min_value=1)


class EstimatedTokensSerializer(serializers.Serializer):
    input = serializers.IntegerField(min_value=0, max_value=100_000_000)
    output = serializers.IntegerField(min_value=0, max_value=100_000_000, required=False, default=0)


class ReserveRequestSerializer(serializers.Serializer):
    """estimated_cost, or model_name with estimated_tokens (per call) × calls."""

    estimated_cost = serializers.DecimalField(min_value=Decimal(0), max_value=MAX_RESERVATION, required=False,
                                              **_MONEY)
    model_name = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")
    estimated_tokens = EstimatedTokensSerializer(required=False)
    calls = serializers.IntegerField(min_value=1, max_value=1_000_000, required=False, default=1)
    operation_type = serializers.CharField(max_length=100, required=False, default="llm_call")
    research_category = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")
    team = serializers.IntegerField(required=False, min_value=1)
    ttl_seconds = serializers.IntegerField(required=False, min_value=1, max_value=7 * 86400)

    def validate(self, attrs):
        if attrs.get("estimated_cost") is None:
            if not (attrs.get("model_name") and attrs.get("estimated_tokens")):
                raise serializers.ValidationError(
                    {"estimated_cost": ["Send estimated_cost, or model_name with estimated_tokens."]})
        return attrs


class ReservationSerializer(serializers.Serializer):
    allowed = serializers.BooleanField()
    operation_id = serializers.UUIDField()
    estimated_cost = serializers.DecimalField(**_MONEY)
    expires_at = serializers.DateTimeField()
    status = serializers.CharField()


class BudgetLimitsSerializer(serializers.Serializer):
    daily_budget = serializers.DecimalField(min_value=Decimal(0), max_value=Decimal("1e11"), required=False, **_MONEY)
    monthly_budget = serializers.DecimalField(min_value=Decimal(0), max_value=Decimal("1e11"), required=False,
                                              **_MONEY)

    def validate(self, attrs):
        if not attrs:
            raise serializers.ValidationError({"daily_budget": ["Send daily_budget and/or monthly_budget."]})
        return attrs


_PERCENT = {"min_value": Decimal("0.01"), "max_value": Decimal("1000")}


class BudgetSerializer(serializers.ModelSerializer):
    """Field-level checks here; the rules between fields (scope ↔ target, dates, rising thresholds)
    are the service's, so the API and the admin enforce the same ones."""

    class Meta:
        model = Budget
        fields = ["id", "name", "scope", "team", "user", "research_category", "model_name", "period", "starts_on",
                  "ends_on", "limit_usd", "warning_percentage", "critical_percentage", "exceeded_percentage",
                  "enforcement", "is_active", "is_global_default", "created_at", "updated_at"]
        read_only_fields = ["is_global_default", "created_at", "updated_at"]
        extra_kwargs = {
            "limit_usd": {"min_value": Decimal(0), "max_value": Decimal("1e11")},
            "warning_percentage": _PERCENT, "critical_percentage": _PERCENT, "exceeded_percentage": _PERCENT,
        }
        validators = []  # uniqueness of the global budgets is the service's concern, not the client's


class TrendsQuerySerializer(serializers.Serializer):
    days = serializers.IntegerField(min_value=1, max_value=366, required=False, default=30)


class BudgetStatusQuerySerializer(serializers.Serializer):
    include_projections = serializers.BooleanField(required=False, default=True)


# --- Response shapes (documentation: the selectors build these dicts) ---------------------------

class PeriodStatusSerializer(serializers.Serializer):
    budget_id = serializers.IntegerField()
    budget_name = serializers.CharField()
    scope = serializers.CharField()
    period_type = serializers.CharField()
    period_key = serializers.CharField()
    enforcement = serializers.CharField()
    total_cost = serializers.FloatField()
    reserved_cost = serializers.FloatField()
    projected_cost = serializers.FloatField()
    percentage_used = serializers.FloatField()
    budget_limit = serializers.FloatField()
    over_budget = serializers.BooleanField()
    health = serializers.CharField()


class CostBreakdownSerializer(serializers.Serializer):
    by_category = serializers.DictField(child=serializers.FloatField())
    by_operation = serializers.DictField(child=serializers.FloatField())


class BudgetCheckResponseSerializer(serializers.Serializer):
    """check_budget_status."""

    operation_allowed = serializers.BooleanField()
    budget_health = serializers.ChoiceField(choices=["healthy", "warning", "critical", "exceeded"])
    daily_status = PeriodStatusSerializer(allow_null=True)
    monthly_status = PeriodStatusSerializer(allow_null=True)
    alerts_generated = serializers.ListField(child=serializers.DictField())
    cost_breakdown = CostBreakdownSerializer()
    budgets = PeriodStatusSerializer(many=True)
    denied_by = PeriodStatusSerializer(allow_null=True)


class SummaryPeriodSerializer(serializers.Serializer):
    total_cost = serializers.FloatField()
    budget_limit = serializers.FloatField()
    percentage_used = serializers.FloatField()
    over_budget = serializers.BooleanField()
    remaining_budget = serializers.FloatField()
    days_in_period = serializers.IntegerField()
    last_updated = serializers.DateTimeField()
    reserved_cost = serializers.FloatField()
    enforcement = serializers.CharField()


class BudgetSummarySerializer(serializers.Serializer):
    """get_budget_summary."""

    daily_budget = SummaryPeriodSerializer()
    monthly_budget = SummaryPeriodSerializer()
    budget_health = serializers.CharField()
    total_operations = serializers.IntegerField()
    average_cost_per_operation = serializers.FloatField()
    budgets = PeriodStatusSerializer(many=True)


class SpendingTrendsSerializer(serializers.Serializer):
    """get_spending_trends."""

    period_days = serializers.IntegerField()
    total_cost = serializers.FloatField()
    average_daily_cost = serializers.FloatField()
    trend_direction = serializers.ChoiceField(choices=["increasing", "decreasing", "stable"])
    trend_percentage = serializers.FloatField()
    daily_costs = serializers.DictField(child=serializers.FloatField(), help_text="Local day → cost.")
    cost_distribution = serializers.DictField(child=serializers.FloatField(), help_text="weekdays / weekends, %.")
    peak_usage_hours = serializers.ListField(child=serializers.IntegerField())


class ProjectionSerializer(serializers.Serializer):
    projected_cost = serializers.FloatField()
    confidence = serializers.FloatField()
    projection_method = serializers.CharField()


class BudgetStatusSerializer(serializers.Serializer):
    """get_budget_status: budget_summary (daily_budget/monthly_budget with projected_end_of_day /
    projected_end_of_month, budget_health) and projections.daily / projections.monthly."""

    budget_summary = serializers.DictField()
    projections = serializers.DictField(child=ProjectionSerializer(), required=False)
