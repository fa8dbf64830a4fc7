"""The budget ledger (the reference's BudgetManager writes): spend counters, checks, reservations, limits.

Every recorded cost moves per-period counters in the same transaction as its usage row, so a check
reads one counter per applicable budget, whatever the history. Holds on hard budgets are taken
with a conditional UPDATE (`… WHERE spent + reserved + x <= limit`), which PostgreSQL re-evaluates
after any concurrent writer commits: concurrent callers can never overspend a hard budget together.
Counter rows are always touched in (budget_id, period_key) order, so concurrent writers do not deadlock.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Iterable

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.dispatch import Signal
from django.utils import timezone

from costmonitor.errors import BudgetExceeded, InvalidParameters
from costmonitor.money import ZERO

from .models import AuditLog, Budget, Reservation, ReservationHold, SpendCounter
from .periods import budget_period_key

# Sent inside the recording transaction with the list of CounterChange it made; receivers that
# cause side effects (alerts) must defer them with transaction.on_commit.
spend_recorded = Signal()


@dataclass(frozen=True)
class SpendTarget:
    """Who/what a cost is booked to: decides which budgets apply."""

    team_id: int
    user_id: int
    research_category: str = ""
    model_name: str = ""


@dataclass
class CounterChange:
    budget: Budget
    period_key: str
    spent_before: Decimal
    spent_after: Decimal
    reserved: Decimal


@dataclass
class _Delta:
    spent: Decimal = ZERO
    reserved: Decimal = ZERO
    calls: int = 0


@dataclass
class SpendLedgerEntry:
    """One usage record's contribution to the counters."""

    target: SpendTarget
    cost: Decimal
    occurred_at: datetime
    calls: int = 1


@dataclass
class BudgetState:
    budget: Budget
    period_key: str
    spent: Decimal
    reserved: Decimal

    @property
    def committed(self) -> Decimal:
        return self.spent + self.reserved


@dataclass
class CheckResult:
    allowed: bool
    states: list[BudgetState]
    denied_by: BudgetState | None = None
    requested: Decimal = ZERO
    extra: dict = field(default_factory=dict)


# --- Which budgets apply ----------------------------------------------------------------------

def budgets_applicable(*, target: SpendTarget) -> list[Budget]:
    """Active budgets covering this team, user, category or model (and the organisation)."""
    scope = Budget.Scope
    condition = Q(scope=scope.ORGANIZATION) | Q(scope=scope.TEAM, team_id=target.team_id) | Q(
        scope=scope.USER, user_id=target.user_id)
    if target.research_category:
        condition |= Q(scope=scope.CATEGORY, research_category=target.research_category)
    if target.model_name:
        condition |= Q(scope=scope.MODEL, model_name=target.model_name)
    return list(Budget.objects.filter(condition, is_active=True).order_by("id"))


# --- Counters ---------------------------------------------------------------------------------

def _apply_deltas(deltas: dict[tuple[int, str], _Delta]) -> dict[tuple[int, str], tuple[Decimal, Decimal]]:
    """Upsert counter deltas in one statement (sorted rows); returns {(budget, key): (spent, reserved)}."""
    if not deltas:
        return {}
    table = SpendCounter._meta.db_table
    now = timezone.now()
    rows, params = [], []
    for (budget_id, key), delta in sorted(deltas.items()):
        rows.append("(%s, %s, %s, %s, %s, %s)")
        params += [budget_id, key, delta.spent, delta.reserved, delta.calls, now]
    sql = (
        f"INSERT INTO {table} (budget_id, period_key, spent, reserved, calls, updated_at) VALUES {', '.join(rows)} "
        f"ON CONFLICT (budget_id, period_key) DO UPDATE SET spent = {table}.spent + EXCLUDED.spent, "
        f"reserved = {table}.reserved + EXCLUDED.reserved, calls = {table}.calls + EXCLUDED.calls, "
        f"updated_at = EXCLUDED.updated_at RETURNING budget_id, period_key, spent, reserved"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return {(b, k): (Decimal(str(s)), Decimal(str(r))) for b, k, s, r in cursor.fetchall()}


def _spend_deltas(entries: Iterable[SpendLedgerEntry], budgets_by_target) -> tuple[dict, dict]:
    deltas: dict[tuple[int, str], _Delta] = defaultdict(_Delta)
    budgets: dict[int, Budget] = {}
    for entry in entries:
        for budget in budgets_by_target(entry.target):
            key = budget_period_key(budget, entry.occurred_at)
            if key is None:
                continue
            budgets[budget.id] = budget
            delta = deltas[(budget.id, key)]
            delta.spent += entry.cost
            delta.calls += entry.calls
    return deltas, budgets


def counters_record_spend(*, entries: list[SpendLedgerEntry], settle: list[Reservation] | None = None,
                          budgets_by_target=None) -> list[CounterChange]:
    """Add recorded costs to every applicable budget's counter, releasing settled holds in the same
    statement. Must run inside the transaction that stores the usage rows."""
    if budgets_by_target is None:
        cache: dict[SpendTarget, list[Budget]] = {}

        def budgets_by_target(target):
            if target not in cache:
                cache[target] = budgets_applicable(target=target)
            return cache[target]

    deltas, budgets = _spend_deltas(entries, budgets_by_target)
    for reservation in settle or []:
        for hold in reservation.holds.select_related("counter__budget"):
            counter = hold.counter
            budgets.setdefault(counter.budget_id, counter.budget)
            deltas[(counter.budget_id, counter.period_key)].reserved -= hold.amount
    after = _apply_deltas(deltas)
    changes = []
    for (budget_id, key), delta in sorted(deltas.items()):
        spent, reserved = after[(budget_id, key)]
        changes.append(CounterChange(budgets[budget_id], key, spent - delta.spent, spent, reserved))
    spend_recorded.send(sender=SpendCounter, changes=changes)
    return changes


# --- Reading state ----------------------------------------------------------------------------

def budget_states(*, budgets: list[Budget], at: datetime | None = None) -> list[BudgetState]:
    """Current spend and holds of each budget's period containing `at` (one query)."""
    at = at or timezone.now()
    keyed = [(b, budget_period_key(b, at)) for b in budgets]
    keyed = [(b, k) for b, k in keyed if k is not None]
    if not keyed:
        return []
    condition = Q()
    for budget, key in keyed:
        condition |= Q(budget_id=budget.id, period_key=key)
    found = {(c.budget_id, c.period_key): c for c in SpendCounter.objects.filter(condition)}
    states = []
    for budget, key in keyed:
        counter = found.get((budget.id, key))
        states.append(BudgetState(budget, key, counter.spent if counter else ZERO,
                                  counter.reserved if counter else ZERO))
    return states


def _exceeds(state: BudgetState, amount: Decimal) -> bool:
    return state.committed + amount > state.budget.limit_usd


def _budget_exceeded(state: BudgetState, amount: Decimal) -> BudgetExceeded:
    budget = state.budget
    return BudgetExceeded(
        f"{budget.get_period_display()} budget {budget.name!r} limit of ${budget.limit_usd:.2f} would be exceeded",
        details={
            "current_cost": float(state.spent),
            "reserved_cost": float(state.reserved),
            "requested_cost": float(amount),
            "budget_limit": float(budget.limit_usd),
            "projected_total": float(state.committed + amount),
            "budget_id": budget.id,
            "budget_name": budget.name,
            "budget_scope": budget.scope,
            "period_type": budget.period,
            "period_key": state.period_key,
        },
    )


def budget_check(*, target: SpendTarget, amount: Decimal, at: datetime | None = None) -> CheckResult:
    """A plain check (no hold): allowed unless a hard budget would be exceeded."""
    if amount < 0:
        raise InvalidParameters("The cost must not be negative.", field="cost_amount")
    states = budget_states(budgets=budgets_applicable(target=target), at=at)
    denied = next((s for s in states if s.budget.is_hard and _exceeds(s, amount)), None)
    return CheckResult(allowed=denied is None, states=states, denied_by=denied, requested=amount)


def budget_exceeded_error(result: CheckResult) -> BudgetExceeded:
    return _budget_exceeded(result.denied_by, result.requested)


# --- Reservations -----------------------------------------------------------------------------

def reservation_create(*, target: SpendTarget, amount: Decimal, operation_type: str = "",
                       ttl_seconds: int | None = None) -> Reservation:
    """Hold `amount` against every applicable budget atomically; BudgetExceeded if a hard one can't take it."""
    if amount < 0:
        raise InvalidParameters("The estimated cost must not be negative.", field="estimated_cost")
    now = timezone.now()
    ttl = ttl_seconds or settings.RESERVATION_TTL_SECONDS
    budgets = budgets_applicable(target=target)
    with transaction.atomic():
        keyed = sorted(((b, budget_period_key(b, now)) for b in budgets), key=lambda bk: (bk[0].id, bk[1] or ""))
        keyed = [(b, k) for b, k in keyed if k is not None]
        _apply_deltas({(b.id, k): _Delta() for b, k in keyed})  # make sure every counter row exists
        counters = {(c.budget_id, c.period_key): c.id for c in SpendCounter.objects.filter(
            budget_id__in=[b.id for b, _ in keyed])}
        table = SpendCounter._meta.db_table
        held = []
        with connection.cursor() as cursor:
            for budget, key in keyed:
                counter_id = counters[(budget.id, key)]
                if budget.is_hard:
                    cursor.execute(f"UPDATE {table} SET reserved = reserved + %s, updated_at = %s "
                                   f"WHERE id = %s AND spent + reserved + CAST(%s AS NUMERIC) <= CAST(%s AS NUMERIC)",
                                   [amount, now, counter_id, amount, budget.limit_usd])
                else:
                    cursor.execute(f"UPDATE {table} SET reserved = reserved + %s, updated_at = %s WHERE id = %s",
                                   [amount, now, counter_id])
                if cursor.rowcount != 1:
                    counter = SpendCounter.objects.get(pk=counter_id)
                    error = _budget_exceeded(BudgetState(budget, key, counter.spent, counter.reserved), amount)
                    transaction.set_rollback(True)
                    raise error
                held.append(counter_id)
        reservation = Reservation.objects.create(
            user_id=target.user_id, team_id=target.team_id, estimated_cost=amount, operation_type=operation_type,
            research_category=target.research_category, model_name=target.model_name,
            expires_at=now + timedelta(seconds=ttl))
        ReservationHold.objects.bulk_create(
            [ReservationHold(reservation=reservation, counter_id=cid, amount=amount) for cid in held])
    return reservation


def reservations_lock_for_settlement(*, operation_ids: list, user) -> list[Reservation]:
    """Lock the caller's held reservations for settling inside the current transaction."""
    if not operation_ids:
        return []
    found = list(Reservation.objects.select_for_update().filter(operation_id__in=operation_ids))
    by_id = {str(r.operation_id): r for r in found}
    for operation_id in operation_ids:
        reservation = by_id.get(str(operation_id))
        if reservation is None or (reservation.user_id != user.pk and not user.has_perm("budgets.modify_budgets")):
            raise InvalidParameters("Unknown operation_id.", field="operation_id")
        if reservation.status != Reservation.Status.HELD:
            raise InvalidParameters(f"This reservation is already {reservation.status}.", field="operation_id")
    return found


def reservations_mark(*, reservations: list[Reservation], status: str) -> None:
    if reservations:
        Reservation.objects.filter(pk__in=[r.pk for r in reservations]).update(status=status,
                                                                               closed_at=timezone.now())


def _release(reservations: list[Reservation], status: str) -> None:
    counters_record_spend(entries=[], settle=reservations)
    reservations_mark(reservations=reservations, status=status)


def reservation_release(*, operation_id, user) -> Reservation:
    with transaction.atomic():
        (reservation,) = reservations_lock_for_settlement(operation_ids=[operation_id], user=user)
        _release([reservation], Reservation.Status.RELEASED)
    reservation.status = Reservation.Status.RELEASED
    return reservation


def reservations_expire(*, now: datetime | None = None, batch_size: int = 500) -> int:
    """Release holds that were never settled (periodic task). Safe to run concurrently."""
    now = now or timezone.now()
    released = 0
    while True:
        with transaction.atomic():
            expired = list(Reservation.objects.select_for_update(skip_locked=True)
                           .filter(status=Reservation.Status.HELD, expires_at__lte=now)[:batch_size])
            if not expired:
                return released
            _release(expired, Reservation.Status.EXPIRED)
            released += len(expired)


# --- Limits -----------------------------------------------------------------------------------

def global_budget(period: str) -> Budget:
    return Budget.objects.get(is_global_default=True, period=period)


def budget_limits_update(*, actor, daily_budget: Decimal | None = None,
                         monthly_budget: Decimal | None = None) -> dict[str, Budget]:
    """update_budget_limits: change the organisation's daily/monthly limits, with an audit row each."""
    changed = {}
    with transaction.atomic():
        for period, new_limit in (("daily", daily_budget), ("monthly", monthly_budget)):
            if new_limit is None:
                continue
            budget = Budget.objects.select_for_update().get(is_global_default=True, period=period)
            changed[period] = budget_update(budget=budget, actor=actor, limit_usd=new_limit)
    return changed


def budget_update(*, budget: Budget, actor, **fields) -> Budget:
    """Change a budget; every changed field is written to the audit log (who, when, old, new)."""
    changes = {}
    for name, value in fields.items():
        old = getattr(budget, name)
        if old != value:
            changes[name] = [_plain(old), _plain(value)]
            setattr(budget, name, value)
    if changes:
        budget.full_clean()
        budget.save()
        AuditLog.objects.create(actor=actor if actor and actor.is_authenticated else None,
                                action="budget.updated", object_type="Budget", object_id=str(budget.pk),
                                changes=changes)
    return budget


def budget_create(*, actor, **fields) -> Budget:
    budget = Budget(**fields)
    budget.full_clean()
    budget.save()
    AuditLog.objects.create(actor=actor if actor and actor.is_authenticated else None, action="budget.created",
                            object_type="Budget", object_id=str(budget.pk),
                            changes={k: [None, _plain(v)] for k, v in fields.items()})
    return budget


def budget_delete(*, budget: Budget, actor) -> None:
    if budget.is_global_default:
        raise InvalidParameters("The organisation's daily and monthly budgets can be changed, not deleted.",
                                field="budget")
    AuditLog.objects.create(actor=actor if actor and actor.is_authenticated else None, action="budget.deleted",
                            object_type="Budget", object_id=str(budget.pk),
                            changes={"name": [budget.name, None], "limit_usd": [_plain(budget.limit_usd), None]})
    budget.delete()


def _plain(value):
    if isinstance(value, Decimal):
        return str(value)
    if hasattr(value, "pk"):
        return value.pk
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value
