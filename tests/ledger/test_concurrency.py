"""The ledger under real concurrency on PostgreSQL: many threads, each with its own database
connection, hitting the API at once. A hard budget is never overspent, retries are counted once,
and the counters and rollups always equal the raw records."""

from __future__ import annotations

import random
import threading
from datetime import timedelta
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.models import Sum
from django.utils import timezone
from rest_framework.test import APIClient

from budgets import services as budget_services
from budgets.models import Budget, SpendCounter
from tests.conftest import client_for
from tests.counters import counter_total
from tracking.models import UsageRecord
from tracking.rebuild import ledger_rebuild

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def run_together(count: int, work) -> list:
    """Run work(index) in `count` threads released at the same moment; each uses its own DB connection."""
    results: list = [None] * count
    barrier = threading.Barrier(count)

    def worker(index):
        try:
            barrier.wait()
            results[index] = work(index)
        except Exception as exc:  # noqa: BLE001 — reported by the assertions below
            results[index] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def api_client(raw_key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_key}")
    return client


def test_fifty_callers_against_a_twenty_dollar_hard_budget_exactly_twenty_succeed(researcher, team):
    budget = Budget.objects.create(name="Lab $20/day", scope="team", team=team, period="daily", limit_usd=20)
    raw_key = client_for(researcher).raw_key

    def reserve_then_record(_):
        client = api_client(raw_key)
        held = client.post("/api/v1/budget/reserve", {"estimated_cost": 1, "operation_type": "llm_call"},
                           format="json")
        if held.status_code != 201:
            return held.status_code, held.json()["error"]["code"]
        recorded = client.post("/api/v1/costs/track", {"cost": 1, "operation_id": held.json()["data"]["operation_id"]},
                               format="json")
        return recorded.status_code, None

    outcomes = run_together(50, reserve_then_record)
    assert not [o for o in outcomes if isinstance(o, Exception)], outcomes
    assert outcomes.count((201, None)) == 20
    assert outcomes.count((402, "BUDGET_EXCEEDED")) == 30
    counter = counter_total(budget)
    recorded = UsageRecord.objects.aggregate(total=Sum("cost_usd"))["total"]
    assert counter.spent == recorded == Decimal("20") and counter.reserved == 0 and counter.calls == 20
    assert not ledger_rebuild(write=False).has_drift


def test_concurrent_reservations_never_hold_more_than_a_hard_limit(researcher, team):
    Budget.objects.create(name="Lab $10/day", scope="team", team=team, period="daily", limit_usd=10)
    raw_key = client_for(researcher).raw_key
    amounts = [Decimal("0.75")] * 24 + [Decimal("1.5")] * 16  # $42 asked for, $10 available

    def reserve(index):
        return api_client(raw_key).post("/api/v1/budget/reserve", {"estimated_cost": str(amounts[index])},
                                        format="json").status_code

    statuses = run_together(len(amounts), reserve)
    assert set(statuses) <= {201, 402}, statuses
    counter = counter_total(Budget.objects.get(name="Lab $10/day"))
    assert Decimal(0) < counter.reserved <= Decimal("10")
    assert counter.reserved == sum(a for a, s in zip(amounts, statuses, strict=True) if s == 201)


def test_a_retried_key_sent_ten_times_at_once_and_five_times_after_is_counted_once(researcher):
    raw_key = client_for(researcher).raw_key
    body = {"operation_name": "metabolite_analysis", "model_name": "gpt-4o-mini", "cost_usd": 0.023}

    def send(_):
        answer = api_client(raw_key).post("/api/v1/costs/track", body, format="json",
                                          HTTP_IDEMPOTENCY_KEY="pipeline-call-42")
        return answer.status_code, answer.json()["data"]["id"]

    concurrent = run_together(10, send)
    sequential = [send(i) for i in range(5)]
    assert not [o for o in concurrent if isinstance(o, Exception)], concurrent
    assert {status for status, _ in concurrent + sequential} == {201}
    assert len({record_id for _, record_id in concurrent + sequential}) == 1
    assert UsageRecord.objects.count() == 1
    daily = counter_total(budget_services.global_budget("daily"))
    assert (daily.spent, daily.calls) == (Decimal("0.023"), 1)


def test_rebuild_counters_finds_no_drift_after_a_random_concurrent_workload(researcher, admin_user, outsider,
                                                                            team):
    Budget.objects.create(name="Lab daily", scope="team", team=team, period="daily", limit_usd=30)
    Budget.objects.create(name="Pathways", scope="category", research_category="pathway_analysis",
                          period="monthly", limit_usd=25, enforcement="soft")
    Budget.objects.create(name="gpt-4o", scope="model", model_name="gpt-4o", period="daily", limit_usd=40)
    Budget.objects.create(name="Rita", scope="user", user=researcher, period="monthly", limit_usd=1000)
    keys = [client_for(user).raw_key for user in (researcher, admin_user, outsider)]
    categories = ["pathway_analysis", "literature_search", "metabolite_identification", ""]
    models = ["gpt-4o", "gpt-4o-mini", "claude-3-5-sonnet-20241022"]

    def event(rng):
        event = {"cost_usd": str(Decimal(rng.randint(1, 50000)) / 100000), "model_name": rng.choice(models),
                 "research_category": rng.choice(categories), "success": rng.random() > 0.1,
                 "occurred_at": (timezone.now() - timedelta(minutes=rng.randint(0, 3 * 24 * 60))).isoformat()}
        if rng.random() < 0.3:
            event.pop("cost_usd")
            event["token_usage"] = {"prompt_tokens": rng.randint(1, 5000), "completion_tokens": rng.randint(0, 900)}
        return event

    def workload(index):
        rng = random.Random(index)
        client = api_client(keys[index % len(keys)])
        statuses = []
        for step in range(12):
            choice = rng.random()
            if choice < 0.35:
                answer = client.post("/api/v1/costs/track", event(rng), format="json",
                                     HTTP_IDEMPOTENCY_KEY=f"w{index}-{step % 4}")
            elif choice < 0.5:
                answer = client.post("/api/v1/costs/bulk", {"events": [event(rng) for _ in range(rng.randint(2, 40))]},
                                     format="json")
            elif choice < 0.6:
                answer = client.post("/api/v1/costs/batch", {
                    "operation_name": "batch", "batch_size": 10, "success_count": rng.randint(0, 10),
                    "total_cost": "0.1", "research_category": rng.choice(categories)}, format="json")
            else:
                held = client.post("/api/v1/budget/reserve", {"estimated_cost": "0.5",
                                                              "research_category": rng.choice(categories),
                                                              "model_name": rng.choice(models)}, format="json")
                answer = held
                if held.status_code == 201:
                    operation_id = held.json()["data"]["operation_id"]
                    if rng.random() < 0.6:
                        answer = client.post("/api/v1/costs/track", {"cost": "0.3", "operation_id": operation_id},
                                             format="json")
                    elif rng.random() < 0.5:
                        answer = client.delete(f"/api/v1/budget/reserve/{operation_id}")
                    # else: left to expire
            statuses.append(answer.status_code)
        return statuses

    results = run_together(24, workload)
    assert not [r for r in results if isinstance(r, Exception)], results
    statuses = {s for r in results for s in r}
    assert statuses <= {200, 201, 402, 422}, statuses  # 422: an idempotency key reused with another body
    assert UsageRecord.objects.count() > 100

    budget_services.reservations_expire(now=timezone.now() + timedelta(hours=2))
    report = ledger_rebuild(write=False)
    assert report.counters_checked > 0 and report.rollups_actual > 0
    assert not report.has_drift, [(d.budget.name, d.period_key, d.stored, d.actual) for d in report.counter_drift]
    out = StringIO()
    call_command("rebuild_counters", "--check", stdout=out)
    assert "No drift" in out.getvalue()


def test_rebuild_counters_reports_and_repairs_drift(researcher):
    from tests.ledger.helpers import record

    record(researcher, cost="2.5")
    record(researcher, cost="1.5", model_name="gpt-4o")
    daily = budget_services.global_budget("daily")
    SpendCounter.objects.filter(budget=daily).update(spent=Decimal("9"), calls=7)
    out = StringIO()
    with pytest.raises(SystemExit) as exited:
        call_command("rebuild_counters", "--check", stdout=out)
    assert exited.value.code == 1
    assert "spent 9.000000 -> 4.000000" in out.getvalue() and "calls 7 -> 2" in out.getvalue()
    assert counter_total(daily).spent == Decimal("9")  # --check writes nothing
    call_command("rebuild_counters", stdout=StringIO())
    counter = counter_total(daily)
    assert (counter.spent, counter.calls) == (Decimal("4"), 2)
    assert not ledger_rebuild(write=False).has_drift


def test_sharded_counters_keep_the_hard_budget_guarantee_and_rebuild_finds_no_drift(researcher, team, settings):
    settings.SPEND_COUNTER_SLOTS = 8
    budget = Budget.objects.create(name="Lab $20/day (slots)", scope="team", team=team, period="daily", limit_usd=20)
    raw_key = client_for(researcher).raw_key

    # $10 of plain recordings from 40 connections at once: spread over several slot rows.
    recorded = run_together(40, lambda _: api_client(raw_key).post("/api/v1/costs/track", {"cost": "0.25"},
                                                                    format="json").status_code)
    assert recorded == [201] * 40
    assert SpendCounter.objects.filter(budget=budget).count() > 1
    assert counter_total(budget).spent == Decimal("10")

    def reserve_then_record(_):
        client = api_client(raw_key)
        held = client.post("/api/v1/budget/reserve", {"estimated_cost": 1}, format="json")
        if held.status_code != 201:
            return held.status_code, held.json()["error"]["code"]
        answer = client.post("/api/v1/costs/track", {"cost": 1, "operation_id": held.json()["data"]["operation_id"]},
                             format="json")
        return answer.status_code, None

    outcomes = run_together(50, reserve_then_record)
    assert not [o for o in outcomes if isinstance(o, Exception)], outcomes
    assert outcomes.count((201, None)) == 10
    assert outcomes.count((402, "BUDGET_EXCEEDED")) == 40
    counter = counter_total(budget)
    assert counter.spent == UsageRecord.objects.filter(team=team).aggregate(t=Sum("cost_usd"))["t"] == Decimal("20")
    assert counter.reserved == 0 and counter.calls == 50
    assert not ledger_rebuild(write=False).has_drift

    # A damaged slot row is drift; the repair puts the period's spend on slot 0 and the totals are right again.
    SpendCounter.objects.filter(budget=budget).exclude(slot=0).update(spent=Decimal("99"))
    assert ledger_rebuild(write=False).has_drift
    ledger_rebuild(write=True)
    out = StringIO()
    call_command("rebuild_counters", "--check", stdout=out)
    assert not ledger_rebuild(write=False).has_drift
    assert counter_total(budget).spent == Decimal("20") and counter_total(budget).calls == 50
