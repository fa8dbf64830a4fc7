"""The budget ledger (the reference's BudgetManager writes): spend counters, checks, reservations, limits.

Every recorded cost moves per-period counters in the same transaction as its usage row, so a check
reads a few counter rows per applicable budget, whatever the history. A budget period's counter is
spread over SPEND_COUNTER_SLOTS rows (slots): a recording adds to its connection's slot only, so
concurrent recordings do not queue on one row; readers sum the slots. A hold locks every slot row of
each hard budget's period in the same upsert that adds it, and reads the exact totals under those
locks; if a hard budget is then over its limit the transaction rolls back unseen, so concurrent
callers can never overspend a hard budget together. Counter rows are always touched in
(budget_id, period_key, slot) order, so concurrent writers do not deadlock.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from functools import lru_cache

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import DEFAULT_DB_ALIAS, connection, connections, transaction
from django.db.models import Max, Q, Sum
from django.dispatch import Signal
from django.utils import timezone

from costmonitor.db import prepared_fetchall
from costmonitor.errors import BudgetExceeded, InvalidParameters
from costmonitor.money import MAX_RESERVATION, ZERO, to_money

from .models import AuditLog, Budget, Reservation, ReservationHold, SpendCounter
from .periods import FIXED, budget_counts_from, budget_period_key, local_date, period_key_of_day

# Sent with the list of CounterChange a recording made: inside its transaction when there is one
# (settlements, idempotency keys), right after its single statement committed otherwise. Receivers
# that cause side effects (alerts) defer them with transaction.on_commit, which covers both.
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
    """What a write adds to one counter row."""

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
    calls: int = 0
    updated_at: datetime | None = None

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

_BUDGET_FIELDS = [f.attname for f in Budget._meta.concrete_fields]


def budgets_applicable(*, target: SpendTarget) -> list[Budget]:
    """Active budgets covering this team, user, category or model (and the organisation)."""
    if connection.vendor == "postgresql":
        return _budgets_applicable_sql(target)
    scope = Budget.Scope
    condition = Q(scope=scope.ORGANIZATION) | Q(scope=scope.TEAM, team_id=target.team_id) | Q(
        scope=scope.USER, user_id=target.user_id)
    if target.research_category:
        condition |= Q(scope=scope.CATEGORY, research_category=target.research_category)
    if target.model_name:
        condition |= Q(scope=scope.MODEL, model_name=target.model_name)
    return list(Budget.objects.filter(condition, is_active=True).order_by("id"))


def _budgets_applicable_sql(target: SpendTarget) -> list[Budget]:
    """The same query hand-written and prepared (PostgreSQL returns every column as its Python type): it
    runs for every check and hold, and building it with the ORM cost more than running it."""
    global _BUDGETS_APPLICABLE_SQL
    if _BUDGETS_APPLICABLE_SQL is None:
        quote = connection.ops.quote_name
        _BUDGETS_APPLICABLE_SQL = (
            f"SELECT {', '.join(quote(f.column) for f in Budget._meta.concrete_fields)} "
            f"FROM {quote(Budget._meta.db_table)} WHERE is_active AND (scope = %s OR (scope = %s AND team_id = %s) "
            f"OR (scope = %s AND user_id = %s) OR (scope = %s AND research_category = %s) "
            f"OR (scope = %s AND model_name = %s)) ORDER BY id")
    scope = Budget.Scope
    # An empty category or model names no budget (NULL equals nothing).
    params = [scope.ORGANIZATION, scope.TEAM, target.team_id, scope.USER, target.user_id,
              scope.CATEGORY, target.research_category or None, scope.MODEL, target.model_name or None]
    rows = prepared_fetchall(_BUDGETS_APPLICABLE_SQL, params)
    names = [f.attname for f in Budget._meta.concrete_fields]
    return [Budget.from_db(connection.alias, names, row) for row in rows]


_BUDGETS_APPLICABLE_SQL: str | None = None


# --- Counters ---------------------------------------------------------------------------------

CounterKey = tuple  # (budget_id, period_key, slot)


def counter_slot() -> int:
    """The counter slot this connection writes: its PostgreSQL backend's pid modulo SPEND_COUNTER_SLOTS
    (0 elsewhere). One connection always writes the same row, concurrent connections mostly not."""
    slots = settings.SPEND_COUNTER_SLOTS
    db = connections[DEFAULT_DB_ALIAS]
    if slots <= 1 or db.vendor != "postgresql":
        return 0
    db.ensure_connection()
    return db.connection.info.backend_pid % slots


def counters_upsert_sql(deltas: dict[CounterKey, _Delta]) -> tuple[str, list]:
    """One INSERT … ON CONFLICT DO UPDATE adding the deltas, rows sorted by (budget, period, slot) so
    that concurrent writers lock counter rows in the same order and never deadlock. RETURNING id,
    budget_id, period_key, slot, spent, reserved (the row's values after the change)."""
    table = SpendCounter._meta.db_table
    now = timezone.now()
    rows, params = [], []
    for (budget_id, key, slot), delta in sorted(deltas.items()):
        rows.append("(%s, %s, %s, %s, %s, %s, %s)")
        params += [budget_id, key, slot, delta.spent, delta.reserved, delta.calls, now]
    sql = (
        f"INSERT INTO {table} (budget_id, period_key, slot, spent, reserved, calls, updated_at) "
        f"VALUES {', '.join(rows)} "
        f"ON CONFLICT (budget_id, period_key, slot) DO UPDATE SET spent = {table}.spent + EXCLUDED.spent, "
        f"reserved = {table}.reserved + EXCLUDED.reserved, calls = {table}.calls + EXCLUDED.calls, "
        f"updated_at = EXCLUDED.updated_at RETURNING id, budget_id, period_key, slot, spent, reserved"
    )
    return sql, params


def counters_snapshot_sql(periods) -> tuple[str, list]:
    """Every slot row of these (budget_id, period_key) periods: id, budget_id, period_key, slot, spent, reserved."""
    table = SpendCounter._meta.db_table
    params = [value for period in sorted(periods) for value in period]
    pairs = ", ".join(["(%s, %s)"] * (len(params) // 2))
    return (f"SELECT id, budget_id, period_key, slot, spent, reserved FROM {table} "
            f"WHERE (budget_id, period_key) IN ({pairs})"), params


@dataclass
class PeriodTotal:
    """A budget period's spend and holds summed over its slots, and the ids of the slot rows seen."""

    spent: Decimal = ZERO
    reserved: Decimal = ZERO
    counter_ids: dict[int, int] = field(default_factory=dict)  # slot → SpendCounter id


def _spend_deltas(entries: Iterable[SpendLedgerEntry], budgets_by_target, slot: int) -> tuple[dict, dict]:
    deltas: dict[CounterKey, _Delta] = defaultdict(_Delta)
    budgets: dict[int, Budget] = {}
    counts_from: dict[int, datetime | None] = {}
    for entry in entries:
        day = local_date(entry.occurred_at)
        for budget in budgets_by_target(entry.target):
            if budget.id not in counts_from:
                counts_from[budget.id] = budget_counts_from(budget)
            since = counts_from[budget.id]
            if since is not None and entry.occurred_at < since:
                continue  # a late record from before the budget existed (rebuild_counters agrees)
            key = period_key_of_day(budget.period, day, starts_on=budget.starts_on, ends_on=budget.ends_on)
            if key is None:
                continue
            budgets[budget.id] = budget
            delta = deltas[(budget.id, key, slot)]
            delta.spent += entry.cost
            delta.calls += entry.calls
    return deltas, budgets


# Column layout of the rows a counter write reads back: (tag, id, budget_id, period_key, slot, spent, reserved).
WRITTEN, SNAPSHOT = 1, 2


@dataclass
class CounterWrite:
    """What recording some costs (settling some holds, or placing one) does to the counter rows, before it is done.

    Run as one statement on PostgreSQL: the upsert (which locks the rows it writes and returns their
    new values) and a read of every slot row of the same periods (the statement's snapshot). A
    period's total is the written rows' new values plus the other slots as of that snapshot.
    """

    deltas: dict[CounterKey, _Delta]
    budgets: dict[int, Budget]

    @property
    def periods(self) -> set[tuple[int, str]]:
        return {(budget_id, key) for budget_id, key, _ in self.deltas}

    def ctes(self) -> tuple[list[str], list, str]:
        """WITH parts `cnt` and `snp`, their parameters, and the UNION ALL branches selecting both."""
        upsert, upsert_params = counters_upsert_sql(self.deltas)
        snapshot, snapshot_params = counters_snapshot_sql(self.periods)
        columns = "id, budget_id, period_key, slot, spent, reserved"
        return ([f"cnt AS ({upsert})", f"snp AS ({snapshot})"], upsert_params + snapshot_params,
                f"SELECT {WRITTEN}, {columns} FROM cnt UNION ALL SELECT {SNAPSHOT}, {columns} FROM snp")

    def execute(self) -> list[tuple]:
        """Apply the deltas on the current connection (in the caller's transaction, if any); the tagged rows."""
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                parts, params, select = self.ctes()
                cursor.execute(f"WITH {', '.join(parts)} {select}", params)
                return cursor.fetchall()
            # Elsewhere (SQLite) writers are serialised: read the snapshot, then upsert.
            cursor.execute(*counters_snapshot_sql(self.periods))
            rows = [(SNAPSHOT, *row) for row in cursor.fetchall()]
            cursor.execute(*counters_upsert_sql(self.deltas))
            return rows + [(WRITTEN, *row) for row in cursor.fetchall()]

    def totals(self, rows) -> dict[tuple[int, str], PeriodTotal]:
        """Each period's total from the tagged rows: a written row's new values, else the snapshot's."""
        latest: dict[CounterKey, tuple] = {}
        for tag, counter_id, budget_id, key, slot, spent, reserved in rows:
            if tag == WRITTEN or (budget_id, key, slot) not in latest:
                latest[(budget_id, key, slot)] = (counter_id, spent, reserved)
        totals: dict[tuple[int, str], PeriodTotal] = {}
        for (budget_id, key, slot), (counter_id, spent, reserved) in latest.items():
            total = totals.setdefault((budget_id, key), PeriodTotal())
            total.spent += Decimal(str(spent))
            total.reserved += Decimal(str(reserved))
            total.counter_ids[slot] = counter_id
        return totals

    def done(self, rows) -> list[CounterChange]:
        """Given the statement's rows, announce the changes (spend_recorded) with each period's TOTAL
        spend before and after this write, and return them.

        The totals are the statement's view: the other slots as of its snapshot plus this slot's
        value under its lock. Writes on other slots that commit before this one are missing from it,
        so near a threshold the alerts receiver re-reads the committed total after commit
        (alerts.services.thresholds_recheck_needed). Holds moving alone read nothing more.
        """
        totals = self.totals(rows)
        added: dict[tuple[int, str], Decimal] = defaultdict(lambda: ZERO)
        for (budget_id, key, _slot), delta in self.deltas.items():
            added[(budget_id, key)] += delta.spent
        changes = []
        for budget_id, key in sorted(self.periods):
            total = totals[(budget_id, key)]
            changes.append(CounterChange(self.budgets[budget_id], key, total.spent - added[(budget_id, key)],
                                         total.spent, total.reserved))
        spend_recorded.send(sender=SpendCounter, changes=changes)
        return changes


@dataclass
class HoldChanges:
    """What settling reservations (or taking partial costs out of them) does to the counter rows
    their holds sit on: reserved deltas by (budget, period, slot), and the holds whose amount shrank."""

    deltas: dict[CounterKey, Decimal] = field(default_factory=dict)
    budgets: dict[int, Budget] = field(default_factory=dict)
    holds_reduced: list = field(default_factory=list)


def holds_prepare(*, settle: list[Reservation] | None = None, take: dict | None = None) -> HoldChanges:
    """The holds being settled come off the slot rows they were placed on; what partial records take
    out of holds that stay held (`take`: {operation_id: (reservation, cost)}) comes off too: each
    hold gives min(cost, what it still holds), and its amount is reduced (reservation_holds_save)."""
    changes = HoldChanges()

    def move(counter, amount):
        changes.budgets.setdefault(counter.budget_id, counter.budget)
        key = (counter.budget_id, counter.period_key, counter.slot)
        changes.deltas[key] = changes.deltas.get(key, ZERO) - amount

    for reservation in settle or []:
        for hold in reservation.holds.select_related("counter__budget"):
            move(hold.counter, hold.amount)
    for reservation, cost in (take or {}).values():
        for hold in reservation.holds.select_related("counter__budget"):
            taken = min(cost, hold.amount)
            move(hold.counter, taken)
            hold.amount -= taken
            changes.holds_reduced.append(hold)
    return changes


def counters_prepare(*, entries: list[SpendLedgerEntry], holds: HoldChanges | None = None,
                     budgets_by_target=None) -> CounterWrite | None:
    """The counter deltas of these costs for every applicable budget (on this connection's slot), plus
    the holds' changes. The Python formulation, for databases other than PostgreSQL (where the
    recording statement finds the budgets itself: recording_counters_sql)."""
    if budgets_by_target is None:
        cache: dict[SpendTarget, list[Budget]] = {}

        def budgets_by_target(target):
            if target not in cache:
                cache[target] = budgets_applicable(target=target)
            return cache[target]

    deltas, budgets = _spend_deltas(entries, budgets_by_target, counter_slot() if entries else 0)
    holds = holds or HoldChanges()
    for key, reserved in holds.deltas.items():
        deltas[key].reserved += reserved
    for budget_id, budget in holds.budgets.items():
        budgets.setdefault(budget_id, budget)
    if not deltas:
        return None
    return CounterWrite(deltas, budgets)


def reservation_holds_save(holds: HoldChanges) -> None:
    """Store what partial records took out of holds (inside the transaction that moved the counters)."""
    if holds.holds_reduced:
        ReservationHold.objects.bulk_update(holds.holds_reduced, ["amount"])


def counters_record_spend(*, entries: list[SpendLedgerEntry], settle: list[Reservation] | None = None,
                          budgets_by_target=None) -> list[CounterChange]:
    """Add recorded costs to every applicable budget's counter, releasing settled holds in the same
    statement. Must run inside the transaction that stores the usage rows."""
    write = counters_prepare(entries=entries, holds=holds_prepare(settle=settle), budgets_by_target=budgets_by_target)
    if write is None:
        spend_recorded.send(sender=SpendCounter, changes=[])
        return []
    return write.done(write.execute())


# --- Recording on PostgreSQL: the recording statement finds its budgets itself ------------------

# What a recording statement's records CTE must return for recording_counters_sql: the inserted
# row's columns, plus `day` (its local date in BUDGET_TIMEZONE) and `calls` (its number of calls).
RECORDING_COLUMNS = ("id", "team_id", "user_id", "research_category", "model_name", "cost_usd",
                     "(occurred_at AT TIME ZONE %(zone)s)::date AS day",
                     "CASE WHEN batch_size > 0 THEN batch_size ELSE 1 END AS calls")


# The holds' changes as rows of the delta CTE (a variant of the statement, for settlements only:
# adapting four empty arrays cost every plain recording more CPU than anything else it sends).
_HOLD_DELTAS = """UNION ALL SELECT h.b, h.p, h.s, 0, h.a, 0 FROM unnest(%(hold_budgets)s::bigint[],
    %(hold_periods)s::varchar[], %(hold_slots)s::smallint[], %(hold_amounts)s::numeric[]) AS h(b, p, s, a)"""


def _recording_sql(records: str, with_holds: bool) -> tuple[str, str]:
    """The recording statement's counter CTEs and its final SELECT (see recording_counters_sql).

    Which budgets a record counts toward and in which period is decided here, in SQL, as
    budgets_applicable, budget_counts_from and period_key_of_day decide it in Python (for the other
    databases, and for checks and holds); tests/ledger/test_recording_sql.py holds both to the same answers.
    """
    budget, counter = Budget._meta.db_table, SpendCounter._meta.db_table
    scope, period = Budget.Scope, Budget.Period
    ctes = f"""delta AS (
  SELECT b.id AS budget_id, CASE b.period WHEN '{period.DAILY}' THEN to_char(r.day, 'YYYY-MM-DD')
    WHEN '{period.MONTHLY}' THEN to_char(r.day, 'YYYY-MM') ELSE '{FIXED}' END AS period_key,
    %(slot)s::smallint AS slot, r.cost_usd AS spent, 0::numeric AS reserved, r.calls
  FROM {records} r JOIN {budget} b ON b.is_active AND (b.scope = '{scope.ORGANIZATION}'
    OR (b.scope = '{scope.TEAM}' AND b.team_id = r.team_id) OR (b.scope = '{scope.USER}' AND b.user_id = r.user_id)
    OR (b.scope = '{scope.CATEGORY}' AND b.research_category = NULLIF(r.research_category, ''))
    OR (b.scope = '{scope.MODEL}' AND b.model_name = NULLIF(r.model_name, '')))
  WHERE CASE b.period WHEN '{period.DAILY}' THEN (b.created_at AT TIME ZONE %(zone)s)::date <= r.day
    WHEN '{period.MONTHLY}' THEN date_trunc('month', b.created_at AT TIME ZONE %(zone)s)::date <= r.day
    ELSE b.starts_on <= r.day AND r.day <= b.ends_on END
  {_HOLD_DELTAS if with_holds else ""}),
cnt AS (
  INSERT INTO {counter} AS c (budget_id, period_key, slot, spent, reserved, calls, updated_at)
  SELECT budget_id, period_key, slot, SUM(spent), SUM(reserved), SUM(calls), statement_timestamp() FROM delta
  GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
  ON CONFLICT (budget_id, period_key, slot) DO UPDATE SET spent = c.spent + EXCLUDED.spent,
    reserved = c.reserved + EXCLUDED.reserved, calls = c.calls + EXCLUDED.calls, updated_at = EXCLUDED.updated_at
  RETURNING budget_id, period_key, slot, spent, reserved),
tot AS (
  SELECT budget_id, period_key, SUM(COALESCE(w.spent, s.spent)) AS spent,
    SUM(COALESCE(w.reserved, s.reserved)) AS reserved
  FROM (SELECT budget_id, period_key, slot, spent, reserved FROM {counter}
    WHERE (budget_id, period_key) IN (SELECT budget_id, period_key FROM delta)) s
  FULL JOIN cnt w USING (budget_id, period_key, slot) GROUP BY 1, 2)"""
    columns = ", ".join(f"b.{f.column}" for f in _recording_budget_fields())
    pad = ", ".join(["NULL"] * (4 + len(_recording_budget_fields())))
    select = (f"SELECT 1, NULL::bigint, t.period_key, t.spent, t.reserved, (SELECT SUM(spent) FROM delta d "
              f"WHERE d.budget_id = t.budget_id AND d.period_key = t.period_key), {columns} "
              f"FROM tot t JOIN {budget} b ON b.id = t.budget_id UNION ALL SELECT 0, id, {pad} FROM {records}")
    return " ".join(ctes.split()), select


_RECORDING_SQL: dict[tuple[str, bool], tuple[str, str]] = {}


def recording_counters_sql(*, records: str, holds: HoldChanges | None = None) -> tuple[str, str, dict]:
    """For a PostgreSQL recording statement `WITH {records} AS (INSERT … RETURNING id, RECORDING_COLUMNS…), …`:
    the CTEs that add each inserted record to the counter (this connection's slot) of every budget
    and period it counts toward, move the holds' changes, and total each period touched; the final
    SELECT; and their (named) parameters. Read its rows with recording_done.

    Deciding the budgets inside the statement that inserts the records means they are read under
    the lock a budget being created or re-targeted takes on the records (_counters_seed): a record
    is either counted by the seeding or sees the budget, never neither. The statement's text is
    constant, so it is prepared once per connection (costmonitor.db.prepared_fetchall).
    """
    variant = (records, bool(holds and holds.deltas))
    if variant not in _RECORDING_SQL:
        _RECORDING_SQL[variant] = _recording_sql(*variant)
    ctes, select = _RECORDING_SQL[variant]
    params = {"zone": settings.BUDGET_TIMEZONE, "slot": counter_slot()}
    if variant[1]:
        keys = sorted(holds.deltas)
        params.update(hold_budgets=[k[0] for k in keys], hold_periods=[k[1] for k in keys],
                      hold_slots=[k[2] for k in keys], hold_amounts=[holds.deltas[k] for k in keys])
    return ctes, select, params


def _recording_budget_fields():
    """The budget columns a recording statement returns: all but the timestamps, which no receiver of
    spend_recorded reads (they stay deferred, loaded if ever touched) and which cost the most to load."""
    return [f for f in Budget._meta.concrete_fields if f.name not in ("created_at", "updated_at")]


_RECORDING_BUDGET_ATTNAMES = {f.attname for f in _recording_budget_fields()}


@lru_cache(maxsize=1024)
def _budget_of_row(alias: str, values: tuple) -> Budget:
    """One instance per distinct budget row a recording statement returned, shared by the recordings
    of this process until the row changes (any change gives another tuple): building a model
    instance cost more than the budget's share of the statement. Receivers of spend_recorded must
    treat change.budget as read-only."""
    return Budget.from_db(alias, _RECORDING_BUDGET_ATTNAMES, values)


def recording_done(rows) -> list[int]:
    """The rows of a recording statement: announce each period's change (spend_recorded) with its
    total spend before and after, as the statement saw it (see CounterWrite.done), and return the
    inserted records' ids in ascending order."""
    ids, changes = [], []
    alias = connection.alias
    for row in rows:
        if row[0] == 0:
            ids.append(row[1])
            continue
        _tag, _id, key, spent, reserved, added, *budget_values = row
        budget = _budget_of_row(alias, tuple(budget_values))
        changes.append(CounterChange(budget, key, spent - (added or ZERO), spent, reserved))
    changes.sort(key=lambda change: (change.budget.pk, change.period_key))
    spend_recorded.send(sender=SpendCounter, changes=changes)
    ids.sort()
    return ids


# --- Reading state ----------------------------------------------------------------------------

def budget_states(*, budgets: list[Budget], at: datetime | None = None) -> list[BudgetState]:
    """Current spend and holds of each budget's period containing `at`, summed over its slots (one query)."""
    at = at or timezone.now()
    keyed = [(b, budget_period_key(b, at)) for b in budgets]
    keyed = [(b, k) for b, k in keyed if k is not None]
    if not keyed:
        return []
    condition = Q()
    for budget, key in keyed:
        condition |= Q(budget_id=budget.id, period_key=key)
    rows = (SpendCounter.objects.filter(condition).order_by().values("budget_id", "period_key")
            .annotate(spent=Sum("spent"), reserved=Sum("reserved"), calls=Sum("calls"), updated_at=Max("updated_at")))
    found = {(row["budget_id"], row["period_key"]): row for row in rows}
    states = []
    for budget, key in keyed:
        row = found.get((budget.id, key))
        if row is None:
            states.append(BudgetState(budget, key, ZERO, ZERO))
        else:
            states.append(BudgetState(budget, key, to_money(row["spent"]), to_money(row["reserved"]), row["calls"],
                                      row["updated_at"]))
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
    """Hold `amount` against every applicable budget atomically; BudgetExceeded if a hard one can't take it.

    One statement adds the hold to this connection's slot of every applicable budget's period and,
    for each hard budget, writes (adds nothing to, creating if missing) every other slot of the
    period too: that locks all of its slot rows, in the (budget, period, slot) order every writer
    uses, so the returned values are the period's exact total while no one else can change it. If a
    hard budget is then over its limit the transaction rolls back before anyone could see the hold.
    Concurrent callers queue on those row locks, so each verifies against what the earlier ones
    committed; recordings lock only their own slot's rows and never deny.
    """
    if amount < 0:
        raise InvalidParameters("The estimated cost must not be negative.", field="estimated_cost")
    if amount > MAX_RESERVATION:
        raise InvalidParameters(f"An estimate above ${MAX_RESERVATION:,.0f} is not plausible; check the token counts.",
                                field="estimated_cost")
    now = timezone.now()
    ttl = ttl_seconds or settings.RESERVATION_TTL_SECONDS
    keyed = [(b, budget_period_key(b, now)) for b in budgets_applicable(target=target)]
    keyed = [(b, k) for b, k in keyed if k is not None]
    slot = counter_slot()
    deltas: dict[CounterKey, _Delta] = {}
    for budget, key in keyed:
        if budget.is_hard:
            deltas.update({(budget.id, key, other): _Delta() for other in range(settings.SPEND_COUNTER_SLOTS)})
        deltas[(budget.id, key, slot)] = _Delta(reserved=amount)
    write = CounterWrite(deltas, {b.id: b for b, _ in keyed})
    with transaction.atomic():
        totals = write.totals(write.execute()) if deltas else {}
        for budget, key in keyed:
            total = totals[(budget.id, key)]
            if budget.is_hard and total.spent + total.reserved > budget.limit_usd:
                error = _budget_exceeded(BudgetState(budget, key, total.spent, total.reserved - amount), amount)
                transaction.set_rollback(True)
                raise error
        reservation = Reservation.objects.create(
            user_id=target.user_id, team_id=target.team_id, estimated_cost=amount, operation_type=operation_type,
            research_category=target.research_category, model_name=target.model_name,
            expires_at=now + timedelta(seconds=ttl))
        ReservationHold.objects.bulk_create(
            [ReservationHold(reservation=reservation, counter_id=totals[(b.id, k)].counter_ids[slot], amount=amount)
             for b, k in keyed])
    return reservation


def reservations_lock_for_settlement(*, operation_ids: list, user) -> list[Reservation]:
    """Lock the caller's reservations for settling inside the current transaction; returns the held ones.

    A reservation that expired or was released no longer holds anything: the actual cost is still
    recorded (the call happened and its spend must not be lost), there is just no hold to undo.
    One that was already settled is refused, so the same operation is never counted twice.
    """
    if not operation_ids:
        return []
    found = list(Reservation.objects.select_for_update().filter(operation_id__in=operation_ids))
    by_id = {str(r.operation_id): r for r in found}
    for operation_id in operation_ids:
        reservation = by_id.get(str(operation_id))
        if reservation is None or (reservation.user_id != user.pk and not user.has_perm("budgets.modify_budgets")):
            raise InvalidParameters("Unknown operation_id.", field="operation_id")
        if reservation.status == Reservation.Status.SETTLED:
            raise InvalidParameters("This reservation was already settled by another record.", field="operation_id")
    return [r for r in found if r.status == Reservation.Status.HELD]


def reservations_mark(*, reservations: list[Reservation], status: str) -> None:
    if reservations:
        Reservation.objects.filter(pk__in=[r.pk for r in reservations]).update(status=status,
                                                                               closed_at=timezone.now())


def _release(reservations: list[Reservation], status: str) -> None:
    counters_record_spend(entries=[], settle=reservations)
    reservations_mark(reservations=reservations, status=status)


def reservation_release(*, operation_id, user) -> Reservation:
    with transaction.atomic():
        found = reservations_lock_for_settlement(operation_ids=[operation_id], user=user)
        if not found:
            raise InvalidParameters("This reservation no longer holds anything (expired or released).",
                                    field="operation_id")
        _release(found, Reservation.Status.RELEASED)
    reservation = found[0]
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


# What each scope names; the other target fields must stay empty, or the budget would not mean what it says.
_SCOPE_FIELDS = {
    Budget.Scope.ORGANIZATION: set(),
    Budget.Scope.TEAM: {"team"},
    Budget.Scope.USER: {"user"},
    Budget.Scope.CATEGORY: {"research_category"},
    Budget.Scope.MODEL: {"model_name"},
}
# The organisation's daily and monthly budgets keep what makes them the reference's global limits.
GLOBAL_FIXED_FIELDS = {"scope", "period", "team", "user", "research_category", "model_name", "starts_on",
                        "ends_on", "is_active"}


def budget_scope_errors(budget: Budget) -> dict[str, list[str]]:
    """Target fields that the budget's scope does not use, and dates on a non-fixed budget."""
    errors: dict[str, list[str]] = {}
    named = _SCOPE_FIELDS.get(budget.scope, set())
    for name, value in (("team", budget.team_id), ("user", budget.user_id),
                        ("research_category", budget.research_category), ("model_name", budget.model_name)):
        if value and name not in named:
            errors.setdefault(name, []).append(f"A {budget.get_scope_display().lower()} budget does not name a "
                                               f"{name.replace('_', ' ')}.")
    if budget.period != Budget.Period.FIXED and (budget.starts_on or budget.ends_on):
        errors.setdefault("starts_on", []).append("Only fixed-period budgets have start and end dates.")
    return errors


def budget_validation_errors(budget: Budget) -> dict[str, list[str]]:
    """Model validation plus scope consistency, keyed by field (empty when the budget is valid)."""
    errors = budget_scope_errors(budget)
    try:
        budget.full_clean(exclude=["is_global_default"])
    except ValidationError as exc:
        for name, messages in exc.message_dict.items():
            errors.setdefault("non_field_errors" if name == "__all__" else name, []).extend(messages)
    return errors


def _budget_validate(budget: Budget) -> None:
    errors = budget_validation_errors(budget)
    if errors:
        raise InvalidParameters(next(iter(errors.values()))[0], details=errors)


# Changing any of these changes which records a budget counts: its counters are recomputed.
_COUNTING_FIELDS = {"scope", "period", "team", "user", "research_category", "model_name", "starts_on", "ends_on",
                    "is_active"}


def _counters_seed(budget: Budget) -> None:
    """Count the records a new (or re-targeted, or re-activated) budget already covers.

    Inside the caller's transaction, with new records paused (SHARE lock) until it commits: a record
    stored meanwhile either is seen here or, inserted after, sees this budget (recording reads the
    budgets after inserting its row).
    """
    from tracking.models import UsageRecord
    from tracking.rebuild import counters_rebuild

    if not budget.is_active:
        return
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f"LOCK TABLE {UsageRecord._meta.db_table} IN SHARE MODE")
    counters_rebuild(budgets=[budget], write=True)


def _actor(actor):
    return actor if actor is not None and actor.is_authenticated else None


def budget_update(*, budget: Budget, actor, **fields) -> Budget:
    """Change a budget; every changed field is written to the audit log (who, when, old, new)."""
    changes = {}
    with transaction.atomic():
        for name, value in fields.items():
            old = getattr(budget, name)
            if old != value:
                if budget.is_global_default and name in GLOBAL_FIXED_FIELDS:
                    raise InvalidParameters("The organisation's global budgets keep their scope and period; "
                                            "change their limit, thresholds or enforcement.", field=name)
                changes[name] = [_plain(old), _plain(value)]
                setattr(budget, name, value)
        if changes:
            _budget_validate(budget)
            budget.save()
            AuditLog.objects.create(actor=_actor(actor), action="budget.updated", object_type="Budget",
                                    object_id=str(budget.pk), changes=changes)
            if changes.keys() & _COUNTING_FIELDS:
                _counters_seed(budget)
    return budget


def budget_create(*, actor, **fields) -> Budget:
    budget = Budget(**fields)
    _budget_validate(budget)
    with transaction.atomic():
        budget.save()
        AuditLog.objects.create(actor=_actor(actor), action="budget.created", object_type="Budget",
                                object_id=str(budget.pk), changes={k: [None, _plain(v)] for k, v in fields.items()})
        _counters_seed(budget)
    return budget


def budget_delete(*, budget: Budget, actor) -> None:
    if budget.is_global_default:
        raise InvalidParameters("The organisation's daily and monthly budgets can be changed, not deleted.",
                                field="budget")
    with transaction.atomic():
        AuditLog.objects.create(actor=_actor(actor), action="budget.deleted", object_type="Budget",
                                object_id=str(budget.pk),
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
