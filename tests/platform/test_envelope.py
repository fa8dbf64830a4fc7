"""Every /api/ answer wears the envelope: successes, client errors and crashes alike."""

import json
import logging
import re

import pytest

from costmonitor.api.middleware import RequestIdLogFilter

from .probe_urls import LEAKY_MESSAGE

pytestmark = pytest.mark.django_db
probe_urls = pytest.mark.urls("tests.platform.probe_urls")


def assert_error_envelope(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"status", "error", "meta"}
    assert body["status"] == "error"
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert isinstance(body["error"]["details"], dict)
    assert "retry_after" in body["error"]
    assert_meta(body["meta"], response)
    return body


def assert_meta(meta: dict, response) -> None:
    assert set(meta) == {"timestamp", "request_id", "version"}
    assert isinstance(meta["timestamp"], float)
    assert meta["version"] == "1.0.0"
    assert meta["request_id"] == response["X-Request-ID"]


def test_success_answer_is_wrapped_with_status_data_and_meta(researcher_client):
    response = researcher_client.get("/api/v1/system/health")
    body = response.json()
    assert set(body) == {"status", "data", "meta"}
    assert body["status"] == "success"
    assert body["data"]["status"] in ("healthy", "degraded", "unhealthy")
    assert_meta(body["meta"], response)


def test_unknown_api_path_answers_404_not_found(researcher_client, anon_client):
    assert_error_envelope(researcher_client.get("/api/v1/no/such/endpoint"), 404, "NOT_FOUND")
    assert_error_envelope(anon_client.post("/api/v1/nope", {}, format="json"), 404, "NOT_FOUND")


def test_path_under_api_outside_v1_answers_404_envelope_not_html(anon_client):
    assert_error_envelope(anon_client.get("/api/v2/dashboard/overview"), 404, "NOT_FOUND")


def test_wrong_method_answers_405_method_not_allowed(researcher_client):
    body = assert_error_envelope(researcher_client.delete("/api/v1/system/health"), 405, "METHOD_NOT_ALLOWED")
    assert "DELETE" in body["error"]["message"]


def test_missing_credentials_answer_401_with_www_authenticate(anon_client):
    response = anon_client.get("/api/v1/system/health")
    assert_error_envelope(response, 401, "AUTHENTICATION_FAILED")
    assert response["WWW-Authenticate"].startswith("Bearer")


@probe_urls
def test_validation_error_names_the_offending_fields(researcher_client):
    response = researcher_client.post("/api/v1/probe/validate", {"daily_limit": "-5"}, format="json")
    body = assert_error_envelope(response, 400, "INVALID_PARAMETERS")
    assert set(body["error"]["details"]) == {"daily_limit", "monthly_limit"}


def test_api_key_creation_without_a_name_is_invalid_parameters(researcher_client):
    response = researcher_client.post("/api/v1/api-keys/", {}, format="json")
    body = assert_error_envelope(response, 400, "INVALID_PARAMETERS")
    assert "name" in body["error"]["details"]


def test_malformed_json_is_invalid_parameters(researcher_client):
    response = researcher_client.generic("POST", "/api/v1/api-keys/", "{not json", content_type="application/json")
    assert_error_envelope(response, 400, "INVALID_PARAMETERS")


def test_nan_is_not_json(researcher_client):
    response = researcher_client.generic("POST", "/api/v1/api-keys/", '{"name": NaN}',
                                         content_type="application/json")
    assert_error_envelope(response, 400, "INVALID_PARAMETERS")


def test_non_json_body_is_invalid_parameters_415(researcher_client):
    response = researcher_client.generic("POST", "/api/v1/api-keys/", "name=x",
                                         content_type="application/x-www-form-urlencoded")
    assert_error_envelope(response, 415, "INVALID_PARAMETERS")


def test_oversize_body_answers_413(researcher_client, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024
    response = researcher_client.post("/api/v1/api-keys/", {"name": "x" * 2000}, format="json")
    assert_error_envelope(response, 413, "INVALID_PARAMETERS")


@probe_urls
def test_unhandled_exception_in_api_view_is_a_generic_500(researcher_client, caplog):
    researcher_client.raise_request_exception = False
    with caplog.at_level(logging.ERROR, logger="costmonitor.api"):
        response = researcher_client.get("/api/v1/probe/crash")
    body = assert_error_envelope(response, 500, "INTERNAL_ERROR")
    text = response.content.decode()
    assert "Traceback" not in text and "SELECT" not in text and "RuntimeError" not in text
    assert body["error"]["message"] == "An internal error occurred."
    # The traceback goes to the log instead, for the operator.
    assert any(record.exc_info and LEAKY_MESSAGE in str(record.exc_info[1]) for record in caplog.records)


@probe_urls
def test_unhandled_exception_in_plain_django_view_under_api_is_a_generic_500(researcher_client):
    researcher_client.raise_request_exception = False
    response = researcher_client.get("/api/v1/probe/crash-plain", HTTP_X_REQUEST_ID="req-crash-1")
    body = assert_error_envelope(response, 500, "INTERNAL_ERROR")
    assert body["meta"]["request_id"] == "req-crash-1"
    text = response.content.decode()
    assert "Traceback" not in text and "SELECT" not in text


@probe_urls
def test_decimals_are_json_numbers(researcher_client):
    response = researcher_client.get("/api/v1/probe/decimal")
    raw = json.loads(response.content)
    assert raw["data"] == {"total_cost": 12.345678, "budget_limit": 50.0}
    assert re.search(rb'"total_cost":\s*12\.345678', response.content)


def test_request_id_is_echoed_when_sent(researcher_client):
    response = researcher_client.get("/api/v1/system/health", HTTP_X_REQUEST_ID="pipeline-42.run:7")
    assert response["X-Request-ID"] == "pipeline-42.run:7"
    assert response.json()["meta"]["request_id"] == "pipeline-42.run:7"


def test_request_id_is_generated_when_absent_or_unusable(researcher_client):
    first = researcher_client.get("/api/v1/system/health")
    second = researcher_client.get("/api/v1/system/health", HTTP_X_REQUEST_ID="bad id\nwith newline")
    assert first["X-Request-ID"].startswith("req_")
    assert second["X-Request-ID"].startswith("req_")
    assert first["X-Request-ID"] != second["X-Request-ID"]


def test_portal_pages_carry_a_request_id_too(client):
    assert client.get("/accounts/login/")["X-Request-ID"].startswith("req_")


@probe_urls
def test_log_lines_of_a_request_carry_its_request_id(researcher_client, caplog):
    caplog.handler.addFilter(RequestIdLogFilter())
    with caplog.at_level(logging.WARNING, logger="costmonitor.probe"):
        researcher_client.get("/api/v1/probe/log", HTTP_X_REQUEST_ID="req-log-1")
    lines = [record for record in caplog.records if record.getMessage() == "probe log line"]
    assert [record.request_id for record in lines] == ["req-log-1"]
    # Outside a request the id is a placeholder, never the last request's id.
    logging.getLogger("costmonitor.probe").warning("after the request")
    assert caplog.records[-1].request_id == "-"


def test_configured_log_format_prints_the_request_id(settings):
    formatter = logging.Formatter(settings.LOGGING["formatters"]["plain"]["format"])
    record = logging.LogRecord("costmonitor", logging.INFO, __file__, 1, "hello", None, None)
    RequestIdLogFilter().filter(record)
    assert "[-] costmonitor: hello" in formatter.format(record)
    assert settings.LOGGING["handlers"]["console"]["filters"] == ["request_id"]


def test_django_error_log_line_carries_the_request_id(researcher_client, caplog):
    caplog.handler.addFilter(RequestIdLogFilter())
    with caplog.at_level(logging.WARNING, logger="django.request"):
        researcher_client.get("/api/v1/no/such/endpoint", HTTP_X_REQUEST_ID="req-404-1")
    not_found = [record for record in caplog.records if record.name == "django.request"]
    assert [record.request_id for record in not_found] == ["req-404-1"]


def test_api_paths_answer_with_and_without_trailing_slash(researcher_client):
    assert researcher_client.get("/api/v1/api-keys").status_code == 200
    assert researcher_client.get("/api/v1/api-keys/").status_code == 200
