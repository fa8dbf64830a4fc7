"""Roles and team visibility: researcher and admin groups, and who may see and change what."""

import pytest
from django.contrib.auth.models import Group

from budgets import accounts
from budgets.models import ApiKey
from costmonitor.api.scoping import scope_to_teams, visible_team_ids

pytestmark = pytest.mark.django_db
probe_urls = pytest.mark.urls("tests.platform.probe_urls")


def permission_codenames(group_name: str) -> set[str]:
    return set(Group.objects.get(name=group_name).permissions.values_list("codename", flat=True))


def test_researcher_group_can_read_budgets_and_track_costs_only():
    assert permission_codenames("researcher") == {"read_budgets", "track_costs"}


def test_admin_group_carries_all_four_permissions():
    assert permission_codenames("admin") == {"read_budgets", "track_costs", "modify_budgets", "manage_alerts"}


@probe_urls
def test_researcher_cannot_change_budget_limits(researcher_client):
    response = researcher_client.patch("/api/v1/probe/limits", {"daily_limit": 100}, format="json")
    assert response.status_code == 403
    body = response.json()
    assert body["status"] == "error" and body["error"]["code"] == "PERMISSION_DENIED"


@probe_urls
def test_admin_can_change_budget_limits(admin_client):
    assert admin_client.patch("/api/v1/probe/limits", {"daily_limit": 100}, format="json").status_code == 200


def test_researcher_sees_only_their_teams_objects(researcher, outsider, admin_user, team, other_team):
    own, _ = accounts.api_key_create(user=researcher, name="own", team=team)
    foreign, _ = accounts.api_key_create(user=outsider, name="foreign", team=other_team)

    assert visible_team_ids(researcher) == [team.pk]
    assert list(scope_to_teams(ApiKey.objects.all(), researcher)) == [own]
    assert set(scope_to_teams(ApiKey.objects.all(), admin_user)) == {own, foreign}


def test_add_user_role_change_moves_the_user_between_groups(researcher):
    accounts.user_provision(username=researcher.username, role="admin")
    researcher.refresh_from_db()
    assert list(researcher.groups.values_list("name", flat=True)) == ["admin"]
    accounts.user_provision(username=researcher.username, role="researcher")
    researcher = type(researcher).objects.get(pk=researcher.pk)
    assert list(researcher.groups.values_list("name", flat=True)) == ["researcher"]
    assert not researcher.has_perm("budgets.modify_budgets")
    assert not researcher.is_staff and not researcher.is_superuser
