"""Filters of the usage-record list (GET /api/v1/costs/): time range, model, category, team, user,
success, experiment — each an exact, indexed lookup."""

import django_filters

from .models import UsageRecord


class UsageRecordFilter(django_filters.FilterSet):
    start = django_filters.IsoDateTimeFilter(field_name="occurred_at", lookup_expr="gte",
                                             help_text="Calls at or after this time (ISO 8601).")
    end = django_filters.IsoDateTimeFilter(field_name="occurred_at", lookup_expr="lt",
                                           help_text="Calls before this time (ISO 8601).")
    model = django_filters.CharFilter(field_name="model_name")
    model_name = django_filters.CharFilter(field_name="model_name")
    category = django_filters.CharFilter(field_name="research_category")
    research_category = django_filters.CharFilter(field_name="research_category")
    team = django_filters.NumberFilter(field_name="team_id")
    user = django_filters.NumberFilter(field_name="user_id")
    success = django_filters.BooleanFilter()
    experiment = django_filters.CharFilter()
    run_id = django_filters.CharFilter()
    operation_type = django_filters.CharFilter()
    kind = django_filters.ChoiceFilter(choices=UsageRecord.OperationKind.choices)

    class Meta:
        model = UsageRecord
        fields = []

    def is_valid(self):
        # A reversed range is a client mistake worth naming, not an empty page.
        valid = super().is_valid()
        if valid:
            start, end = self.form.cleaned_data.get("start"), self.form.cleaned_data.get("end")
            if start and end and end <= start:
                self.form.add_error("end", "The end of the range is not after its start.")
                return False
        return valid
