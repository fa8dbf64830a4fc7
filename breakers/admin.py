"""Django admin for circuit breakers: settings and rules are editable; state, statistics and events are not
(they change only through the services, under the breaker's row lock). Resetting goes through breaker_reset."""

from django.contrib import admin, messages

from costmonitor.admin_base import ReadOnlyModelAdmin

from . import services
from .models import BreakerEvent, BreakerOperation, CircuitBreaker, CostThresholdRule


class CostThresholdRuleInline(admin.TabularInline):
    model = CostThresholdRule
    extra = 1
    fields = ["rule_id", "threshold_type", "threshold_value", "action", "throttle_factor", "cooldown_seconds",
              "window_minutes", "team", "model_name", "research_category", "is_active", "last_fired_at"]
    readonly_fields = ["last_fired_at"]


class BreakerEventInline(admin.TabularInline):
    model = BreakerEvent
    extra = 0
    max_num = 0
    can_delete = False
    fields = ["at", "kind", "from_state", "to_state", "reason", "rule_id", "actor"]
    readonly_fields = fields
    ordering = ["-at", "-id"]
    show_change_link = False

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("actor")


_STATISTICS = ["total_calls", "allowed_calls", "blocked_calls", "cost_blocked_calls", "throttled_calls",
               "total_estimated_cost", "total_actual_cost", "cost_savings"]
_STATE = ["state", "consecutive_failures", "opened_at", "half_open_trial_operation", "trial_started_at",
          "last_failure_time", "last_success_time", "last_state_change_at", "throttle_counter"]


@admin.register(CircuitBreaker)
class CircuitBreakerAdmin(admin.ModelAdmin):
    list_display = ["name", "state", "consecutive_failures", "failure_threshold", "recovery_timeout", "throttle_rate",
                    "total_calls", "blocked_calls", "throttled_calls", "cost_savings"]
    list_filter = ["state"]
    search_fields = ["name", "description"]
    readonly_fields = [*_STATE, *_STATISTICS, "created_at", "updated_at"]
    fieldsets = [
        (None, {"fields": ["name", "description", "failure_threshold", "recovery_timeout", "throttle_rate"]}),
        ("State", {"fields": _STATE}),
        ("Statistics", {"fields": _STATISTICS}),
        ("Dates", {"fields": ["created_at", "updated_at"]}),
    ]
    inlines = [CostThresholdRuleInline, BreakerEventInline]
    actions = ["reset_breakers"]

    @admin.action(description="Reset (close) the selected breakers")
    def reset_breakers(self, request, queryset):
        for breaker in queryset:
            services.breaker_reset(breaker_name=breaker.name, actor=request.user)
        self.message_user(request, f"{queryset.count()} breaker(s) reset to closed.", messages.SUCCESS)

    def save_model(self, request, obj, form, change):
        # Only the settings are editable here; save just those, so a concurrent decision's state survives.
        if not change:
            obj.save()
            return
        settings_changed = [f for f in form.changed_data
                            if f in ("name", "description", "failure_threshold", "recovery_timeout", "throttle_rate")]
        if settings_changed:
            obj.save(update_fields=[*settings_changed, "updated_at"])


@admin.register(BreakerEvent)
class BreakerEventAdmin(ReadOnlyModelAdmin):
    list_display = ["at", "breaker", "kind", "from_state", "to_state", "rule_id", "reason", "actor"]
    list_filter = ["kind", "to_state", "breaker"]
    search_fields = ["breaker__name", "reason", "rule_id"]
    date_hierarchy = "at"



@admin.register(BreakerOperation)
class BreakerOperationAdmin(ReadOnlyModelAdmin):
    list_display = ["operation_id", "breaker", "user", "team", "model_name", "estimated_cost", "actual_cost",
                    "status", "success", "is_trial", "created_at"]
    list_filter = ["status", "breaker", "is_trial", "success"]
    search_fields = ["operation_id", "model_name", "user__username"]
    date_hierarchy = "created_at"
