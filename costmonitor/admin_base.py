"""Shared Django-admin building blocks."""

from django.contrib import admin


class ReadOnlyModelAdmin(admin.ModelAdmin):
    """For rows that only the services write (ledger, audit, delivery and breaker history): an edit
    in the admin would make them disagree with what they record."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
