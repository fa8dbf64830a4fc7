"""Threshold alerts stay exact inline when the counters are sharded over slots (PostgreSQL).

Recordings inside larger transactions (idempotency keys, settlements) read their period's total
before they commit, so concurrent recordings on other slots can each see a total without the
others' increments. Here every round of recorders is forced into exactly that interleaving: each
one records in its own transaction, on its own slot, and none commits before all have read.
"""

import threading
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest
from django.db import connection, connections

from alerts.models import AlertDelivery, BudgetAlert
from budgets.services import counter_slot
from tests.counters import counter_total
from tracking.services import idempotent_call

from .conftest import record, team_budget

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

SLOTS = 8


def _own_slot(taken: set, lock: threading.Lock) -> int:
    """Connect until this thread's connection writes a counter slot no other recorder writes: recorders
    waiting on each other's row locks while all wait for each other at the barrier would deadlock."""
    with lock:
        while True:
            connection.ensure_connection()
            slot = counter_slot()
            if slot not in taken:
                taken.add(slot)
                return slot
            connection.close()


def test_concurrent_recordings_in_transactions_raise_every_threshold_inline_exactly_once(researcher, team,
                                                                                          settings):
    settings.SPEND_COUNTER_SLOTS = SLOTS
    budget = team_budget(team, limit="10")
    rounds, cost = 5, Decimal("0.25")  # 8 recorders × 5 rounds × $0.25 = $10.00; no single cost crosses anything
    taken: set[int] = set()
    lock = threading.Lock()
    recorded = threading.Barrier(SLOTS, timeout=120)  # everyone has written and read, nobody has committed
    committed = threading.Barrier(SLOTS, timeout=120)  # everyone has committed (and run its on-commit work)

    def recorder(index: int) -> int:
        try:
            _own_slot(taken, lock)
            for round_ in range(rounds):
                def produce():
                    # A distinct model per recorder: the hourly rollup row is not shared (no lock waits).
                    record(researcher, str(cost), model_name=f"model-{index}")
                    recorded.wait()
                    return 201, {}

                status, _, replayed = idempotent_call(user=researcher, key=f"rec-{index}-{round_}", body={"i": index},
                                                      produce=produce)
                assert (status, replayed) == (201, False)
                committed.wait()
            return rounds
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=SLOTS) as pool:
        assert list(pool.map(recorder, range(SLOTS))) == [rounds] * SLOTS

    # No monitor cycle ran: whatever exists was created inline, after the recorders' commits.
    assert counter_total(budget).spent == Decimal("10.00")
    alerts = BudgetAlert.objects.filter(budget=budget, alert_type="threshold")
    assert sorted(alerts.values_list("alert_level", flat=True)) == ["critical", "exceeded", "warning"]
    assert AlertDelivery.objects.filter(alert__in=alerts, channel__name="logging").count() == 3
    warning = alerts.get(alert_level="warning")
    assert warning.current_cost >= Decimal("7.5") and warning.percentage_used >= Decimal("75")


def _record_in_transaction(researcher, cost: str) -> list[str]:
    """Record inside a larger transaction (as with an idempotency key) and return every SQL statement
    it ran, the after-commit work included."""
    from django.db import transaction
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        with transaction.atomic():
            record(researcher, cost)
    return [q["sql"] for q in queries.captured_queries]


def test_records_far_below_every_threshold_add_no_query_and_near_ones_one_read(researcher, team, settings):
    settings.SPEND_COUNTER_SLOTS = SLOTS
    budget = team_budget(team, limit="100")  # thresholds $75, $90, $100; re-reads from $50 up
    _record_in_transaction(researcher, "1.00")  # warm-up: the key's team, prices, prepared SQL
    far = _record_in_transaction(researcher, "1.00")
    still_far = _record_in_transaction(researcher, "3.00")  # $5
    record(researcher, "43.00")  # $48, on its own (read after its commit: never stale)
    almost = _record_in_transaction(researcher, "1.00")  # $49: still below the margin under the warning
    assert len(still_far) == len(far) == len(almost)
    assert not [sql for sql in far + still_far + almost if "alerts_" in sql]

    near = _record_in_transaction(researcher, "2.00")  # $51: a total seen inside a transaction may be stale
    assert len(near) == len(far) + 1 and "SUM" in near[-1] and "alerts_" not in near[-1]
    assert not BudgetAlert.objects.exists()

    crossing = _record_in_transaction(researcher, "25.00")  # $76: seen crossing, created after commit
    assert [a.alert_level for a in BudgetAlert.objects.filter(budget=budget)] == ["warning"]
    assert [sql for sql in crossing if "alerts_" in sql]

    beyond = _record_in_transaction(researcher, "30.00")  # $106: critical and exceeded; nothing left above
    beyond_again = _record_in_transaction(researcher, "1.00")
    assert len(beyond_again) == len(far)
    assert sorted(BudgetAlert.objects.filter(budget=budget).values_list("alert_level", flat=True)) == [
        "critical", "exceeded", "warning"]
    assert beyond
