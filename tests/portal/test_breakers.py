"""Circuit breakers in the portal: state, rules and statistics for everyone; create, edit and reset for admins."""

from __future__ import annotations

import pytest

from breakers import services
from breakers.models import CircuitBreaker
from budgets.models import AuditLog

pytestmark = pytest.mark.django_db

RULE = {"rules-0-rule_id": "daily_guard", "rules-0-threshold_type": "percentage_daily",
        "rules-0-threshold_value": "95", "rules-0-action": "block", "rules-0-throttle_factor": "0.5",
        "rules-0-cooldown_seconds": "60", "rules-0-window_minutes": "5", "rules-0-is_active": "on"}
MANAGEMENT = {"rules-TOTAL_FORMS": "1", "rules-INITIAL_FORMS": "0", "rules-MIN_NUM_FORMS": "0",
              "rules-MAX_NUM_FORMS": "1000"}
BREAKER = {"name": "llm_operations", "description": "", "failure_threshold": "5", "recovery_timeout": "60",
           "throttle_rate": "1"}


def test_an_admin_creates_a_breaker_with_a_rule(admin_web, admin_user):
    page = admin_web.post("/breakers/new/", {**BREAKER, **MANAGEMENT, **RULE}, follow=True).content.decode()
    assert "Circuit breaker “llm_operations” created." in page and "daily_guard" in page
    breaker = CircuitBreaker.objects.get(name="llm_operations")
    assert [r.rule_id for r in breaker.rules.all()] == ["daily_guard"]
    assert AuditLog.objects.filter(action="breaker.created", actor=admin_user).exists()


def test_a_bad_rule_is_refused_at_its_field(admin_web):
    page = admin_web.post("/breakers/new/", {**BREAKER, **MANAGEMENT, **RULE, "rules-0-throttle_factor": "3"})
    text = page.content.decode()
    assert page.status_code == 200 and "was not saved" in text and "less than or equal to 1" in text
    assert not CircuitBreaker.objects.exists()


def test_a_duplicate_name_is_explained(admin_web, admin_user):
    services.breaker_create(name="llm_operations", actor=admin_user)
    text = admin_web.post("/breakers/new/", {**BREAKER, **MANAGEMENT, "rules-TOTAL_FORMS": "0"}).content.decode()
    assert "already exists" in text and CircuitBreaker.objects.count() == 1


def test_an_admin_edits_and_resets_a_breaker(admin_web, admin_user):
    breaker = services.breaker_create(name="llm_operations", actor=admin_user,
                                      rules=[{"rule_id": "cap", "threshold_type": "operation_cost",
                                              "threshold_value": "1", "action": "block"}])
    edit = admin_web.get(f"/breakers/{breaker.name}/edit/").content.decode()
    assert 'value="cap"' in edit
    data = {**BREAKER, "failure_threshold": "3", "rules-TOTAL_FORMS": "2", "rules-INITIAL_FORMS": "1",
            "rules-MIN_NUM_FORMS": "0", "rules-MAX_NUM_FORMS": "1000",
            **RULE, "rules-0-DELETE": "", **{k.replace("rules-0-", "rules-1-"): v for k, v in RULE.items()}}
    data.update({"rules-0-rule_id": "cap", "rules-0-threshold_type": "operation_cost", "rules-0-threshold_value": "1",
                 "rules-0-DELETE": "on"})
    page = admin_web.post(f"/breakers/{breaker.name}/edit/", data, follow=True).content.decode()
    assert "saved" in page
    breaker.refresh_from_db()
    assert breaker.failure_threshold == 3 and [r.rule_id for r in breaker.rules.all()] == ["daily_guard"]
    CircuitBreaker.objects.filter(pk=breaker.pk).update(state="open")
    page = admin_web.post(f"/breakers/{breaker.name}/reset/", follow=True).content.decode()
    assert "reset: it is closed again" in page
    breaker.refresh_from_db()
    assert breaker.state == "closed"


def test_a_researcher_sees_breakers_but_cannot_change_them(researcher_web, admin_user):
    services.breaker_create(name="llm_operations", actor=admin_user)
    CircuitBreaker.objects.filter(name="llm_operations").update(state="open", total_calls=7)
    page = researcher_web.get("/breakers/").content.decode()
    assert "llm_operations" in page and "state-open" in page and "New breaker" not in page and "Reset" not in page
    detail = researcher_web.get("/breakers/llm_operations/").content.decode()
    assert "<dt>Total calls</dt>" in detail and "<dt>Cost savings</dt>" in detail
    assert researcher_web.get("/breakers/new/").status_code == 403
    assert researcher_web.get("/breakers/llm_operations/edit/").status_code == 403
    assert researcher_web.post("/breakers/llm_operations/reset/").status_code == 403
    assert CircuitBreaker.objects.get(name="llm_operations").state == "open"
