"""The breaker endpoints as pipelines and admins use them: CRUD with rules, execute → result, refusals, status."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from breakers.models import BreakerEvent, CircuitBreaker
from budgets.models import AuditLog, Reservation
from budgets.services import global_budget
from tests.counters import counter_total
from tracking.models import UsageRecord

from .conftest import make_breaker, reloaded

pytestmark = pytest.mark.django_db

BREAKER = {
    "name": "llm_operations", "failure_threshold": 2, "recovery_timeout": 60.0,
    "rules": [{"rule_id": "daily_budget_protection", "threshold_type": "percentage_daily", "threshold_value": 95.0,
               "action": "block"},
              {"rule_id": "max_call", "threshold_type": "operation_cost", "threshold_value": 5, "action": "block",
               "cooldown_seconds": 30}],
}


def data(response, status=200):
    assert response.status_code == status, response.content
    return response.json()["data"]


def error(response, status):
    assert response.status_code == status, response.content
    return response.json()["error"]


def test_admin_creates_a_breaker_with_its_rules(admin_client):
    created = data(admin_client.post("/api/v1/breakers/", BREAKER, format="json"), 201)
    assert created["name"] == "llm_operations" and created["state"] == "closed"
    assert [r["rule_id"] for r in created["rules"]] == ["daily_budget_protection", "max_call"]
    assert created["rules"][0]["threshold_value"] == 95.0
    assert created["statistics"]["total_calls"] == 0
    assert AuditLog.objects.filter(action="breaker.created", object_type="CircuitBreaker").count() == 1
    listed = data(admin_client.get("/api/v1/breakers"))
    assert [b["name"] for b in listed] == ["llm_operations"]


def test_researchers_read_breakers_but_cannot_create_change_reset_or_delete_them(researcher_client):
    make_breaker()
    assert data(researcher_client.get("/api/v1/breakers/llm_operations"))["name"] == "llm_operations"
    assert error(researcher_client.post("/api/v1/breakers/", BREAKER, format="json"), 403)["code"] == \
        "PERMISSION_DENIED"
    error(researcher_client.patch("/api/v1/breakers/llm_operations", {"failure_threshold": 1}, format="json"), 403)
    error(researcher_client.post("/api/v1/breakers/llm_operations/reset", {}, format="json"), 403)
    error(researcher_client.delete("/api/v1/breakers/llm_operations"), 403)
    assert CircuitBreaker.objects.count() == 1


def test_anonymous_callers_are_refused(anon_client):
    make_breaker()
    error(anon_client.get("/api/v1/breakers/status"), 401)
    error(anon_client.post("/api/v1/breakers/llm_operations/execute", {"estimated_cost": 1}, format="json"), 401)


def test_invalid_breaker_settings_answer_400_naming_the_field(admin_client):
    details = error(admin_client.post("/api/v1/breakers/", {**BREAKER, "failure_threshold": 0}, format="json"),
                    400)["details"]
    assert "failure_threshold" in details
    details = error(admin_client.post("/api/v1/breakers/", {**BREAKER, "rules": [
        {"rule_id": "x", "threshold_type": "percentage_weekly", "threshold_value": 1}]}, format="json"), 400)["details"]
    assert "rules" in details
    details = error(admin_client.post("/api/v1/breakers/", {**BREAKER, "name": "status"}, format="json"),
                    400)["details"]
    assert "name" in details
    assert not CircuitBreaker.objects.exists()


def test_a_second_breaker_with_the_same_name_is_refused(admin_client):
    data(admin_client.post("/api/v1/breakers/", BREAKER, format="json"), 201)
    assert "name" in error(admin_client.post("/api/v1/breakers/", BREAKER, format="json"), 400)["details"]


def test_admin_replaces_rules_and_the_change_is_audited(admin_client):
    data(admin_client.post("/api/v1/breakers/", BREAKER, format="json"), 201)
    changed = data(admin_client.patch("/api/v1/breakers/llm_operations", {"failure_threshold": 4, "rules": [
        {"rule_id": "rate", "threshold_type": "rate_per_minute", "threshold_value": 2, "window_minutes": 10,
         "action": "throttle", "throttle_factor": 0.5}]}, format="json"))
    assert changed["failure_threshold"] == 4
    assert [r["rule_id"] for r in changed["rules"]] == ["rate"]
    audit = AuditLog.objects.get(action="breaker.updated")
    assert audit.changes["failure_threshold"] == [2, 4]
    assert [r["rule_id"] for r in audit.changes["rules"][1]] == ["rate"]
    # A PATCH without rules keeps them.
    data(admin_client.patch("/api/v1/breakers/llm_operations", {"description": "LLM calls"}, format="json"))
    assert reloaded(CircuitBreaker.objects.get()).rules.count() == 1


def test_admin_deletes_a_breaker(admin_client):
    make_breaker()
    assert admin_client.delete("/api/v1/breakers/llm_operations").status_code == 204
    assert not CircuitBreaker.objects.exists()
    assert AuditLog.objects.filter(action="breaker.deleted").exists()


def test_execute_then_result_settles_the_reservation_and_records_the_usage(researcher_client, researcher):
    make_breaker()
    allowed = data(researcher_client.post("/api/v1/breakers/llm_operations/execute", {
        "operation_type": "llm_call", "model_name": "gpt-4o-mini", "estimated_tokens": {"input": 1000, "output": 500},
        "research_category": "metabolite_identification"}, format="json"), 201)
    assert allowed["allowed"] is True and allowed["state"] == "closed" and allowed["estimated_cost"] > 0
    operation_id = allowed["operation_id"]
    daily = counter_total(global_budget("daily"))
    assert float(daily.reserved) == allowed["estimated_cost"]

    settled = data(researcher_client.post(f"/api/v1/breakers/llm_operations/operations/{operation_id}/result", {
        "success": True, "actual_cost": 0.045, "operation_type": "llm_call", "response_time_ms": 850.5},
        format="json"))
    assert settled["settled"] is True and settled["actual_cost"] == 0.045
    record = UsageRecord.objects.get(operation_id=operation_id)
    assert (record.cost_usd, record.user, record.success, record.model_name, record.research_category) == (
        Decimal("0.045"), researcher, True, "gpt-4o-mini", "metabolite_identification")
    assert Reservation.objects.get(operation_id=operation_id).status == "settled"
    daily = counter_total(global_budget("daily"))
    assert (daily.spent, daily.reserved) == (Decimal("0.045"), Decimal("0"))
    breaker = CircuitBreaker.objects.get()
    assert (breaker.allowed_calls, breaker.total_actual_cost) == (1, Decimal("0.045"))


def test_result_priced_from_tokens_when_no_cost_is_sent(researcher_client):
    make_breaker()
    allowed = data(researcher_client.post("/api/v1/breakers/llm_operations/execute", {
        "model_name": "gpt-4o-mini", "estimated_tokens": {"input": 1000, "output": 500}}, format="json"), 201)
    settled = data(researcher_client.post(
        f"/api/v1/breakers/llm_operations/operations/{allowed['operation_id']}/result",
        {"prompt_tokens": 1000, "completion_tokens": 500}, format="json"))
    assert settled["actual_cost"] == allowed["estimated_cost"]


def test_a_result_reported_twice_with_the_same_idempotency_key_is_counted_once(researcher_client):
    make_breaker()
    allowed = data(researcher_client.post("/api/v1/breakers/llm_operations/execute", {"estimated_cost": 0.1},
                                          format="json"), 201)
    url = f"/api/v1/breakers/llm_operations/operations/{allowed['operation_id']}/result"
    first = data(researcher_client.post(url, {"success": False, "error_type": "Timeout"}, format="json",
                                        HTTP_IDEMPOTENCY_KEY="result-1"))
    again = researcher_client.post(url, {"success": False, "error_type": "Timeout"}, format="json",
                                   HTTP_IDEMPOTENCY_KEY="result-1")
    assert data(again) == first and again["Idempotent-Replayed"] == "true"
    assert CircuitBreaker.objects.get().consecutive_failures == 1
    # Without the key, a second report of a settled operation is an error, not a second record.
    assert "operation_id" in error(researcher_client.post(url, {"success": True, "actual_cost": 1}, format="json"),
                                   400)["details"]
    assert UsageRecord.objects.count() == 1


@pytest.mark.parametrize("raw", ['{"actual_cost": 0.1, "metadata": {"output": "a\\u0000b"}}',
                                 '{"actual_cost": 0.1, "metadata": {"\\u0000": 1}}',
                                 '{"actual_cost": 0.1, "metadata": {"parts": [1, {"text": "\\ud800"}]}}'])
def test_a_result_whose_metadata_the_database_cannot_store_answers_400_and_stays_open(researcher_client, raw):
    make_breaker()
    allowed = data(researcher_client.post("/api/v1/breakers/llm_operations/execute", {"estimated_cost": 0.1},
                                          format="json"), 201)
    url = f"/api/v1/breakers/llm_operations/operations/{allowed['operation_id']}/result"
    assert "metadata" in error(researcher_client.post(url, raw, content_type="application/json"), 400)["details"]
    assert not UsageRecord.objects.exists()
    # The operation can still be settled with a clean report.
    assert data(researcher_client.post(url, {"actual_cost": 0.1}, format="json"))["settled"] is True


@pytest.mark.parametrize("closed_by", ["expiry", "release"])
def test_a_call_tracked_after_its_hold_closed_is_not_recorded_again_by_its_result(researcher_client, closed_by):
    from budgets.services import reservations_expire

    make_breaker()
    allowed = data(researcher_client.post("/api/v1/breakers/llm_operations/execute", {"estimated_cost": 0.1},
                                          format="json"), 201)
    operation_id = allowed["operation_id"]
    if closed_by == "expiry":  # a long call outlived its reservation
        Reservation.objects.filter(operation_id=operation_id).update(expires_at=timezone.now() - timedelta(seconds=1))
        assert reservations_expire() == 1
    else:
        data(researcher_client.delete(f"/api/v1/budget/reserve/{operation_id}"))
    data(researcher_client.post("/api/v1/costs/track", {"cost_usd": 0.3, "operation_id": operation_id},
                                format="json"), 201)
    result = data(researcher_client.post(f"/api/v1/breakers/llm_operations/operations/{operation_id}/result",
                                         {"actual_cost": 0.3}, format="json"))
    assert UsageRecord.objects.count() == 1 and result["usage_record_id"] == UsageRecord.objects.get().pk
    assert counter_total(global_budget("daily")).spent == Decimal("0.3")
    assert CircuitBreaker.objects.get().total_actual_cost == Decimal("0.3")


def test_nobody_else_can_report_the_result_of_a_researchers_operation(researcher_client, outsider_client):
    make_breaker()
    allowed = data(researcher_client.post("/api/v1/breakers/llm_operations/execute", {"estimated_cost": 0.1},
                                          format="json"), 201)
    url = f"/api/v1/breakers/llm_operations/operations/{allowed['operation_id']}/result"
    assert "operation_id" in error(outsider_client.post(url, {"actual_cost": 0.1}, format="json"), 400)["details"]
    assert not UsageRecord.objects.exists()


def test_a_blocked_call_answers_503_with_the_rule_the_state_and_retry_after(researcher_client):
    make_breaker(rules=[{"rule_id": "max_call", "threshold_type": "operation_cost", "threshold_value": Decimal("5"),
                         "action": "block", "cooldown_seconds": 30}])
    response = researcher_client.post("/api/v1/breakers/llm_operations/execute", {"estimated_cost": 6},
                                      format="json")
    body = error(response, 503)
    assert body["code"] == "CIRCUIT_BREAKER_OPEN"
    assert body["details"]["rule_id"] == "max_call" and body["details"]["state"] == "closed"
    assert body["details"]["current_value"] == 6.0 and body["details"]["threshold_value"] == 5.0
    assert body["retry_after"] == 30 and response["Retry-After"] == "30"


def test_an_open_breaker_answers_503_until_its_recovery_timeout(researcher_client):
    breaker = make_breaker(failure_threshold=1, recovery_timeout=60)
    allowed = data(researcher_client.post("/api/v1/breakers/llm_operations/execute", {"estimated_cost": 0.1},
                                          format="json"), 201)
    data(researcher_client.post(f"/api/v1/breakers/llm_operations/operations/{allowed['operation_id']}/result",
                                {"success": False, "error_type": "APIError"}, format="json"))
    response = researcher_client.post("/api/v1/breakers/llm_operations/execute", {"estimated_cost": 0.1},
                                      format="json")
    body = error(response, 503)
    assert (body["details"]["rule_id"], body["details"]["state"]) == ("failure_threshold", "open")
    assert 59 <= body["retry_after"] <= 60 and response["Retry-After"] == "60"

    # The recovery timeout has passed (the breaker opened a minute ago): one trial goes through.
    CircuitBreaker.objects.filter(pk=breaker.pk).update(opened_at=reloaded(breaker).opened_at - timedelta(seconds=60))
    trial = data(researcher_client.post("/api/v1/breakers/llm_operations/execute", {"estimated_cost": 0.1},
                                        format="json"), 201)
    assert trial["trial"] is True and trial["state"] == "half_open"
    assert error(researcher_client.post("/api/v1/breakers/llm_operations/execute", {"estimated_cost": 0.1},
                                        format="json"), 503)["details"]["state"] == "half_open"


def test_a_throttled_call_answers_429_with_the_same_code(researcher_client):
    make_breaker(throttle_rate=Decimal("0.5"))
    url = "/api/v1/breakers/llm_operations/execute"
    data(researcher_client.post(url, {"estimated_cost": 0.1}, format="json"), 201)
    response = researcher_client.post(url, {"estimated_cost": 0.1}, format="json")
    body = error(response, 429)
    assert body["code"] == "CIRCUIT_BREAKER_OPEN" and body["retry_after"] == 1 and response["Retry-After"] == "1"
    assert body["details"]["throttle_factor"] == 0.5


def test_a_call_over_budget_answers_402_and_counts_as_a_cost_block(researcher_client):
    make_breaker()
    body = error(researcher_client.post("/api/v1/breakers/llm_operations/execute", {"estimated_cost": 51},
                                        format="json"), 402)
    assert body["code"] == "BUDGET_EXCEEDED" and body["details"]["breaker"] == "llm_operations"
    assert CircuitBreaker.objects.get().cost_blocked_calls == 1


def test_bad_execute_bodies_answer_400_and_count_nothing(researcher_client):
    make_breaker()
    url = "/api/v1/breakers/llm_operations/execute"
    assert "estimated_cost" in error(researcher_client.post(url, {"model_name": "gpt-4o-mini"}, format="json"),
                                     400)["details"]
    assert "estimated_cost" in error(researcher_client.post(url, {"estimated_cost": -1}, format="json"),
                                     400)["details"]
    assert "model_name" in error(researcher_client.post(url, {"model_name": "nope-1", "estimated_tokens": {
        "input": 5}}, format="json"), 400)["details"]
    assert CircuitBreaker.objects.get().total_calls == 0


def test_unknown_breakers_answer_404(researcher_client):
    assert error(researcher_client.post("/api/v1/breakers/nope/execute", {"estimated_cost": 1}, format="json"),
                 404)["code"] == "NOT_FOUND"
    error(researcher_client.get("/api/v1/breakers/nope"), 404)


def test_status_has_the_reference_shape(researcher_client):
    make_breaker()
    make_breaker("embeddings", failure_threshold=1)
    url = "/api/v1/breakers/embeddings/execute"
    allowed = data(researcher_client.post(url, {"estimated_cost": 0.2}, format="json"), 201)
    data(researcher_client.post(f"/api/v1/breakers/embeddings/operations/{allowed['operation_id']}/result",
                                {"success": False, "actual_cost": 0.1}, format="json"))
    error(researcher_client.post(url, {"estimated_cost": 0.2}, format="json"), 503)

    status = data(researcher_client.get("/api/v1/breakers/status"))
    assert set(status) == {"circuit_breakers", "manager_statistics", "system_health"}
    embeddings = status["circuit_breakers"]["embeddings"]
    assert {"name", "state", "failure_count", "throttle_rate", "statistics", "last_failure_time",
            "last_success_time"} <= set(embeddings)
    assert (embeddings["state"], embeddings["failure_count"], embeddings["throttle_rate"]) == ("open", 1, 1.0)
    assert isinstance(embeddings["last_failure_time"], float) and embeddings["last_success_time"] is None
    assert embeddings["statistics"] == {"total_calls": 2, "allowed_calls": 1, "blocked_calls": 1,
                                        "cost_blocked_calls": 0, "throttled_calls": 0, "total_estimated_cost": 0.2,
                                        "total_actual_cost": 0.1, "cost_savings": 0.0}
    assert status["manager_statistics"] == {"breakers_created": 2, "total_operations": 2, "total_blocks": 1,
                                            "total_cost_saved": 0.0}
    assert status["system_health"]["status"] == "degraded"
    assert status["system_health"]["total_breakers"] == 2
    assert "embeddings" in status["system_health"]["message"]


def test_status_of_healthy_breakers(researcher_client):
    make_breaker()
    health = data(researcher_client.get("/api/v1/breakers/status"))["system_health"]
    assert health == {"status": "healthy", "message": "All circuit breakers operational", "total_breakers": 1}


def test_admin_resets_an_open_breaker(admin_client, researcher):
    from .conftest import fail_calls

    breaker = make_breaker(failure_threshold=1)
    fail_calls(breaker, researcher, None, 1)
    reset = data(admin_client.post("/api/v1/breakers/llm_operations/reset", {}, format="json"))
    assert reset["state"] == "closed" and reset["failure_count"] == 0
    assert reset["statistics"]["total_calls"] == 1
    assert BreakerEvent.objects.filter(kind="reset", to_state="closed").count() == 1
    cleared = data(admin_client.post("/api/v1/breakers/llm_operations/reset", {"clear_statistics": True},
                                     format="json"))
    assert cleared["statistics"]["total_calls"] == 0


def test_system_health_checks_the_breaker_table(researcher_client):
    health = data(researcher_client.get("/api/v1/system/health"))
    assert health["components"]["circuit_breaker_manager"] is True
