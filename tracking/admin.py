"""Django admin for usage: records (read-only, filterable, searchable) and model price overrides."""

from django.contrib import admin

from costmonitor.admin_base import ReadOnlyModelAdmin

from .models import HourlyRollup, ModelPriceOverride, UsageRecord


@admin.register(UsageRecord)
class UsageRecordAdmin(ReadOnlyModelAdmin):
    """Read-only: records are the ledger's source of truth; counters and rollups derive from them."""

    list_display = ["occurred_at", "operation_name", "operation_type", "model_name", "research_category",
                    "cost_usd", "total_tokens", "success", "kind", "team", "user", "experiment"]
    list_filter = ["team", "model_name", "research_category", "success", "kind", "price_source"]
    search_fields = ["operation_name", "model_name", "experiment", "run_id"]
    date_hierarchy = "occurred_at"
    list_select_related = ["team", "user"]
    show_full_result_count = False  # a COUNT(*) over millions of rows on every page is not worth it



@admin.register(HourlyRollup)
class HourlyRollupAdmin(ReadOnlyModelAdmin):
    list_display = ["hour", "team", "user", "model_name", "research_category", "operation_type", "calls",
                    "cost_usd"]
    list_filter = ["team", "model_name", "research_category"]
    date_hierarchy = "hour"
    list_select_related = ["team", "user"]
    show_full_result_count = False



@admin.register(ModelPriceOverride)
class ModelPriceOverrideAdmin(admin.ModelAdmin):
    """An admin's price for a model from a date on; records keep the price they were booked with."""

    list_display = ["model_name", "input_per_million_usd", "output_per_million_usd", "effective_from",
                    "created_by", "created_at", "note"]
    list_filter = ["model_name"]
    search_fields = ["model_name", "note"]
    readonly_fields = ["created_by", "created_at"]
    list_select_related = ["created_by"]

    def save_model(self, request, obj, form, change):
        if not change or obj.created_by_id is None:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)
