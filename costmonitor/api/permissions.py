"""DRF permission classes: every endpoint maps to one of the reference's four permissions."""

from rest_framework.permissions import BasePermission


def user_has(user, codename: str) -> bool:
    return bool(user and user.is_authenticated and user.has_perm(f"budgets.{codename}"))


class _RolePermission(BasePermission):
    codename = ""
    message = "Your role does not allow this action."

    def has_permission(self, request, view):
        return user_has(request.user, self.codename)


class CanReadBudgets(_RolePermission):
    """Read budgets, spend, analytics and reports (researcher, admin)."""
    codename = "read_budgets"


class CanTrackCosts(_RolePermission):
    """Record costs and reserve budget (researcher, admin)."""
    codename = "track_costs"


class CanModifyBudgets(_RolePermission):
    """Create and change budgets, limits and breakers (admin)."""
    codename = "modify_budgets"


class CanManageAlerts(_RolePermission):
    """Manage alerts and alert channels, send alerts (admin)."""
    codename = "manage_alerts"


class ReadOrModify(BasePermission):
    """Safe methods need read_budgets, writes need modify_budgets."""

    def has_permission(self, request, view):
        if request.method in ("GET", "HEAD", "OPTIONS"):
            return user_has(request.user, "read_budgets")
        return user_has(request.user, "modify_budgets")


class ReadOrManageAlerts(BasePermission):
    """Safe methods need read_budgets, writes need manage_alerts."""

    def has_permission(self, request, view):
        if request.method in ("GET", "HEAD", "OPTIONS"):
            return user_has(request.user, "read_budgets")
        return user_has(request.user, "manage_alerts")
