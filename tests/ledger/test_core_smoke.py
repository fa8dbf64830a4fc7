from decimal import Decimal

import pytest

from budgets.services import global_budget
from tests.counters import counter_total
from tracking.models import HourlyRollup, UsageRecord


@pytest.mark.django_db
def test_track_reserve_settle_flow(researcher_client):
    r = researcher_client.post("/api/v1/costs/track", {"operation_type": "llm_call", "cost": 0.5, "tokens": 100,
                                                     "model": "gpt-4o-mini"}, format="json")
    assert r.status_code == 201, r.content
    r = researcher_client.post("/api/v1/costs/track", {"operation_name": "x", "model_name": "gpt-4o-mini",
                                                     "token_usage": {"prompt_tokens": 1000, "completion_tokens": 500}},
                               format="json")
    assert r.status_code == 201, r.content
    assert r.json()["data"]["price_source"] == "genai-prices"
    assert r.json()["data"]["cost_usd"] == 0.00045
    daily = counter_total(global_budget("daily"))
    assert daily.spent == Decimal("0.500450")
    assert HourlyRollup.objects.count() >= 1
    r = researcher_client.post("/api/v1/budget/reserve", {"estimated_cost": 49}, format="json")
    assert r.status_code == 201, r.content
    op = r.json()["data"]["operation_id"]
    r = researcher_client.post("/api/v1/budget/reserve", {"estimated_cost": 1}, format="json")
    assert r.status_code == 402 and r.json()["error"]["code"] == "BUDGET_EXCEEDED", r.content
    r = researcher_client.post("/api/v1/budget/check", {"cost_amount": 0.1}, format="json")
    assert r.status_code == 200, r.content
    r = researcher_client.post("/api/v1/costs/track", {"cost_usd": 40, "operation_id": op}, format="json",
                               HTTP_IDEMPOTENCY_KEY="abc")
    assert r.status_code == 201, r.content
    r2 = researcher_client.post("/api/v1/costs/track", {"cost_usd": 40, "operation_id": op}, format="json",
                                HTTP_IDEMPOTENCY_KEY="abc")
    assert r2.status_code == 201 and r2.json()["data"] == r.json()["data"]
    daily = counter_total(global_budget("daily"))
    assert daily.reserved == 0 and daily.spent == Decimal("40.500450")
    assert UsageRecord.objects.count() == 3
    r = researcher_client.post("/api/v1/costs/bulk", {"events": [{"cost": 0.1}] * 5}, format="json")
    assert r.status_code == 201, r.content
    r = researcher_client.post("/api/v1/costs/bulk", {"events": [{"cost": 0.1}, {"cost": -1}]}, format="json")
    assert r.status_code == 400 and "events[1].cost" in r.json()["error"]["details"], r.content
    r = researcher_client.post("/api/v1/costs/batch", {"operation_name": "b", "batch_size": 10, "total_cost": 0.25,
                                                     "success_count": 9, "error_count": 1}, format="json")
    assert r.status_code == 201, r.content
