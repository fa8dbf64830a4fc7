"""The provisioning commands: `create_api_key` and `add_user`."""

from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from budgets.models import Membership

pytestmark = pytest.mark.django_db


def test_create_api_key_prints_a_working_key_as_the_last_line(researcher):
    out = StringIO()
    call_command("create_api_key", researcher.username, "--name", "nightly", stdout=out)
    key = out.getvalue().strip().splitlines()[-1]
    assert key.startswith("cm_")

    pipeline = APIClient()
    pipeline.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    response = pipeline.get("/api/v1/api-keys/")
    assert response.status_code == 200
    assert [item["name"] for item in response.json()["data"]] == ["nightly"]


def test_create_api_key_for_an_unknown_user_fails():
    with pytest.raises(CommandError, match="No user"):
        call_command("create_api_key", "ghost", stdout=StringIO())


def test_add_user_creates_a_user_with_role_and_team(db):
    out = StringIO()
    call_command("add_user", "carol", "--role", "researcher", "--team", "Genomics", "--password", "pw-carol-123",
                 stdout=out)
    carol = get_user_model().objects.get(username="carol")
    assert carol.check_password("pw-carol-123")
    assert list(carol.groups.values_list("name", flat=True)) == ["researcher"]
    assert list(Membership.objects.filter(user=carol).values_list("team__name", flat=True)) == ["Genomics"]
    assert "carol" in out.getvalue()


def test_add_user_again_updates_role_team_and_password(db):
    call_command("add_user", "carol", "--role", "researcher", "--team", "Genomics", "--password", "pw-1-carol",
                 stdout=StringIO())
    call_command("add_user", "carol", "--role", "admin", "--team", "Imaging", "--password", "pw-2-carol",
                 stdout=StringIO())
    carol = get_user_model().objects.get(username="carol")
    assert get_user_model().objects.filter(username="carol").count() == 1
    assert list(carol.groups.values_list("name", flat=True)) == ["admin"]
    assert set(Membership.objects.filter(user=carol).values_list("team__name", flat=True)) == {"Genomics", "Imaging"}
    assert carol.check_password("pw-2-carol")
    assert carol.is_staff


def test_add_user_refuses_an_unknown_role(db):
    with pytest.raises(CommandError):
        call_command("add_user", "carol", "--role", "owner", "--password", "x", stdout=StringIO())
