import pytest


@pytest.mark.django_db
def test_health_and_keys(researcher_client, anon_client):
    r = researcher_client.get("/api/v1/system/health")
    assert r.status_code == 200, r.content
    body = r.json()
    assert body["status"] == "success" and body["data"]["components"]["cost_persistence"] is True
    assert r["X-Request-ID"] == body["meta"]["request_id"]
    r = anon_client.get("/api/v1/system/health")
    assert r.status_code == 401 and r.json()["error"]["code"] == "AUTHENTICATION_FAILED"
    r = researcher_client.get("/api/v1/nope")
    assert r.status_code == 404 and r.json()["error"]["code"] == "NOT_FOUND"
    r = researcher_client.post("/api/v1/api-keys/", {"name": "pipeline"}, format="json")
    assert r.status_code == 201, r.content
    assert r.json()["data"]["key"].startswith("cm_")
