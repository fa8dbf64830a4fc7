"""The OpenAPI document and docs page, and the two health endpoints."""

import re

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db


@pytest.fixture
def schema(client) -> dict:
    response = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    return response.json()


def test_schema_describes_both_api_key_schemes(schema):
    schemes = schema["components"]["securitySchemes"]
    assert schemes["BearerApiKey"] == {"type": "http", "scheme": "bearer",
                                       "description": "Authorization: Bearer <api key>"}
    assert schemes["HeaderApiKey"] == {"type": "apiKey", "in": "header", "name": "X-API-Key"}
    health_get = schema["paths"]["/api/v1/system/health"]["get"]
    assert {"BearerApiKey": []} in health_get["security"] and {"HeaderApiKey": []} in health_get["security"]


def test_schema_wraps_answers_in_the_envelope(schema):
    schemas = schema["components"]["schemas"]
    assert schemas["EnvelopeMeta"]["required"] == ["timestamp", "request_id", "version"]
    assert "RATE_LIMIT_EXCEEDED" in schemas["ErrorEnvelope"]["properties"]["error"]["properties"]["code"]["enum"]
    responses = schema["paths"]["/api/v1/system/health"]["get"]["responses"]
    success = responses["200"]["content"]["application/json"]["schema"]
    assert set(success["properties"]) == {"status", "data", "meta"}
    assert success["properties"]["data"] == {"$ref": "#/components/schemas/Health"}
    for status in ("400", "401", "403", "429", "500"):
        assert responses[status]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/ErrorEnvelope"}


def test_schema_describes_request_bodies(schema):
    create = schema["paths"]["/api/v1/api-keys/"]["post"]
    assert create["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("ApiKeyCreateRequest")
    created = create["responses"]["201"]["content"]["application/json"]["schema"]
    assert created["properties"]["data"]["$ref"].endswith("ApiKeyCreated")


def test_docs_page_renders_without_external_urls(client):
    response = client.get("/api/docs/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "swagger-ui" in html
    external = [url for url in re.findall(r"""(?:src|href)=["']([^"']+)""", html) if "//" in url]
    assert external == []
    assert "cdn" not in html.lower()


def test_system_health_has_the_reference_shape(researcher_client):
    response = researcher_client.get("/api/v1/system/health")
    data = response.json()["data"]
    assert {"status", "timestamp", "uptime_seconds", "request_count", "components"} <= set(data)
    assert set(data["components"]) == {"budget_manager", "api_metrics_logger", "cost_persistence", "alert_system",
                                       "real_time_monitor", "circuit_breaker_manager"}
    assert all(isinstance(flag, bool) for flag in data["components"].values())
    assert data["components"]["cost_persistence"] is True  # the database answered
    assert data["checks"]["cache"] is True
    # No worker heartbeat in the test run: the monitor is reported down and the system degraded.
    assert data["components"]["real_time_monitor"] is False
    assert data["status"] == "degraded"
    assert isinstance(data["request_count"], int) and data["request_count"] >= 1


def test_system_health_is_healthy_with_a_fresh_worker_heartbeat(researcher_client):
    from costmonitor import health

    health.heartbeat_record()
    data = researcher_client.get("/api/v1/system/health").json()["data"]
    assert data["components"]["real_time_monitor"] is True
    assert data["status"] == "healthy"


def test_system_health_counts_api_requests(researcher_client):
    first = researcher_client.get("/api/v1/system/health").json()["data"]["request_count"]
    second = researcher_client.get("/api/v1/system/health").json()["data"]["request_count"]
    assert second == first + 1


def test_healthz_answers_without_touching_the_database(django_assert_num_queries):
    client = Client()
    with django_assert_num_queries(0):
        response = client.get("/healthz")
    assert response.status_code == 200
    assert response.content == b"ok"
