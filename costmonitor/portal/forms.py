"""Portal forms: budgets (a ModelForm whose writes go through budgets.services), the usage
explorer's filters, API keys and report ranges. Every field has a label; errors name the field."""

from __future__ import annotations

from datetime import timedelta

from django import forms
from django.utils import timezone

from breakers.models import CircuitBreaker, CostThresholdRule
from budgets.models import Budget, Team
from budgets.periods import budget_zone

from . import selectors

MAX_REPORT_DAYS = 366

BUDGET_FIELDS = [
    "name", "scope", "team", "user", "research_category", "model_name", "period", "starts_on", "ends_on",
    "limit_usd", "warning_percentage", "critical_percentage", "exceeded_percentage", "enforcement", "is_active",
]


class DateInput(forms.DateInput):
    input_type = "date"

    def __init__(self, **kwargs):
        super().__init__(format="%Y-%m-%d", **kwargs)


class BudgetForm(forms.ModelForm):
    """Validation comes from Budget.clean (scope needs its target, fixed periods need dates,
    thresholds rise); saving is left to the view, which calls budget_create / budget_update."""

    class Meta:
        model = Budget
        fields = BUDGET_FIELDS
        labels = {
            "limit_usd": "Limit (USD)",
            "warning_percentage": "Warning at (% of limit)",
            "critical_percentage": "Critical at (% of limit)",
            "exceeded_percentage": "Exceeded at (% of limit)",
            "research_category": "Research category",
            "model_name": "Model",
            "starts_on": "Starts on",
            "ends_on": "Ends on",
            "is_active": "Active",
        }
        help_texts = {
            "scope": "Organisation budgets cover everyone; the others cover one team, user, category or model.",
            "enforcement": "Hard budgets deny calls that would exceed them; soft ones allow and alert.",
        }
        widgets = {"starts_on": DateInput(), "ends_on": DateInput()}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["limit_usd"].min_value = 0
        self.fields["limit_usd"].widget.attrs.update({"min": "0", "step": "0.01"})
        self.fields["user"].queryset = self.fields["user"].queryset.order_by("username")
        if self.instance.pk and self.instance.is_global_default:
            # The organisation's daily and monthly limits: scope and period are what make them so.
            for name in ("scope", "team", "user", "research_category", "model_name", "period", "starts_on", "ends_on"):
                self.fields[name].disabled = True

    def clean_limit_usd(self):
        limit = self.cleaned_data["limit_usd"]
        if limit is not None and limit < 0:
            raise forms.ValidationError("The limit must not be negative.")
        return limit

    def clean(self):
        cleaned = super().clean()
        scope = cleaned.get("scope")
        # Targets that do not belong to the chosen scope are cleared, so a team budget never
        # silently also carries a model name typed earlier.
        keep = {Budget.Scope.TEAM: "team", Budget.Scope.USER: "user",
                Budget.Scope.CATEGORY: "research_category", Budget.Scope.MODEL: "model_name"}.get(scope)
        if not (self.instance.pk and self.instance.is_global_default):
            for name, empty in (("team", None), ("user", None), ("research_category", ""), ("model_name", "")):
                if name != keep:
                    cleaned[name] = empty
            if cleaned.get("period") != Budget.Period.FIXED:
                cleaned["starts_on"] = cleaned["ends_on"] = None
        return cleaned

    def service_fields(self) -> dict:
        return {name: self.cleaned_data[name] for name in BUDGET_FIELDS if not self.fields[name].disabled}


SUCCESS_CHOICES = [("", "Any outcome"), ("yes", "Succeeded"), ("no", "Failed")]


class UsageFilterForm(forms.Form):
    """The usage explorer's filters (GET). Choices are limited to what the user may see."""

    start = forms.DateField(label="From", required=False, widget=DateInput())
    end = forms.DateField(label="To", required=False, widget=DateInput())
    team = forms.ModelChoiceField(label="Team", required=False, queryset=Team.objects.none(), empty_label="All teams")
    user = forms.ModelChoiceField(label="User", required=False, queryset=Team.objects.none(), empty_label="All users")
    model = forms.ChoiceField(label="Model", required=False)
    category = forms.ChoiceField(label="Research category", required=False)
    success = forms.ChoiceField(label="Outcome", required=False, choices=SUCCESS_CHOICES)

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["team"].queryset = selectors.teams_visible(user)
        self.fields["user"].queryset = selectors.users_visible(user)
        self.fields["model"].choices = [("", "All models")] + [
            (v, v) for v in selectors.usage_dimension_values(user=user, field="model_name")]
        self.fields["category"].choices = [("", "All categories")] + [
            (v, v) for v in selectors.usage_dimension_values(user=user, field="research_category")]

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("start") and cleaned.get("end") and cleaned["end"] < cleaned["start"]:
            self.add_error("end", "The end date is before the start date.")
        return cleaned


class ApiKeyForm(forms.Form):
    name = forms.CharField(label="Key name", max_length=100, help_text="What uses it, e.g. “nightly pipeline”.")
    team = forms.ModelChoiceField(label="Team its usage is booked to", queryset=Team.objects.none(), required=False,
                                  empty_label="My first team")

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["team"].queryset = Team.objects.filter(memberships__user=user)


class ReportForm(forms.Form):
    start = forms.DateField(label="From", widget=DateInput())
    end = forms.DateField(label="To", widget=DateInput())

    @classmethod
    def last_days(cls, days: int = 30) -> dict:
        today = timezone.now().astimezone(budget_zone()).date()
        return {"start": (today - timedelta(days=days - 1)).isoformat(), "end": today.isoformat()}

    def clean(self):
        cleaned = super().clean()
        start, end = cleaned.get("start"), cleaned.get("end")
        if start and end:
            if end < start:
                self.add_error("end", "The end date is before the start date.")
            elif (end - start).days >= MAX_REPORT_DAYS:
                self.add_error("end", f"A report covers at most {MAX_REPORT_DAYS} days.")
        return cleaned


# --- Circuit breakers -------------------------------------------------------------------------

class BreakerForm(forms.ModelForm):
    class Meta:
        model = CircuitBreaker
        fields = ["name", "description", "failure_threshold", "recovery_timeout", "throttle_rate"]
        labels = {"recovery_timeout": "Recovery timeout (seconds)", "throttle_rate": "Throttle rate (fraction admitted)"}

    def validate_unique(self):
        """Uniqueness of the name is the service's to decide (and to word)."""


class RuleForm(forms.ModelForm):
    class Meta:
        model = CostThresholdRule
        fields = ["rule_id", "threshold_type", "threshold_value", "action", "throttle_factor", "cooldown_seconds",
                  "window_minutes", "team", "model_name", "research_category", "is_active"]
        labels = {"rule_id": "Rule id", "threshold_value": "Threshold", "cooldown_seconds": "Cooldown (seconds)",
                  "window_minutes": "Window (minutes)", "model_name": "Only model", "research_category":
                  "Only research category", "team": "Only team", "throttle_factor": "Throttle factor"}

    def validate_unique(self):
        """Rule ids are checked per breaker by the service."""

    def service_fields(self) -> dict:
        fields = {name: self.cleaned_data[name] for name in self.Meta.fields}
        fields["team"] = fields["team"] or None
        return fields


RuleFormSet = forms.formset_factory(RuleForm, extra=1, can_delete=True)
