"""Recording usage (the reference's APIUsageMetricsLogger writes): the records, the budget counters
and the hourly rollups move together — on PostgreSQL in one statement — and reservations named by
an operation_id are settled in the same transaction.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from datetime import UTC
from decimal import Decimal

from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from budgets import accounts
from budgets.models import Reservation
from budgets.services import (
    SpendLedgerEntry,
    SpendTarget,
    counters_prepare,
    reservation_holds_save,
    reservations_lock_for_settlement,
    reservations_mark,
)
from costmonitor.errors import IdempotencyConflict, InvalidParameters
from costmonitor.money import ZERO

from .events import UsageEvent, storable_text
from .models import HourlyRollup, IdempotencyRecord, UsageRecord
from .pricing import price_tokens

MAX_BULK_EVENTS = 1000


def _resolve_cost(event: UsageEvent, field_prefix: str) -> tuple[Decimal, str, str]:
    if event.cost_usd is not None:
        return event.cost_usd, "client", ""
    if not event.model_name:
        raise InvalidParameters("Send cost_usd, or model_name with token counts to price the call.",
                                field=f"{field_prefix}cost_usd")
    quote = price_tokens(model_name=event.model_name, prompt_tokens=event.prompt_tokens,
                         completion_tokens=event.completion_tokens, at=event.occurred_at)
    if quote is None:
        raise InvalidParameters(f"Unknown model {event.model_name!r}: no price is known, so send cost_usd.",
                                field=f"{field_prefix}model_name")
    return quote.cost_usd, quote.source, quote.version


def _build_record(event: UsageEvent, *, user, api_key, team, field_prefix: str) -> UsageRecord:
    cost, source, version = _resolve_cost(event, field_prefix)
    return UsageRecord(
        user=user, team=team, api_key=api_key,
        kind=UsageRecord.OperationKind.BATCH if event.is_batch else UsageRecord.OperationKind.CALL,
        operation_name=event.operation_name, operation_type=event.operation_type, model_name=event.model_name,
        research_category=event.research_category, experiment=event.experiment, run_id=event.run_id,
        prompt_tokens=event.prompt_tokens, completion_tokens=event.completion_tokens,
        total_tokens=event.total_tokens, cost_usd=cost, price_source=source, price_version=version,
        response_time_ms=event.response_time_ms, request_size=event.request_size,
        response_size=event.response_size, success=event.success, error_type=event.error_type,
        error_message=event.error_message, batch_size=event.batch_size, success_count=event.success_count,
        error_count=event.error_count, metadata=event.metadata, occurred_at=event.occurred_at,
        operation_id=event.operation_id,
    )


def usage_record_many(*, user, api_key=None, events: list[UsageEvent], field_prefix="events") -> list[UsageRecord]:
    """Store events all-or-nothing: records, counters, settled reservations and rollups together."""
    if len(events) > MAX_BULK_EVENTS:
        raise InvalidParameters(f"At most {MAX_BULK_EVENTS} events per request.", field=field_prefix)
    teams: dict[int | None, object] = {}
    records = []
    for index, event in enumerate(events):
        prefix = f"{field_prefix}[{index}]." if len(events) > 1 else ""
        if event.team_id not in teams:
            teams[event.team_id] = accounts.team_for_recording(user=user, api_key=api_key, team_id=event.team_id)
        records.append(_build_record(event, user=user, api_key=api_key, team=teams[event.team_id],
                                     field_prefix=prefix))
    operation_ids = [r.operation_id for r in records if r.operation_id]
    if len(set(operation_ids)) != len(operation_ids):
        raise InvalidParameters("An operation_id may be settled only once.", field="operation_id")
    partial_ids = {str(e.operation_id) for e in events if e.operation_id and e.partial}
    entries = [SpendLedgerEntry(SpendTarget(r.team_id, user.pk, r.research_category, r.model_name),
                                r.cost_usd, r.occurred_at, r.batch_size or 1) for r in records]
    if connection.vendor == "postgresql" and not operation_ids:
        # The common case: one statement, committed on its own — no transaction held open across
        # round trips while other writers queue on the same counter rows.
        _write_in_one_statement(records, counters_prepare(entries=entries))
        return records
    with transaction.atomic():
        held = reservations_lock_for_settlement(operation_ids=operation_ids, user=user)
        # A partial record takes its cost out of the hold, which stays held; any other settles it.
        costs = {str(r.operation_id): r.cost_usd for r in records if r.operation_id}
        take = {str(r.operation_id): (r, costs[str(r.operation_id)]) for r in held
                if str(r.operation_id) in partial_ids}
        settled = [r for r in held if str(r.operation_id) not in partial_ids]
        write = counters_prepare(entries=entries, settle=settled, take=take)
        if connection.vendor == "postgresql":
            _write_in_one_statement(records, write)
        else:
            UsageRecord.objects.bulk_create(records, batch_size=500)
            if write is not None:
                write.done(write.execute())
            rollups_add(records=records)
        reservation_holds_save(write)
        reservations_mark(reservations=settled, status=Reservation.Status.SETTLED)
    return records


def usage_record(*, user, api_key=None, event: UsageEvent) -> UsageRecord:
    return usage_record_many(user=user, api_key=api_key, events=[event])[0]


_RECORD_FIELDS = [f for f in UsageRecord._meta.concrete_fields if not f.primary_key]


def _record_columns() -> list[tuple]:
    """(field, quoted column, SQL array element type, is JSON) of every stored column, worked out once."""
    global _RECORD_COLUMNS
    if _RECORD_COLUMNS is None:
        _RECORD_COLUMNS = [
            (f, connection.ops.quote_name(f.column),
             "text" if f.get_internal_type() == "JSONField" else f.db_type(connection),
             f.get_internal_type() == "JSONField")
            for f in _RECORD_FIELDS]
    return _RECORD_COLUMNS


_RECORD_COLUMNS: list[tuple] | None = None


def _record_insert_one_sql(record: UsageRecord, now) -> tuple[str, list]:
    """One record: a plain VALUES row. Adapting 29 one-element arrays costs more CPU than the whole
    rest of the statement, and single-event tracking is the hottest path there is."""
    record.recorded_at = now
    columns, placeholders, values = [], [], []
    for f, column, _db_type, is_json in _record_columns():
        value = getattr(record, f.attname)
        columns.append(column)
        placeholders.append("%s::jsonb" if is_json else "%s")
        values.append(json.dumps(value) if is_json else value)
    sql = (f"INSERT INTO {UsageRecord._meta.db_table} ({', '.join(columns)}) "
           f"VALUES ({', '.join(placeholders)}) RETURNING id")
    return sql, values


def _records_insert_sql(records: list[UsageRecord]) -> tuple[str, list]:
    """INSERT … SELECT FROM unnest(one array per column): a short statement whatever the number of
    rows (a VALUES list of 1,000 rows × 29 columns costs more to build and parse than to store)."""
    now = timezone.now()
    if len(records) == 1:
        return _record_insert_one_sql(records[0], now)
    columns, selected, arrays = [], [], []
    for index, (f, column, db_type, is_json) in enumerate(_record_columns()):
        if f.name == "recorded_at":
            values = [now] * len(records)
            for record in records:
                record.recorded_at = now
        elif is_json:
            values = [json.dumps(getattr(record, f.attname)) for record in records]
        else:
            values = [getattr(record, f.attname) for record in records]
        columns.append(column)
        selected.append(f"c{index}::jsonb" if is_json else f"c{index}")
        arrays.append((values, db_type))
    names = ", ".join(f"c{i}" for i in range(len(arrays)))
    sql = (f"INSERT INTO {UsageRecord._meta.db_table} ({', '.join(columns)}) "
           f"SELECT {', '.join(selected)} FROM unnest({', '.join(f'%s::{t}[]' for _, t in arrays)}) AS t({names}) "
           f"RETURNING id")
    return sql, [values for values, _ in arrays]


def _write_in_one_statement(records: list[UsageRecord], write) -> None:
    """PostgreSQL: insert the records, upsert the counters and the hourly rollups in ONE statement
    (data-modifying CTEs). It is atomic by itself; inside a transaction it is part of it."""
    parts, params = [], []
    sql, values = _records_insert_sql(records)
    parts.append(f"rec AS ({sql})")
    params += values
    select = "SELECT 0, id, NULL::bigint, NULL::varchar, NULL::smallint, NULL::numeric, NULL::numeric FROM rec"
    if write is not None:
        counter_parts, counter_params, counter_select = write.ctes()
        parts += counter_parts
        params += counter_params
        select += f" UNION ALL {counter_select}"
    rollups = _rollups_upsert_sql(records)
    if rollups is not None:
        parts.append(f"rol AS ({rollups[0]})")
        params += rollups[1]
    with connection.cursor() as cursor:
        cursor.execute(f"WITH {', '.join(parts)} {select}", params)
        rows = cursor.fetchall()
    # Ids come from one sequence in row order, so sorted ids match the records' order.
    for record, pk in zip(records, sorted(r[1] for r in rows if r[0] == 0), strict=True):
        record.pk = pk
        record._state.adding = False
    if write is not None:
        write.done([r for r in rows if r[0] != 0])


# --- Rollups ----------------------------------------------------------------------------------

def _rollups_upsert_sql(records: list[UsageRecord]) -> tuple[str, list] | None:
    """Add records to their hourly rollups in one upsert (rows sorted, so concurrent writers don't deadlock)."""
    totals: dict[tuple, list] = defaultdict(lambda: [0, 0, 0, ZERO, ZERO, 0, 0, 0, ZERO, 0])
    for r in records:
        hour = r.occurred_at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
        t = totals[(hour, r.team_id, r.user_id, r.model_name, r.research_category, r.operation_type)]
        calls = r.batch_size or 1
        ok = r.success_count if r.batch_size else (1 if r.success else 0)
        t[0] += calls
        t[1] += ok
        t[2] += calls - ok
        t[3] += r.cost_usd
        t[4] += r.cost_usd if r.success else ZERO
        t[5] += r.prompt_tokens
        t[6] += r.completion_tokens
        t[7] += r.total_tokens
        if r.response_time_ms is not None:
            t[8] += Decimal(r.response_time_ms)
            t[9] += 1
    if not totals:
        return None
    table = HourlyRollup._meta.db_table
    columns = ("calls", "successful_calls", "failed_calls", "cost_usd", "successful_cost_usd", "prompt_tokens",
               "completion_tokens", "total_tokens", "response_time_ms_sum", "response_time_count")
    rows, params = [], []
    for key in sorted(totals, key=lambda k: (k[0], k[1], k[2], k[3], k[4], k[5])):
        rows.append("(" + ", ".join(["%s"] * 16) + ")")
        params += [*key, *totals[key]]
    updates = ", ".join(f"{c} = {table}.{c} + EXCLUDED.{c}" for c in columns)
    sql = (f"INSERT INTO {table} (hour, team_id, user_id, model_name, research_category, operation_type, "
           f"{', '.join(columns)}) VALUES {', '.join(rows)} "
           f"ON CONFLICT (hour, team_id, user_id, model_name, research_category, operation_type) "
           f"DO UPDATE SET {updates}")
    return sql, params


def rollups_add(*, records: list[UsageRecord]) -> None:
    found = _rollups_upsert_sql(records)
    if found is not None:
        with connection.cursor() as cursor:
            cursor.execute(*found)


# --- Idempotency ------------------------------------------------------------------------------

def request_fingerprint(body) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()


def idempotent_call(*, user, key: str | None, body, produce) -> tuple[int, dict, bool]:
    """Run `produce() -> (status, body)` once per (owner, key); retries replay the first answer.

    The key row is inserted first, in the same transaction as the work: a concurrent retry waits on
    the unique index until the first commits, then replays; if the work fails, the key is free again.
    """
    if not key:
        status, answer = produce()
        return status, answer, False
    if len(key) > 200:
        raise InvalidParameters("At most 200 characters.", field="Idempotency-Key")
    if not storable_text(key):
        raise InvalidParameters("Must not contain NUL characters or unpaired surrogates.", field="Idempotency-Key")
    fingerprint = request_fingerprint(body)
    with transaction.atomic():
        try:
            with transaction.atomic():
                claim = IdempotencyRecord.objects.create(user=user, key=key, request_hash=fingerprint,
                                                         response_status=0)
        except IntegrityError:
            first = IdempotencyRecord.objects.get(user=user, key=key)
            if first.request_hash != fingerprint:
                raise IdempotencyConflict(details={"Idempotency-Key": [
                    "Already used with a different request body."]}) from None
            return first.response_status, first.response_body, True
        status, answer = produce()
        claim.response_status, claim.response_body = status, answer
        claim.save(update_fields=["response_status", "response_body"])
    return status, answer, False
