"""Recomputing the derived ledger — budget spend counters and hourly rollups — from the raw usage
records, reporting the drift between what is stored and what the records say.

The write path keeps both in step inside each recording transaction, so the drift must be zero;
this is the proof (`manage.py rebuild_counters --check`) and the repair (`rebuild_counters`) when
something outside the services changed the data (a manual SQL edit, a restored backup, a new
BUDGET_TIMEZONE). Budgets count from the start of the period they were created in (see
budgets.periods.budget_counts_from); inactive budgets are not counted and are left alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC
from decimal import Decimal

from django.db import connection, transaction
from django.db.models import Case, Count, DecimalField, F, IntegerField, Sum, Value, When
from django.db.models.functions import Coalesce, TruncDate, TruncHour, TruncMonth
from django.utils import timezone

from budgets.models import Budget, Reservation, ReservationHold, SpendCounter
from budgets.periods import FIXED, budget_counts_from, budget_zone, period_bounds
from costmonitor.money import ZERO, to_money

from .models import HourlyRollup, UsageRecord

_MS_QUANTUM = Decimal("0.001")
_CALLS = Case(When(batch_size__gt=0, then=F("batch_size")), default=Value(1), output_field=IntegerField())
_OK_CALLS = Case(When(batch_size__gt=0, then=Coalesce(F("success_count"), Value(0))),
                 When(success=True, then=Value(1)), default=Value(0), output_field=IntegerField())
_MONEY = DecimalField(max_digits=24, decimal_places=6)
_LOCKED_TABLES = [UsageRecord, Reservation, ReservationHold, SpendCounter, HourlyRollup]


@dataclass
class CounterDrift:
    budget: Budget
    period_key: str
    stored: tuple[Decimal, int, Decimal]  # spent, calls, reserved
    actual: tuple[Decimal, int, Decimal]


@dataclass
class RebuildReport:
    counters_checked: int = 0
    counter_drift: list[CounterDrift] = field(default_factory=list)
    rollups_stored: int = 0
    rollups_actual: int = 0
    rollups_drifted: int = 0
    rollup_totals_stored: dict = field(default_factory=dict)
    rollup_totals_actual: dict = field(default_factory=dict)
    written: bool = False

    @property
    def has_drift(self) -> bool:
        return bool(self.counter_drift) or self.rollups_drifted > 0


# --- Counters ----------------------------------------------------------------------------------

def _records_of(budget: Budget):
    scope = Budget.Scope
    records = UsageRecord.objects.all()
    if budget.scope == scope.TEAM:
        records = records.filter(team_id=budget.team_id)
    elif budget.scope == scope.USER:
        records = records.filter(user_id=budget.user_id)
    elif budget.scope == scope.CATEGORY:
        records = records.filter(research_category=budget.research_category)
    elif budget.scope == scope.MODEL:
        records = records.filter(model_name=budget.model_name)
    if budget.period == FIXED:
        start, end = period_bounds(FIXED, timezone.now(), starts_on=budget.starts_on, ends_on=budget.ends_on)
        return records.filter(occurred_at__gte=start, occurred_at__lt=end)
    since = budget_counts_from(budget)
    return records.filter(occurred_at__gte=since) if since is not None else records


def counters_actual(budget: Budget) -> dict[str, tuple[Decimal, int]]:
    """{period_key: (spent, calls)} of one budget, summed from the raw records in the database."""
    records = _records_of(budget).order_by()
    totals = {"spent": Sum("cost_usd", output_field=_MONEY), "calls": Sum(_CALLS)}
    if budget.period == FIXED:
        row = records.aggregate(**totals)
        return {FIXED: (to_money(row["spent"]), row["calls"] or 0)} if row["calls"] else {}
    zone = budget_zone()
    if budget.period == Budget.Period.DAILY:
        rows = records.annotate(period=TruncDate("occurred_at", tzinfo=zone)).values("period").annotate(**totals)
        return {row["period"].isoformat(): (to_money(row["spent"]), row["calls"]) for row in rows}
    rows = records.annotate(period=TruncMonth("occurred_at", tzinfo=zone)).values("period").annotate(**totals)
    return {row["period"].strftime("%Y-%m"): (to_money(row["spent"]), row["calls"]) for row in rows}


def _held_by_counter(budget_ids) -> dict[int, Decimal]:
    held = ReservationHold.objects.filter(counter__budget_id__in=budget_ids,
                                          reservation__status=Reservation.Status.HELD)
    rows = held.values("counter_id").annotate(total=Sum("amount")).order_by()
    return {row["counter_id"]: to_money(row["total"]) for row in rows}


def counters_rebuild(*, budgets: list[Budget], write: bool, report: RebuildReport | None = None) -> RebuildReport:
    """Compare (and with `write`, replace) each budget's counters with the sums of its records.

    A period's counter is spread over slot rows: it is the periods' totals (summed over the slots)
    that must equal the records. A repair puts a drifted period's spend and calls on slot 0 and
    zeroes the other slots; every slot row keeps as reserved exactly the held reservations placed
    on it (their holds point at that row).
    """
    report = report or RebuildReport()
    rows: dict[tuple[int, str], list[SpendCounter]] = {}
    for counter in SpendCounter.objects.filter(budget__in=budgets).order_by("budget_id", "period_key", "slot"):
        rows.setdefault((counter.budget_id, counter.period_key), []).append(counter)
    held = _held_by_counter([b.id for b in budgets])
    now = timezone.now()
    for budget in budgets:
        actual = counters_actual(budget)
        keys = set(actual) | {key for (budget_id, key) in rows if budget_id == budget.id}
        for key in sorted(keys):
            slots = rows.get((budget.id, key), [])
            spent, calls = actual.get(key, (ZERO, 0))
            reserved = sum((held.get(c.id, ZERO) for c in slots), ZERO)
            before = (to_money(sum((c.spent for c in slots), ZERO)), sum(c.calls for c in slots),
                      to_money(sum((c.reserved for c in slots), ZERO)))
            row_reserved_ok = all(to_money(c.reserved) == held.get(c.id, ZERO) for c in slots)
            report.counters_checked += 1
            if before == (spent, calls, reserved) and row_reserved_ok:
                continue
            report.counter_drift.append(CounterDrift(budget, key, before, (spent, calls, reserved)))
            if write:
                _counter_period_write(budget, key, slots, spent=spent, calls=calls, held=held, now=now)
    return report


def _counter_period_write(budget: Budget, key: str, slots: list[SpendCounter], *, spent, calls, held, now) -> None:
    """Spend and calls on slot 0, nothing on the others; each row's reserved = the holds placed on it."""
    if not any(c.slot == 0 for c in slots):
        SpendCounter.objects.create(budget=budget, period_key=key, slot=0, spent=spent, calls=calls,
                                    reserved=ZERO, updated_at=now)
    for counter in slots:
        first = counter.slot == 0
        SpendCounter.objects.filter(pk=counter.pk).update(
            spent=spent if first else ZERO, calls=calls if first else 0,
            reserved=held.get(counter.id, ZERO), updated_at=now)


# --- Rollups -----------------------------------------------------------------------------------

_ROLLUP_KEY = ("hour", "team_id", "user_id", "model_name", "research_category", "operation_type")
_ROLLUP_VALUES = ("calls", "successful_calls", "failed_calls", "cost_usd", "successful_cost_usd", "prompt_tokens",
                  "completion_tokens", "total_tokens", "response_time_ms_sum", "response_time_count")


def rollups_actual() -> dict[tuple, tuple]:
    """Every hourly rollup row as the raw records say it should be."""
    rows = (UsageRecord.objects.order_by()
            .annotate(hour=TruncHour("occurred_at", tzinfo=UTC))
            .values(*_ROLLUP_KEY)
            .annotate(n_calls=Sum(_CALLS), n_ok=Sum(_OK_CALLS), cost=Sum("cost_usd", output_field=_MONEY),
                      ok_cost=Sum(Case(When(success=True, then=F("cost_usd")), default=Value(ZERO),
                                       output_field=_MONEY)),
                      prompt=Sum("prompt_tokens"), completion=Sum("completion_tokens"), tokens=Sum("total_tokens"),
                      rt_sum=Sum("response_time_ms"), rt_count=Count("response_time_ms")))
    return {
        tuple(row[k] for k in _ROLLUP_KEY): (
            row["n_calls"], row["n_ok"], row["n_calls"] - row["n_ok"], to_money(row["cost"]), to_money(row["ok_cost"]),
            row["prompt"], row["completion"], row["tokens"],
            Decimal(row["rt_sum"] or 0).quantize(_MS_QUANTUM), row["rt_count"])
        for row in rows
    }


def rollups_stored() -> dict[tuple, tuple]:
    """Every hourly rollup group as stored: its slot rows summed."""
    rows = (HourlyRollup.objects.order_by().values(*_ROLLUP_KEY)
            .annotate(**{f"total_{name}": Sum(name) for name in _ROLLUP_VALUES}))
    return {
        tuple(row[k] for k in _ROLLUP_KEY): (
            row["total_calls"], row["total_successful_calls"], row["total_failed_calls"],
            to_money(row["total_cost_usd"]), to_money(row["total_successful_cost_usd"]),
            row["total_prompt_tokens"], row["total_completion_tokens"], row["total_total_tokens"],
            Decimal(row["total_response_time_ms_sum"] or 0).quantize(_MS_QUANTUM), row["total_response_time_count"])
        for row in rows.iterator(chunk_size=5000)
    }


def _totals(rows: dict) -> dict:
    return {"rows": len(rows), "calls": sum(v[0] for v in rows.values()),
            "cost_usd": sum((v[3] for v in rows.values()), ZERO),
            "total_tokens": sum(v[7] for v in rows.values())}


def rollups_rebuild(*, write: bool, report: RebuildReport | None = None) -> RebuildReport:
    report = report or RebuildReport()
    actual, stored = rollups_actual(), rollups_stored()
    report.rollups_actual, report.rollups_stored = len(actual), len(stored)
    report.rollups_drifted = sum(1 for key in actual.keys() | stored.keys() if actual.get(key) != stored.get(key))
    report.rollup_totals_actual, report.rollup_totals_stored = _totals(actual), _totals(stored)
    if write and report.rollups_drifted:
        # Rewritten on slot 0, one row per group.
        HourlyRollup.objects.all().delete()
        HourlyRollup.objects.bulk_create(
            (HourlyRollup(**dict(zip(_ROLLUP_KEY, key, strict=True)), **dict(zip(_ROLLUP_VALUES, values, strict=True)))
             for key, values in actual.items()), batch_size=5000)
    return report


# --- Both, consistently ------------------------------------------------------------------------

def ledger_rebuild(*, write: bool) -> RebuildReport:
    """Check (or repair) every active budget's counters and every rollup against the records.

    Checking reads one snapshot (REPEATABLE READ on PostgreSQL), so writers running meanwhile
    cannot make it see a record without its counter. Repairing locks the ledger tables against
    writes until it commits: recording waits a moment rather than racing the rebuild.
    """
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                if write:
                    tables = ", ".join(model._meta.db_table for model in _LOCKED_TABLES)
                    cursor.execute(f"LOCK TABLE {tables} IN SHARE ROW EXCLUSIVE MODE")
                else:
                    cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        report = counters_rebuild(budgets=list(Budget.objects.filter(is_active=True).order_by("id")), write=write)
        rollups_rebuild(write=write, report=report)
        report.written = write
    return report
