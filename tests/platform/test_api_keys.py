"""API keys: how pipelines authenticate, and how keys are stored, listed, revoked and guarded."""

import pytest
from django.db import connection
from rest_framework.test import APIClient

from budgets import accounts
from budgets.models import ApiKey, AuditLog

from ..conftest import client_for

pytestmark = pytest.mark.django_db
HEALTH = "/api/v1/system/health"


def test_bearer_key_authenticates(researcher_client):
    assert researcher_client.get(HEALTH).status_code == 200


def test_x_api_key_header_authenticates(researcher_client):
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=researcher_client.raw_key)
    assert client.get(HEALTH).status_code == 200


def test_unknown_key_is_authentication_failed(anon_client):
    anon_client.credentials(HTTP_AUTHORIZATION="Bearer cm_not-a-real-key")
    response = anon_client.get(HEALTH)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "AUTHENTICATION_FAILED"


def test_creating_a_key_shows_it_once_and_it_works(researcher_client):
    created = researcher_client.post("/api/v1/api-keys/", {"name": "nightly pipeline"}, format="json")
    assert created.status_code == 201
    key = created.json()["data"]["key"]
    assert key.startswith("cm_") and len(key) > 40

    listed = researcher_client.get("/api/v1/api-keys/").json()["data"]
    assert "nightly pipeline" in [item["name"] for item in listed]
    assert all("key" not in item and "key_hash" not in item for item in listed)

    pipeline = APIClient()
    pipeline.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    assert pipeline.get(HEALTH).status_code == 200


def test_revoked_key_is_refused_at_once(researcher_client):
    new_key = researcher_client.post("/api/v1/api-keys/", {"name": "short-lived"}, format="json").json()["data"]
    pipeline = APIClient()
    pipeline.credentials(HTTP_X_API_KEY=new_key["key"])
    assert pipeline.get(HEALTH).status_code == 200  # now cached as valid

    revoked = researcher_client.delete(f"/api/v1/api-keys/{new_key['id']}/")
    assert revoked.status_code == 200
    assert revoked.json()["data"]["revoked_at"] is not None

    response = pipeline.get(HEALTH)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "AUTHENTICATION_FAILED"
    assert AuditLog.objects.filter(action="api_key.revoked", object_id=str(new_key["id"])).exists()


def test_a_key_can_revoke_itself_with_the_revoke_action(researcher_client):
    own_id = ApiKey.objects.get(prefix=researcher_client.raw_key[:11]).pk
    assert researcher_client.post(f"/api/v1/api-keys/{own_id}/revoke").status_code == 200
    assert researcher_client.get(HEALTH).status_code == 401


def test_deactivated_user_key_is_refused_at_once(researcher, researcher_client):
    assert researcher_client.get(HEALTH).status_code == 200
    researcher.is_active = False
    researcher.save()
    assert researcher_client.get(HEALTH).status_code == 401


def test_deleted_key_is_refused_at_once(researcher_client):
    assert researcher_client.get(HEALTH).status_code == 200
    ApiKey.objects.get(prefix=researcher_client.raw_key[:11]).delete()
    assert researcher_client.get(HEALTH).status_code == 401


def test_another_users_key_is_not_found(researcher_client, outsider_client, outsider):
    foreign = ApiKey.objects.filter(user=outsider).first()
    assert researcher_client.get(f"/api/v1/api-keys/{foreign.pk}/").status_code == 404
    response = researcher_client.delete(f"/api/v1/api-keys/{foreign.pk}/")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "NOT_FOUND"
    assert ApiKey.objects.get(pk=foreign.pk).revoked_at is None
    listed = researcher_client.get("/api/v1/api-keys/").json()["data"]
    assert foreign.pk not in [item["id"] for item in listed]


def test_a_key_cannot_be_booked_to_a_team_the_caller_is_not_in(researcher_client, other_team):
    response = researcher_client.post("/api/v1/api-keys/", {"name": "sneaky", "team": other_team.pk}, format="json")
    assert response.status_code == 400
    assert "team" in response.json()["error"]["details"]


def test_database_holds_no_plaintext_key(researcher):
    api_key, raw_key = accounts.api_key_create(user=researcher, name="scan me")
    secret_part = raw_key[len(api_key.prefix):]
    assert api_key.prefix == raw_key[:11]
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM budgets_apikey")
        rows = cursor.fetchall()
        cursor.execute("SELECT * FROM budgets_auditlog")
        rows += cursor.fetchall()
    stored = " ".join(str(value) for row in rows for value in row)
    assert raw_key not in stored
    assert secret_part not in stored


def test_repeated_failed_key_attempts_are_throttled(settings, researcher_client):
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "auth_failures": "3/min"}
    guesser = APIClient()
    for attempt in range(3):
        guesser.credentials(HTTP_AUTHORIZATION=f"Bearer cm_guess-{attempt}")
        assert guesser.get(HEALTH).status_code == 401
    guesser.credentials(HTTP_AUTHORIZATION="Bearer cm_guess-4")
    response = guesser.get(HEALTH)
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "RATE_LIMIT_EXCEEDED"
    assert int(response["Retry-After"]) >= 1
    # Once throttled, even a right key from that address waits: guessing cannot go on in parallel.
    assert researcher_client.get(HEALTH).status_code == 429


def test_forged_forwarded_for_does_not_escape_the_failure_throttle(settings):
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "auth_failures": "2/min"}
    guesser = APIClient()
    guesser.credentials(HTTP_AUTHORIZATION="Bearer cm_guess")
    statuses = [guesser.get(HEALTH, HTTP_X_FORWARDED_FOR=f"10.0.0.{n}").status_code for n in range(4)]
    assert statuses == [401, 401, 429, 429]


def test_successful_key_use_records_last_used(researcher_client):
    api_key = ApiKey.objects.get(prefix=researcher_client.raw_key[:11])
    assert api_key.last_used_at is None
    researcher_client.get(HEALTH)
    api_key.refresh_from_db()
    assert api_key.last_used_at is not None


def test_keys_of_a_user_without_a_role_cannot_reach_the_api(db):
    from django.contrib.auth import get_user_model

    nobody = get_user_model().objects.create_user("nobody", password="pw-nobody-123")
    client = client_for(nobody)
    response = client.get("/api/v1/api-keys/")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "PERMISSION_DENIED"


TRACK = "/api/v1/costs/track"
TRACK_BODY = {"operation_type": "llm_call", "cost": 0.002, "tokens": 400, "model": "gpt-4o-mini"}


def test_a_researchers_cached_key_costs_no_permission_queries(researcher_client):
    from django.test.utils import CaptureQueriesContext

    assert researcher_client.post(TRACK, TRACK_BODY, format="json").status_code == 201  # the key is now cached
    with CaptureQueriesContext(connection) as queries:
        assert researcher_client.post(TRACK, TRACK_BODY, format="json").status_code == 201
    read = " ".join(query["sql"] for query in queries.captured_queries)
    assert not any(table in read for table in ("auth_permission", "auth_user", "budgets_apikey", "budgets_membership"))
    if connection.vendor == "postgresql":
        assert len(queries.captured_queries) == 1  # the recording statement, nothing else


@pytest.mark.parametrize("change", ["user.groups.clear", "group.user_set.remove", "group.permissions.remove"])
def test_a_role_change_reaches_a_cached_key_at_once(researcher, researcher_client, change):
    from django.contrib.auth.models import Group, Permission

    assert researcher_client.post(TRACK, TRACK_BODY, format="json").status_code == 201  # cached with its permissions
    group = Group.objects.get(name="researcher")
    if change == "user.groups.clear":
        researcher.groups.clear()
    elif change == "group.user_set.remove":
        group.user_set.remove(researcher)
    else:
        group.permissions.remove(Permission.objects.get(codename="track_costs"))
    answer = researcher_client.post(TRACK, TRACK_BODY, format="json")
    assert answer.status_code == 403 and answer.json()["error"]["code"] == "PERMISSION_DENIED"
