"""Portal forms: budgets (a ModelForm whose writes go through budgets.services), the usage
explorer's filters, API keys, report ranges, breakers and alert channels. Every field has a label;
errors name the field."""

from __future__ import annotations

from datetime import timedelta

from django import forms
from django.utils import timezone

from alerts.models import AlertChannel, AlertLevel, BudgetAlert
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
        labels = {"recovery_timeout": "Recovery timeout (seconds)",
                  "throttle_rate": "Throttle rate (fraction admitted)"}

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


# --- Alerts -----------------------------------------------------------------------------------

class AlertFilterForm(forms.Form):
    level = forms.ChoiceField(label="Level", required=False,
                              choices=[("", "Any level")] + list(AlertLevel.choices))
    alert_type = forms.ChoiceField(label="Type", required=False,
                                   choices=[("", "Any type")] + list(BudgetAlert.AlertType.choices))
    acknowledged = forms.ChoiceField(label="Acknowledged", required=False,
                                     choices=[("", "Either"), ("false", "Not yet"), ("true", "Acknowledged")])
    period = forms.CharField(label="Period (daily, monthly, or a key like 2025-08)", required=False, max_length=16)


class ChannelForm(forms.Form):
    """One form for every kind; the kind's own settings are checked by alerts.channels (via channel_save).
    Secret fields left empty keep the stored secret."""

    name = forms.CharField(label="Name", max_length=100)
    kind = forms.ChoiceField(label="Kind", choices=AlertChannel.Kind.choices)
    levels = forms.MultipleChoiceField(label="Levels (none ticked: all)", required=False,
                                       choices=AlertLevel.choices, widget=forms.CheckboxSelectMultiple)
    is_active = forms.BooleanField(label="Active", required=False, initial=True)
    teams = forms.ModelMultipleChoiceField(
        label="Only alerts of these teams", required=False, queryset=Team.objects.order_by("name"),
        help_text="None chosen: every team's alerts, and organisation-wide ones. Ctrl- or ⌘-click to choose several.")
    budgets = forms.ModelMultipleChoiceField(
        label="Only alerts of these budgets", required=False, queryset=Budget.objects.order_by("name", "pk"),
        help_text="None chosen: alerts of every budget. Ctrl- or ⌘-click to choose several.")
    recipient_emails = forms.CharField(label="Email: recipients (comma-separated)", required=False)
    smtp_server = forms.CharField(label="Email: SMTP server (empty: the site's email settings)", required=False)
    smtp_port = forms.IntegerField(label="Email: SMTP port", required=False, min_value=1, max_value=65535)
    username = forms.CharField(label="Email: SMTP username / Slack: bot name", required=False)
    password = forms.CharField(label="Email: SMTP password", required=False, widget=forms.PasswordInput)
    sender_email = forms.EmailField(label="Email: sender address", required=False)
    webhook_url = forms.CharField(label="Slack: incoming-webhook URL", required=False, widget=forms.PasswordInput)
    channel = forms.CharField(label="Slack: channel", required=False)
    url = forms.CharField(label="Webhook: URL", required=False, widget=forms.PasswordInput)
    secret = forms.CharField(label="Webhook: signing secret (HMAC-SHA256)", required=False, widget=forms.PasswordInput)
    log_level = forms.CharField(label="Log: level", required=False)

    KIND_FIELDS = {
        "email": ("recipient_emails", "smtp_server", "smtp_port", "username", "password", "sender_email"),
        "slack": ("webhook_url", "channel", "username"),
        "webhook": ("url", "secret"),
        "log": ("log_level",),
    }
    SECRETS = ("password", "webhook_url", "url", "secret")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Budget names need not be unique: say which scope and period each one is.
        self.fields["budgets"].label_from_instance = (
            lambda budget: f"{budget.name} ({budget.get_scope_display()}, {budget.get_period_display()})")

    @classmethod
    def initial_for(cls, channel) -> dict:
        initial = {"name": channel.name, "kind": channel.kind, "levels": channel.levels, "is_active": channel.is_active,
                   "teams": [t.pk for t in channel.teams.all()], "budgets": [b.pk for b in channel.budgets.all()]}
        for key, value in (channel.config or {}).items():
            initial[key] = ", ".join(value) if isinstance(value, list) else value
        return initial

    def kind_settings(self) -> list:
        """The kind-specific fields, in form order: the template puts them in a fieldset of their own."""
        names = {name for names in self.KIND_FIELDS.values() for name in names}
        return [field for field in self if field.name in names]

    def service_data(self) -> dict:
        data = self.cleaned_data
        config = {}
        for name in self.KIND_FIELDS[data["kind"]]:
            value = data.get(name)
            if value in (None, "") and name in self.SECRETS:
                continue  # keep the stored secret
            if name == "recipient_emails":
                value = [v.strip() for v in (value or "").split(",") if v.strip()]
            if value in (None, "") and name == "smtp_port":
                continue
            config[name] = value
        return {"name": data["name"], "kind": data["kind"], "levels": list(data["levels"]),
                "is_active": data["is_active"], "config": config,
                "teams": [t.pk for t in data["teams"]], "budgets": [b.pk for b in data["budgets"]]}
