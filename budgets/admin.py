"""Django admin for the budgets app: teams and memberships, users with their teams, API keys, the audit log,
and the ledger (budgets, spend counters, reservations).

Keys cannot be created here (the raw key must be shown once: use the API, the portal or
`manage.py create_api_key`); revoking goes through `accounts.api_key_revoke` so the key stops
working at once and the revocation is audited.
"""

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin

from costmonitor.admin_base import ReadOnlyModelAdmin

from . import accounts
from . import services as ledger_services
from .models import ApiKey, AuditLog, Budget, Membership, Reservation, SpendCounter, Team


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 1
    autocomplete_fields = ["user"]
    readonly_fields = ["joined_at"]


class TeamMembershipInline(MembershipInline):
    """The same rows seen from a user: which teams they belong to."""

    autocomplete_fields = ["team"]
    verbose_name = "team membership"


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin):
    list_display = ["name", "member_count", "created_at"]
    search_fields = ["name"]
    inlines = [MembershipInline]

    @admin.display(description="Members")
    def member_count(self, team):
        return team.memberships.count()


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "team", "joined_at"]
    list_filter = ["team"]
    search_fields = ["user__username", "team__name"]
    autocomplete_fields = ["user", "team"]


User = get_user_model()
if admin.site.is_registered(User):
    admin.site.unregister(User)


@admin.register(User)
class UserWithTeamsAdmin(UserAdmin):
    inlines = [*UserAdmin.inlines, TeamMembershipInline]
    list_display = ["username", "email", "role_names", "is_active", "last_login"]
    list_filter = ["groups", "is_active", "memberships__team"]

    @admin.display(description="Role")
    def role_names(self, user):
        return ", ".join(group.name for group in user.groups.all()) or "—"

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("groups")


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ["name", "prefix", "user", "team", "created_at", "last_used_at", "revoked_at"]
    list_filter = [("revoked_at", admin.EmptyFieldListFilter), "team"]
    search_fields = ["name", "prefix", "user__username"]
    list_select_related = ["user", "team"]
    fields = ["name", "user", "team", "prefix", "key_hash", "created_at", "last_used_at", "revoked_at"]
    readonly_fields = ["user", "prefix", "key_hash", "created_at", "last_used_at", "revoked_at"]
    actions = ["revoke_keys"]

    def has_add_permission(self, request):
        return False

    @admin.action(description="Revoke the selected API keys")
    def revoke_keys(self, request, queryset):
        active = list(queryset.filter(revoked_at__isnull=True))
        for api_key in active:
            accounts.api_key_revoke(api_key=api_key, actor=request.user)
        self.message_user(request, f"Revoked {len(active)} API key(s).", messages.SUCCESS)


@admin.register(AuditLog)
class AuditLogAdmin(ReadOnlyModelAdmin):
    """Read-only: the audit trail is written by the services, never edited."""

    list_display = ["created_at", "actor", "action", "object_type", "object_id"]
    list_filter = ["action", "object_type"]
    search_fields = ["object_id", "actor__username", "action"]
    list_select_related = ["actor"]



# --- The ledger: budgets, their counters and reservations ---------------------------------------

class BudgetAdminForm(forms.ModelForm):
    class Meta:
        model = Budget
        fields = ["name", "scope", "team", "user", "research_category", "model_name", "period", "starts_on",
                  "ends_on", "limit_usd", "warning_percentage", "critical_percentage", "exceeded_percentage",
                  "enforcement", "is_active"]

    def _post_clean(self):
        super()._post_clean()  # fills the instance and runs the model's own validation
        for name, field_errors in ledger_services.budget_scope_errors(self.instance).items():
            for message in field_errors:
                self.add_error(name if name in self.fields else None, message)


@admin.register(Budget)
class BudgetAdmin(admin.ModelAdmin):
    """Saves go through the ledger services, so admin edits are validated and audited like API ones."""

    form = BudgetAdminForm
    list_display = ["name", "scope", "period", "limit_usd", "enforcement", "team", "user", "research_category",
                    "model_name", "is_active", "is_global_default"]
    list_filter = ["scope", "period", "enforcement", "is_active", "team"]
    search_fields = ["name", "team__name", "user__username", "research_category", "model_name"]
    list_select_related = ["team", "user"]
    autocomplete_fields = ["team", "user"]

    def get_readonly_fields(self, request, obj=None):
        if obj is not None and obj.is_global_default:
            return sorted(ledger_services.GLOBAL_FIXED_FIELDS)
        return []

    def save_model(self, request, obj, form, change):
        if change:
            fields = {name: form.cleaned_data[name] for name in form.changed_data}
            fresh = Budget.objects.get(pk=obj.pk)
            ledger_services.budget_update(budget=fresh, actor=request.user, **fields)
        else:
            fields = {f.name: getattr(obj, f.name) for f in Budget._meta.concrete_fields
                      if f.editable and not f.primary_key}
            created = ledger_services.budget_create(actor=request.user, **fields)
            obj.pk = created.pk

    def delete_model(self, request, obj):
        ledger_services.budget_delete(budget=obj, actor=request.user)

    def has_delete_permission(self, request, obj=None):
        return super().has_delete_permission(request, obj) and not (obj and obj.is_global_default)

    def delete_queryset(self, request, queryset):
        for budget in queryset.exclude(is_global_default=True):
            ledger_services.budget_delete(budget=budget, actor=request.user)


@admin.register(SpendCounter)
class SpendCounterAdmin(ReadOnlyModelAdmin):
    list_display = ["budget", "period_key", "slot", "spent", "reserved", "calls", "updated_at"]
    list_filter = ["budget__scope", "budget__period"]
    search_fields = ["budget__name", "period_key"]
    list_select_related = ["budget"]


@admin.register(Reservation)
class ReservationAdmin(ReadOnlyModelAdmin):
    list_display = ["operation_id", "user", "team", "estimated_cost", "status", "created_at", "expires_at",
                    "closed_at"]
    list_filter = ["status", "team"]
    search_fields = ["operation_id", "user__username", "operation_type", "model_name"]
    list_select_related = ["user", "team"]
    date_hierarchy = "created_at"
