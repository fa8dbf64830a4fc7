"""Parsing and validating a usage event (the reference's log_api_call / track_api_call /
log_batch_operation bodies, and the short `{operation_type, cost, tokens, model}` shape).

Hand-written rather than a DRF serializer because it runs 1,000 times per bulk request; errors
name every offending field, and nothing is stored unless every field is valid.
"""

from __future__ import annotations

import json
import math
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation

from django.utils import timezone
from django.utils.dateparse import parse_datetime

from costmonitor.errors import InvalidParameters
from costmonitor.money import MAX_SINGLE_COST, MONEY_PLACES

MAX_TOKENS = 100_000_000
MAX_SIZE_BYTES = 10**12
MAX_RESPONSE_TIME_MS = Decimal(86_400_000)  # one day
MAX_METADATA_BYTES = 16_384
MAX_FUTURE_SKEW = timedelta(minutes=5)
MAX_AGE = timedelta(days=400)
MAX_BATCH_SIZE = 10_000_000


@dataclass
class UsageEvent:
    operation_name: str = ""
    operation_type: str = "llm_call"
    model_name: str = ""
    research_category: str = "general"
    experiment: str = ""
    run_id: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cost_usd: Decimal | None = None
    response_time_ms: Decimal | None = None
    request_size: int | None = None
    response_size: int | None = None
    success: bool = True
    error_type: str = ""
    error_message: str = ""
    batch_size: int | None = None
    success_count: int | None = None
    error_count: int | None = None
    metadata: dict = field(default_factory=dict)
    occurred_at: datetime | None = None
    team_id: int | None = None
    operation_id: uuid.UUID | None = None
    partial: bool = False  # with operation_id: take this cost out of the hold, which stays held
    request_id: str = ""
    is_batch: bool = False


class _Errors:
    def __init__(self, prefix: str = ""):
        self.prefix = prefix
        self.found: dict[str, list[str]] = {}

    def add(self, name: str, message: str) -> None:
        self.found.setdefault(self.prefix + name, []).append(message)


def storable_text(value: str) -> bool:
    """False for text the database cannot store: NUL characters (PostgreSQL text and jsonb refuse
    them) and lone UTF-16 surrogates (valid in JSON escapes, not encodable as UTF-8)."""
    if "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def storable_json(value) -> bool:
    """storable_text for every key and string inside a JSON value."""
    if isinstance(value, str):
        return storable_text(value)
    if isinstance(value, dict):
        return all(storable_text(k) and storable_json(v) for k, v in value.items())
    if isinstance(value, list):
        return all(storable_json(v) for v in value)
    return True


def _text(raw, name, errors, max_length):
    if raw is None:
        return None
    if not isinstance(raw, str):
        errors.add(name, "Must be a string.")
        return None
    if not storable_text(raw):
        errors.add(name, "Must not contain NUL characters or unpaired surrogates.")
        return None
    if len(raw) > max_length:
        errors.add(name, f"At most {max_length} characters.")
        return None
    return raw.strip() if max_length <= 200 else raw


def _integer(raw, name, errors, maximum):
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, (int, float)) or (isinstance(raw, float) and not raw.is_integer()):
        errors.add(name, "Must be a whole number.")
        return None
    value = int(raw)
    if value < 0:
        errors.add(name, "Must not be negative.")
    elif value > maximum:
        errors.add(name, f"At most {maximum}.")
    else:
        return value
    return None


def _decimal(raw, name, errors, maximum, places):
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
        errors.add(name, "Must be a number.")
        return None
    if isinstance(raw, float) and not math.isfinite(raw):
        errors.add(name, "Must be a finite number.")
        return None
    try:
        value = Decimal(str(raw).strip()) if not isinstance(raw, float) else Decimal(repr(raw))
    except InvalidOperation:
        errors.add(name, "Must be a number.")
        return None
    if not value.is_finite():
        errors.add(name, "Must be a finite number.")
    elif value < 0:
        errors.add(name, "Must not be negative.")
    elif value > maximum:
        errors.add(name, f"At most {maximum}; larger values are not plausible for one call.")
    elif value.as_tuple().exponent < -places:
        errors.add(name, f"At most {places} decimal places.")
    else:
        return value
    return None


def _boolean(raw, name, errors):
    if raw is None:
        return None
    if not isinstance(raw, bool):
        errors.add(name, "Must be true or false.")
        return None
    return raw


def _timestamp(raw, name, errors, now):
    if raw is None:
        return None
    if isinstance(raw, (int, float)) and not isinstance(raw, bool):
        if not math.isfinite(raw):
            errors.add(name, "Must be a finite Unix timestamp.")
            return None
        try:
            value = datetime.fromtimestamp(raw, tz=UTC)
        except (OverflowError, OSError, ValueError):
            errors.add(name, "Not a valid Unix timestamp.")
            return None
    elif isinstance(raw, str):
        try:
            value = parse_datetime(raw.strip())
        except ValueError:
            value = None
        if value is None:
            errors.add(name, "Must be an ISO 8601 date-time or a Unix timestamp.")
            return None
        if timezone.is_naive(value):
            value = timezone.make_aware(value, UTC)
    else:
        errors.add(name, "Must be an ISO 8601 date-time or a Unix timestamp.")
        return None
    if value > now + MAX_FUTURE_SKEW:
        errors.add(name, "Is in the future.")
        return None
    if value < now - MAX_AGE:
        errors.add(name, f"Is older than {MAX_AGE.days} days.")
        return None
    return value


_CALL_FIELDS = {
    "operation_name", "operation_type", "model_name", "model", "research_category", "token_usage",
    "prompt_tokens", "completion_tokens", "total_tokens", "tokens", "input_tokens", "output_tokens",
    "cost_usd", "cost", "response_time_ms", "request_size", "response_size", "success", "error_type",
    "error_message", "metadata", "occurred_at", "timestamp", "experiment", "run_id", "team", "operation_id",
    "partial", "request_id",
}
_BATCH_FIELDS = {
    "operation_name", "operation_type", "model_name", "model", "research_category", "batch_size", "total_tokens",
    "total_cost", "cost_usd", "processing_time_ms", "success_count", "error_count", "metadata", "occurred_at",
    "timestamp", "experiment", "run_id", "team", "operation_id", "request_id", "prompt_tokens",
    "completion_tokens",
}


def _first(body: dict, *names):
    for name in names:
        if body.get(name) is not None:
            return name, body[name]
    return names[0], None


def parse_event(body, *, batch: bool = False, prefix: str = "", now: datetime | None = None) -> UsageEvent:
    """Validate one event; raises InvalidParameters naming every bad field."""
    errors = _Errors(prefix)
    now = now or timezone.now()
    if not isinstance(body, dict):
        raise InvalidParameters("The body must be a JSON object.", details={prefix or "body": ["Expected an object."]})
    unknown = set(body) - (_BATCH_FIELDS if batch else _CALL_FIELDS)
    for name in sorted(unknown):
        errors.add(name, "Unknown field.")
    event = UsageEvent(is_batch=batch)
    for attr, names, max_length in (
        ("operation_name", ("operation_name",), 200), ("operation_type", ("operation_type",), 100),
        ("model_name", ("model_name", "model"), 100), ("research_category", ("research_category",), 100),
        ("experiment", ("experiment",), 100), ("run_id", ("run_id",), 100), ("error_type", ("error_type",), 100),
        ("error_message", ("error_message",), 10_000), ("request_id", ("request_id",), 200),
    ):
        name, raw = _first(body, *names)
        value = _text(raw, name, errors, max_length)
        if value is not None and (value or attr not in ("operation_type", "research_category")):
            setattr(event, attr, value)

    usage = body.get("token_usage")
    if usage is not None and not isinstance(usage, dict):
        errors.add("token_usage", "Must be an object with prompt_tokens, completion_tokens, total_tokens.")
        usage = None
    usage = usage or {}
    for key in set(usage) - {"prompt_tokens", "completion_tokens", "total_tokens"}:
        errors.add(f"token_usage.{key}", "Unknown field.")
    def tokens(names):
        # Errors name the field the client actually sent (e.g. `tokens` of the short shape).
        if usage.get(names[0]) is not None:
            return usage[names[0]], f"token_usage.{names[0]}"
        name, raw = _first(body, *names)
        return raw, name

    prompt = _integer(*tokens(("prompt_tokens", "input_tokens")), errors, MAX_TOKENS)
    completion = _integer(*tokens(("completion_tokens", "output_tokens")), errors, MAX_TOKENS)
    total_raw, total_name = tokens(("total_tokens", "tokens"))
    total = _integer(total_raw, total_name, errors, MAX_TOKENS * (100 if batch else 2))
    if prompt is None and completion is None and total is not None and not batch:
        prompt = total  # the short shape gives one token count: priced as input tokens
    event.prompt_tokens, event.completion_tokens = prompt or 0, completion or 0
    event.total_tokens = total if total is not None else event.prompt_tokens + event.completion_tokens
    if total is not None and prompt is not None and completion is not None and total < prompt + completion:
        errors.add(total_name, "Is less than prompt_tokens + completion_tokens.")

    cost_name, cost_raw = _first(body, *(("total_cost", "cost_usd") if batch else ("cost_usd", "cost")))
    event.cost_usd = _decimal(cost_raw, cost_name, errors, MAX_SINGLE_COST * (1000 if batch else 1), MONEY_PLACES)
    time_names = ("processing_time_ms", "response_time_ms") if batch else ("response_time_ms",)
    time_name, time_raw = _first(body, *time_names)
    event.response_time_ms = _decimal(time_raw, time_name, errors, MAX_RESPONSE_TIME_MS * (100 if batch else 1), 3)
    event.request_size = _integer(body.get("request_size"), "request_size", errors, MAX_SIZE_BYTES)
    event.response_size = _integer(body.get("response_size"), "response_size", errors, MAX_SIZE_BYTES)
    success = _boolean(body.get("success"), "success", errors)

    if batch:
        event.batch_size = _integer(body.get("batch_size"), "batch_size", errors, MAX_BATCH_SIZE)
        event.success_count = _integer(body.get("success_count"), "success_count", errors, MAX_BATCH_SIZE)
        event.error_count = _integer(body.get("error_count"), "error_count", errors, MAX_BATCH_SIZE)
        if event.batch_size is None and "batch_size" not in errors.found:
            errors.add("batch_size", "This field is required.")
        if event.batch_size is not None:
            if event.success_count is None and event.error_count is None:
                event.success_count, event.error_count = event.batch_size, 0
            elif event.success_count is None:
                event.success_count = max(event.batch_size - (event.error_count or 0), 0)
            elif event.error_count is None:
                event.error_count = max(event.batch_size - event.success_count, 0)
            if event.success_count + event.error_count > event.batch_size:
                errors.add("success_count", "success_count + error_count exceeds batch_size.")
        event.success = (event.error_count or 0) == 0
    elif success is not None:
        event.success = success

    metadata = body.get("metadata")
    if metadata is not None:
        if not isinstance(metadata, dict):
            errors.add("metadata", "Must be an object.")
        elif not storable_json(metadata):
            errors.add("metadata", "Must not contain NUL characters or unpaired surrogates.")
        elif len(json.dumps(metadata)) > MAX_METADATA_BYTES:
            errors.add("metadata", f"At most {MAX_METADATA_BYTES} bytes of JSON.")
        else:
            event.metadata = metadata
    time_name, time_raw = _first(body, "occurred_at", "timestamp")
    event.occurred_at = _timestamp(time_raw, time_name, errors, now) or now

    team = body.get("team")
    if team is not None:
        if isinstance(team, bool) or not isinstance(team, int) or team <= 0:
            errors.add("team", "Must be a team id.")
        else:
            event.team_id = team
    operation_id = body.get("operation_id")
    if operation_id is not None:
        try:
            event.operation_id = uuid.UUID(str(operation_id))
        except ValueError:
            errors.add("operation_id", "Must be the operation_id of a reservation.")
    partial = _boolean(body.get("partial"), "partial", errors)
    if partial:
        if operation_id is None:
            errors.add("partial", "A partial record takes its cost out of a reservation: send its operation_id.")
        event.partial = True
    if errors.found:
        raise InvalidParameters("Invalid request parameters.", details=errors.found)
    return event
