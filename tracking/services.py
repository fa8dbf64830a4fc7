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
from functools import lru_cache

from django.db import connection, transaction
from django.db.models.base import ModelState
from django.db.models.signals import post_init, pre_init
from django.utils import timezone

from budgets import accounts
from budgets.models import Reservation
from budgets.services import (
    RECORDING_COLUMNS,
    HoldChanges,
    SpendLedgerEntry,
    SpendTarget,
    counters_prepare,
    holds_prepare,
    recording_counters_sql,
    recording_done,
    reservation_holds_save,
    reservations_lock_for_settlement,
    reservations_mark,
)
from costmonitor.db import prepared_fetchall
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


_RECORD_ATTNAMES = [f.attname for f in UsageRecord._meta.concrete_fields]
_RECORD_RELATIONS = [UsageRecord._meta.get_field(name) for name in ("user", "team", "api_key")]


def _record_from_values(values: dict) -> UsageRecord:
    """A new, unsaved UsageRecord with every attribute given. Model.__init__ sets each field through
    its descriptor (the foreign keys' check for a cached object to forget); a fresh instance has
    nothing cached, so storing the values directly makes the same instance, and building 1,000
    records takes 7 ms instead of 14–24 ms. It sends no init signals: see _record_constructor."""
    record = UsageRecord.__new__(UsageRecord)
    record._state = ModelState()
    record.__dict__.update(values)
    return record


def _record_from_init(values: dict) -> UsageRecord:
    return UsageRecord(*map(values.__getitem__, _RECORD_ATTNAMES))


def _record_constructor():
    """How this recording builds its records, decided once per recording: through Model.__init__
    whenever anything listens to its signals for UsageRecord, else directly."""
    if pre_init.has_listeners(UsageRecord) or post_init.has_listeners(UsageRecord):
        return _record_from_init
    return _record_from_values


def _build_record(event: UsageEvent, *, user, api_key, team, field_prefix: str, construct) -> UsageRecord:
    cost, source, version = _resolve_cost(event, field_prefix)
    values = {
        "id": None, "user_id": user.pk, "team_id": team.pk, "api_key_id": api_key.pk if api_key else None,
        "kind": UsageRecord.OperationKind.BATCH if event.is_batch else UsageRecord.OperationKind.CALL,
        "operation_name": event.operation_name, "operation_type": event.operation_type,
        "model_name": event.model_name, "research_category": event.research_category,
        "experiment": event.experiment, "run_id": event.run_id, "prompt_tokens": event.prompt_tokens,
        "completion_tokens": event.completion_tokens, "total_tokens": event.total_tokens, "cost_usd": cost,
        "price_source": source, "price_version": version, "response_time_ms": event.response_time_ms,
        "request_size": event.request_size, "response_size": event.response_size, "success": event.success,
        "error_type": event.error_type, "error_message": event.error_message, "batch_size": event.batch_size,
        "success_count": event.success_count, "error_count": event.error_count, "metadata": event.metadata,
        "occurred_at": event.occurred_at, "recorded_at": None, "operation_id": event.operation_id,
    }
    record = construct(values)
    # The related objects are cached as keyword construction would have, so record.user and
    # record.team cost no query.
    for relation, related in zip(_RECORD_RELATIONS, (user, team, api_key), strict=True):
        relation.set_cached_value(record, related)
    return record


def usage_record_many(*, user, api_key=None, events: list[UsageEvent], field_prefix="events") -> list[UsageRecord]:
    """Store events all-or-nothing: records, counters, settled reservations and rollups together."""
    if len(events) > MAX_BULK_EVENTS:
        raise InvalidParameters(f"At most {MAX_BULK_EVENTS} events per request.", field=field_prefix)
    teams: dict[int | None, object] = {}
    records, construct = [], _record_constructor()
    for index, event in enumerate(events):
        prefix = f"{field_prefix}[{index}]." if len(events) > 1 else ""
        if event.team_id not in teams:
            teams[event.team_id] = accounts.team_for_recording(user=user, api_key=api_key, team_id=event.team_id)
        records.append(_build_record(event, user=user, api_key=api_key, team=teams[event.team_id],
                                     field_prefix=prefix, construct=construct))
    operation_ids = [r.operation_id for r in records if r.operation_id]
    if len(set(operation_ids)) != len(operation_ids):
        raise InvalidParameters("An operation_id may be settled only once.", field="operation_id")
    if connection.vendor == "postgresql" and not operation_ids:
        # The common case: one statement, committed on its own — no transaction held open across
        # round trips while other writers queue on the same counter rows.
        _write_in_one_statement(records)
        return records
    partial_ids = {str(e.operation_id) for e in events if e.operation_id and e.partial}
    with transaction.atomic():
        held = reservations_lock_for_settlement(operation_ids=operation_ids, user=user)
        # A partial record takes its cost out of the hold, which stays held; any other settles it.
        costs = {str(r.operation_id): r.cost_usd for r in records if r.operation_id}
        take = {str(r.operation_id): (r, costs[str(r.operation_id)]) for r in held
                if str(r.operation_id) in partial_ids}
        settled = [r for r in held if str(r.operation_id) not in partial_ids]
        holds = holds_prepare(settle=settled, take=take)
        if connection.vendor == "postgresql":
            _write_in_one_statement(records, holds)
        else:
            _write_in_python(records, holds)
        reservation_holds_save(holds)
        reservations_mark(reservations=settled, status=Reservation.Status.SETTLED)
    return records


def usage_record(*, user, api_key=None, event: UsageEvent) -> UsageRecord:
    return usage_record_many(user=user, api_key=api_key, events=[event])[0]


def _write_in_python(records: list[UsageRecord], holds: HoldChanges) -> None:
    """Databases other than PostgreSQL (the embedded SQLite): rows, counters and rollups statement by
    statement, inside the caller's transaction."""
    entries = [SpendLedgerEntry(SpendTarget(r.team_id, r.user_id, r.research_category, r.model_name),
                                r.cost_usd, r.occurred_at, r.batch_size or 1) for r in records]
    UsageRecord.objects.bulk_create(records, batch_size=500)
    write = counters_prepare(entries=entries, holds=holds)
    if write is not None:
        write.done(write.execute())
    rollups_add(records=records)


# --- PostgreSQL: one statement ----------------------------------------------------------------

_RECORD_FIELDS = [f for f in UsageRecord._meta.concrete_fields if not f.primary_key]


@lru_cache(maxsize=1)
def _record_columns() -> list[tuple]:
    """(field, column, SQL type, is JSON) of every stored column, worked out once (plain
    lower-case names, left unquoted to keep the statement short)."""
    return [(f, f.column, f.db_type(connection), f.get_internal_type() == "JSONField") for f in _RECORD_FIELDS]

# What the rollups need besides RECORDING_COLUMNS (which include each row's number of calls).
_RECORDS_RETURNING = (*RECORDING_COLUMNS, "operation_type", "success", "prompt_tokens", "completion_tokens",
                      "total_tokens", "response_time_ms", "date_trunc('hour', occurred_at, 'UTC') AS hour",
                      "CASE WHEN batch_size > 0 THEN COALESCE(success_count, 0) WHEN success THEN 1 ELSE 0 END AS ok")


def _records_insert_sql(bulk: bool) -> str:
    """One record: a plain VALUES row. Many: INSERT … SELECT FROM json_to_recordset(one JSON text), a
    statement of the same text whatever the number of rows. (One array per column was the other way,
    but psycopg adapts array elements one by one in Python: 40 % of a 1,000-event request's CPU.
    The JSON text is encoded in C, and PostgreSQL reads it about as fast as the arrays.)"""
    columns = _record_columns()
    names = ", ".join(column for _f, column, _t, _j in columns)
    if bulk:
        selected = ", ".join("%(recorded_at)s" if f.attname == "recorded_at" else f"c{i}"
                             for i, (f, _c, _t, _j) in enumerate(columns))
        typed = ", ".join(f"c{i} {db_type}" for i, (f, _c, db_type, _j) in enumerate(columns)
                          if f.attname != "recorded_at")
        source = f"SELECT {selected} FROM json_to_recordset(%(rows)s::json) AS t({typed})"
    else:
        source = "VALUES (" + ", ".join(f"%(c{i})s::jsonb" if is_json else f"%(c{i})s"
                                        for i, (_f, _c, _t, is_json) in enumerate(columns)) + ")"
    return (f"INSERT INTO {UsageRecord._meta.db_table} ({names}) {source} "
            f"RETURNING {', '.join(_RECORDS_RETURNING)}")


@lru_cache(maxsize=1)
def _json_row_plan() -> tuple[list, list, list]:
    """The JSON rows' keys (the recordset's c0, c1, …) by what each value needs: nothing (JSON
    types), str() (Decimal, UUID: the exact text PostgreSQL reads) or isoformat() (datetimes)."""
    as_is, as_text, as_moment = [], [], []
    for i, (f, _c, _t, _j) in enumerate(_record_columns()):
        kind = f.get_internal_type()
        if f.attname == "recorded_at":
            continue  # one value for all rows: a parameter of its own
        if kind in ("DecimalField", "UUIDField"):
            as_text.append((f"c{i}", f.attname))
        elif kind == "DateTimeField":
            as_moment.append((f"c{i}", f.attname))
        else:
            as_is.append((f"c{i}", f.attname))
    return as_is, as_text, as_moment


def _json_rows(records: list[UsageRecord]) -> str:
    as_is, as_text, as_moment = _json_row_plan()
    rows = []
    for record in records:
        values = record.__dict__
        row = {key: values[attname] for key, attname in as_is}
        for key, attname in as_text:
            found = values[attname]
            row[key] = None if found is None else str(found)
        for key, attname in as_moment:
            found = values[attname]
            row[key] = None if found is None else found.isoformat()
        rows.append(row)
    return json.dumps(rows, separators=(",", ":"))


def _records_insert_params(records: list[UsageRecord], bulk: bool) -> dict:
    """The insert's parameters: one value per column for a single record; for many, the rows as one
    JSON array and their common recorded_at."""
    now = timezone.now()
    for record in records:
        record.recorded_at = now
    if bulk:
        return {"rows": _json_rows(records), "recorded_at": now}
    record = records[0]
    return {f"c{i}": json.dumps(getattr(record, f.attname)) if is_json else getattr(record, f.attname)
            for i, (f, _c, _t, is_json) in enumerate(_record_columns())}


# Each rollup total and what a record adds to it (PostgreSQL, from the records CTE's _RECORDS_RETURNING).
_ROLLUP_SUMS = {"calls": "calls", "successful_calls": "ok", "failed_calls": "calls - ok", "cost_usd": "cost_usd",
                "successful_cost_usd": "CASE WHEN success THEN cost_usd ELSE 0 END", "prompt_tokens": "prompt_tokens",
                "completion_tokens": "completion_tokens", "total_tokens": "total_tokens",
                "response_time_ms_sum": "response_time_ms",
                "response_time_count": "(response_time_ms IS NOT NULL)::int"}


def _rollups_from_records_sql(records: str) -> str:
    """Add the rows of CTE `records` (with _RECORDS_RETURNING) to their hourly rollups on this
    connection's slot (the counters' %(slot)s), grouped and sorted: one statement never updates a row
    twice, and concurrent writers lock rows in the same order."""
    keys = "hour, team_id, user_id, model_name, research_category, operation_type"
    return (f"INSERT INTO {HourlyRollup._meta.db_table} AS h ({keys}, slot, {', '.join(_ROLLUP_SUMS)}) "
            f"SELECT {keys}, %(slot)s, {', '.join(f'COALESCE(SUM({value}), 0)' for value in _ROLLUP_SUMS.values())} "
            f"FROM {records} GROUP BY {keys} ORDER BY {keys} ON CONFLICT ({keys}, slot) DO UPDATE SET "
            + ", ".join(f"{column} = h.{column} + EXCLUDED.{column}" for column in _ROLLUP_SUMS))


_STATEMENTS: dict[tuple[bool, str], str] = {}


def _write_in_one_statement(records: list[UsageRecord], holds: HoldChanges | None = None) -> None:
    """PostgreSQL: insert the records, add them to every applicable budget's counter and to the hourly
    rollups, and move the holds' changes — in ONE prepared statement (data-modifying CTEs). It is
    atomic by itself; inside a transaction it is part of it."""
    bulk = len(records) > 1
    counter_ctes, select, params = recording_counters_sql(records="rec", holds=holds)
    variant = (bulk, counter_ctes)  # the counters' CTEs differ when holds are settled
    if variant not in _STATEMENTS:
        _STATEMENTS[variant] = (f"WITH rec AS ({_records_insert_sql(bulk)}), {counter_ctes}, "
                                f"rol AS ({_rollups_from_records_sql('rec')}) {select}")
    params.update(_records_insert_params(records, bulk))
    rows = prepared_fetchall(_STATEMENTS[variant], params)
    # Ids come from one sequence in row order, so ascending ids match the records' order.
    for record, pk in zip(records, recording_done(rows), strict=True):
        record.pk = pk
        record._state.adding = False


# --- Rollups ----------------------------------------------------------------------------------

def _rollups_upsert_sql(records: list[UsageRecord]) -> tuple[str, list] | None:
    """Add records to their hourly rollups (slot 0) in one upsert: the databases other than PostgreSQL,
    which serialise writers (PostgreSQL: _rollups_from_records_sql)."""
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
    columns = tuple(_ROLLUP_SUMS)  # in the order of the totals above
    rows, params = [], []
    for key in sorted(totals, key=lambda k: (k[0], k[1], k[2], k[3], k[4], k[5])):
        rows.append("(" + ", ".join(["%s"] * 6 + ["0"] + ["%s"] * 10) + ")")
        params += [*key, *totals[key]]
    updates = ", ".join(f"{c} = {table}.{c} + EXCLUDED.{c}" for c in columns)
    sql = (f"INSERT INTO {table} (hour, team_id, user_id, model_name, research_category, operation_type, slot, "
           f"{', '.join(columns)}) VALUES {', '.join(rows)} "
           f"ON CONFLICT (hour, team_id, user_id, model_name, research_category, operation_type, slot) "
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


_CLAIM_FIELDS = ("user", "key", "request_hash", "response_status", "response_body", "created_at")


@lru_cache(maxsize=1)
def _idempotency_claim_sql() -> str:
    """The claim's statement, worked out once; its conflict target is the model's unique constraint."""
    meta = IdempotencyRecord._meta
    owner_key = next(c for c in meta.constraints if c.name == "unique_idempotency_key_per_owner")
    columns = ", ".join(meta.get_field(name).column for name in _CLAIM_FIELDS)
    target = ", ".join(meta.get_field(name).column for name in owner_key.fields)
    return (f"INSERT INTO {meta.db_table} ({columns}) VALUES ({', '.join(['%s'] * len(_CLAIM_FIELDS))}) "
            f"ON CONFLICT ({target}) DO NOTHING RETURNING {meta.pk.column}")


def _idempotency_claim(*, user, key: str, fingerprint: str) -> int | None:
    """Insert the owner's row for `key` unless it exists: the new row's id, or None when the key is
    taken. One statement, no savepoint (the SDK sends a key with every record, so this is its hot
    path): if another transaction is inserting the same key, it waits on the unique index until that
    one ends, then either finds the key taken (committed) or takes it (rolled back)."""
    meta = IdempotencyRecord._meta
    values = zip(_CLAIM_FIELDS, (user.pk, key, fingerprint, 0, {}, timezone.now()), strict=True)
    params = [meta.get_field(name).get_db_prep_save(value, connection) for name, value in values]
    with connection.cursor() as cursor:
        cursor.execute(_idempotency_claim_sql(), params)
        row = cursor.fetchone()
    return row[0] if row else None


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
        claim_id = _idempotency_claim(user=user, key=key, fingerprint=fingerprint)
        if claim_id is None:
            first = IdempotencyRecord.objects.get(user=user, key=key)
            if first.request_hash != fingerprint:
                raise IdempotencyConflict(details={"Idempotency-Key": [
                    "Already used with a different request body."]})
            return first.response_status, first.response_body, True
        status, answer = produce()
        IdempotencyRecord.objects.filter(pk=claim_id).update(response_status=status, response_body=answer)
    return status, answer, False
