"""Admin for alerts: channels (secrets never shown), alerts (acknowledge action), deliveries with attempts."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.utils import timezone

from costmonitor.errors import InvalidParameters

from .channels import channel_config_clean, config_for_display
from .models import AlertChannel, AlertDelivery, AlertLevel, BudgetAlert, DeliveryAttempt, DigestSubscription
from .services import channel_test


class AlertChannelForm(forms.ModelForm):
    settings_json = forms.JSONField(
        label="Config", required=False, widget=forms.Textarea(attrs={"rows": 10, "cols": 80}),
        help_text="The kind's settings as JSON. Secrets (password, webhook_url, url, secret) show masked: "
                  "leave them as they are to keep them, or type a new value.")
    levels = forms.MultipleChoiceField(choices=AlertLevel.choices, required=False,
                                       widget=forms.CheckboxSelectMultiple, help_text="None ticked: every level.")

    class Meta:
        model = AlertChannel
        fields = ["name", "kind", "is_active", "levels", "teams", "budgets"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.fields["settings_json"].initial = config_for_display(self.instance)

    def clean(self):
        cleaned = super().clean()
        kind = cleaned.get("kind")
        if not kind:
            return cleaned
        same_kind = bool(self.instance.pk) and kind == self.instance.kind
        try:
            self._plain, self._secrets = channel_config_clean(
                kind=kind, config=cleaned.get("settings_json") or {},
                existing_config=self.instance.config if same_kind else None,
                existing_secrets=self.instance.secrets if same_kind else None)
        except InvalidParameters as exc:
            raise forms.ValidationError(f"{'; '.join(f'{k}: {v[0]}' for k, v in exc.details.items())}") from exc
        return cleaned

    def save(self, commit=True):
        self.instance.config, self.instance.secrets = self._plain, self._secrets
        self.instance.levels = list(self.cleaned_data.get("levels") or [])
        return super().save(commit)


@admin.register(AlertChannel)
class AlertChannelAdmin(admin.ModelAdmin):
    form = AlertChannelForm
    list_display = ["name", "kind", "is_active", "levels", "last_sent_at", "last_error_at"]
    list_filter = ["kind", "is_active"]
    search_fields = ["name"]
    filter_horizontal = ["teams", "budgets"]
    readonly_fields = ["last_error", "last_error_at", "last_sent_at", "created_at"]
    actions = ["send_test"]

    @admin.action(description="Send a test message")
    def send_test(self, request, queryset):
        for channel in queryset:
            result = channel_test(channel)
            level = messages.SUCCESS if result["success"] else messages.ERROR
            self.message_user(request, f"{channel.name}: {result.get('message') or result.get('error')} "
                                       f"({result['response_time_ms']} ms)", level)


@admin.register(BudgetAlert)
class BudgetAlertAdmin(admin.ModelAdmin):
    list_display = ["timestamp", "alert_level", "alert_type", "message", "team", "acknowledged_at"]
    list_filter = ["alert_level", "alert_type", "period_type", ("acknowledged_at", admin.EmptyFieldListFilter)]
    search_fields = ["message", "dedupe_key"]
    date_hierarchy = "timestamp"
    readonly_fields = [f.name for f in BudgetAlert._meta.fields]
    actions = ["acknowledge"]

    def has_add_permission(self, request):
        return False

    @admin.action(description="Acknowledge selected alerts")
    def acknowledge(self, request, queryset):
        count = queryset.filter(acknowledged_at__isnull=True).update(acknowledged_by=request.user,
                                                                     acknowledged_at=timezone.now())
        self.message_user(request, f"{count} alert(s) acknowledged.")


class DeliveryAttemptInline(admin.TabularInline):
    model = DeliveryAttempt
    extra = 0
    can_delete = False
    fields = ["at", "success", "error_code", "error", "http_status", "smtp_reply", "message_id", "response_time_ms"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(AlertDelivery)
class AlertDeliveryAdmin(admin.ModelAdmin):
    list_display = ["id", "alert", "channel", "status", "attempts", "next_attempt_at", "sent_at"]
    list_filter = ["status", "channel"]
    readonly_fields = [f.name for f in AlertDelivery._meta.fields]
    inlines = [DeliveryAttemptInline]

    def has_add_permission(self, request):
        return False


@admin.register(DigestSubscription)
class DigestSubscriptionAdmin(admin.ModelAdmin):
    list_display = ["user", "enabled", "last_sent_for"]
    list_filter = ["enabled"]
