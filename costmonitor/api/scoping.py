"""Team visibility: a researcher sees their teams' objects, an admin sees everything."""

from __future__ import annotations

from django.db.models import QuerySet


def is_admin(user) -> bool:
    """Admins are superusers or members of the `admin` group (they hold modify_budgets)."""
    return bool(user and user.is_authenticated and (user.is_superuser or user.has_perm("budgets.modify_budgets")))


def visible_team_ids(user) -> list[int] | None:
    """Team ids the user may see, or None for all (admins)."""
    if is_admin(user):
        return None
    cached = getattr(user, "_visible_team_ids", None)
    if cached is None:
        cached = list(user.memberships.values_list("team_id", flat=True))
        user._visible_team_ids = cached
    return cached


def scope_to_teams(queryset: QuerySet, user, team_field: str = "team") -> QuerySet:
    team_ids = visible_team_ids(user)
    if team_ids is None:
        return queryset
    return queryset.filter(**{f"{team_field}__in": team_ids})
