"""The CostMonitor client: the reference's Python API as calls to our REST API.

One object serves as the reference's `BudgetDashboardAPI`, `BudgetManager`, `APIUsageMetricsLogger`,
`AlertNotificationSystem` and `CostCircuitBreakerManager`; every method returns the `data` of the
answer's envelope and raises the exception of its error code (`costmonitor.sdk.exceptions`).

Recording never loses a record to an outage: a record that cannot be delivered (server unreachable,
5xx, 429) goes to the on-disk outbox (`buffer.Outbox`) with its idempotency key and is resent in the
background, so the server counts it once. After a failed connection the client stays "offline" for a
few seconds and sends records straight to the outbox, so a pipeline is never slowed by more than one
short timeout. Budget checks during an outage fail open by default (see `fail_open`).
"""

from __future__ import annotations

import atexit
import hashlib
import logging
import os
import sqlite3
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import httpx

from .buffer import DEFAULT_MAX_RECORDS, BackgroundFlusher, Outbox, default_buffer_path
from .exceptions import (
    AuthenticationError,
    ConfigurationError,
    CostMonitorError,
    MonitorUnavailableError,
    NotFoundError,
    PermissionDeniedError,
    ServerError,
    error_from_response,
    is_transient,
)

logger = logging.getLogger("costmonitor.sdk")

SDK_VERSION = "1.0.0"
API_PREFIX = "/api/v1"
DEFAULT_URL = "http://127.0.0.1:8000"
DEFAULT_TIMEOUT = 5.0
DEFAULT_CONNECT_TIMEOUT = 2.0
TRACK_PATH = "/costs/track"
BATCH_PATH = "/costs/batch"
BULK_PATH = "/costs/bulk"
_RECORD_PATHS = (TRACK_PATH, BATCH_PATH, BULK_PATH)

_TRUE = {"1", "true", "yes", "on", "open"}
_FALSE = {"0", "false", "no", "off", "closed"}


def _env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name, "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    return default


def _env_float(name: str, default: float) -> float:
    try:
        return float(os.environ[name])
    except (KeyError, ValueError):
        return default


# The server refuses amounts finer than it stores (micro-dollars, thousandths of a millisecond):
# a cost computed in floats (tokens × price per token, 0.1 + 0.2) is rounded to them here instead.
_WIRE_PLACES = {
    **dict.fromkeys(("cost_usd", "cost", "total_cost", "actual_cost", "estimated_cost", "cost_amount",
                     "daily_budget", "monthly_budget"), Decimal("0.000001")),
    **dict.fromkeys(("response_time_ms", "processing_time_ms"), Decimal("0.001")),
}


def _rounded(value: Any, quantum: Decimal) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
        return value
    try:
        exact = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
        if not exact.is_finite():
            return value
        return exact.quantize(quantum, ROUND_HALF_UP)
    except InvalidOperation:  # beyond any plausible amount: the server answers it
        return value


def _jsonable(value: Any) -> Any:
    """Decimals become floats only at the wire (the server stores Decimal again); dates become ISO 8601."""
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): _jsonable(_rounded(v, _WIRE_PLACES[k]) if k in _WIRE_PLACES else v)
                for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def _compact(fields: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _jsonable(v) for k, v in fields.items() if v is not None}


def utc_now_iso() -> str:
    return datetime.now(UTC).isoformat()


class CostMonitorClient:
    """A pipeline's connection to CostMonitor.

    Arguments fall back to the environment: `COSTMONITOR_URL`, `COSTMONITOR_API_KEY`,
    `COSTMONITOR_TIMEOUT`, `COSTMONITOR_CONNECT_TIMEOUT`, `COSTMONITOR_FAIL_OPEN` (true/false),
    `COSTMONITOR_BUFFER_PATH`, `COSTMONITOR_BUFFER_MAX_RECORDS`.

    - `timeout` / `connect_timeout`: seconds per request phase (default 5 s / 2 s).
    - `fail_open`: when the server cannot be reached, budget checks, reservations and protected
      calls allow the operation (True, the default: research goes on, spend is still recorded
      through the outbox) or raise `MonitorUnavailableError` (False).
    - `buffer`: keep undeliverable records on disk (default True); `buffer_path`,
      `buffer_max_records` (default 10 000) place and bound the file.
    - `background_flush`: resend from a daemon thread every `flush_interval` seconds (default 5 s,
      backing off to 60 s); `flush()` resends at once.
    - `offline_seconds`: after a failed connection, records skip the network for this long
      (default 5 s) and go straight to the outbox.
    """

    def __init__(self, base_url: str | None = None, api_key: str | None = None, *,
                 timeout: float | None = None, connect_timeout: float | None = None,
                 fail_open: bool | None = None, buffer: bool = True,
                 buffer_path: str | os.PathLike | None = None, buffer_max_records: int | None = None,
                 background_flush: bool = True, flush_interval: float = 5.0, offline_seconds: float = 5.0,
                 default_research_category: str | None = None, transport: httpx.BaseTransport | None = None):
        self.base_url = (base_url or os.environ.get("COSTMONITOR_URL") or DEFAULT_URL).rstrip("/")
        if self.base_url.endswith(API_PREFIX):
            self.base_url = self.base_url[: -len(API_PREFIX)]
        if not self.base_url.startswith(("http://", "https://")):
            raise ConfigurationError(f"COSTMONITOR_URL must start with http:// or https:// (got {self.base_url!r}).")
        self.api_key = api_key if api_key is not None else os.environ.get("COSTMONITOR_API_KEY", "")
        self.timeout = timeout if timeout is not None else _env_float("COSTMONITOR_TIMEOUT", DEFAULT_TIMEOUT)
        self.connect_timeout = (connect_timeout if connect_timeout is not None
                                else _env_float("COSTMONITOR_CONNECT_TIMEOUT", DEFAULT_CONNECT_TIMEOUT))
        self.fail_open = fail_open if fail_open is not None else _env_bool("COSTMONITOR_FAIL_OPEN", True)
        self.default_research_category = default_research_category
        self.offline_seconds = offline_seconds
        self.flush_interval = flush_interval
        self.background_flush = background_flush
        headers = {"User-Agent": f"costmonitor-sdk/{SDK_VERSION}", "Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        self._http = httpx.Client(
            base_url=self.base_url + API_PREFIX, headers=headers, transport=transport,
            timeout=httpx.Timeout(self.timeout, connect=min(self.connect_timeout, self.timeout)))
        self._offline_until = 0.0
        self._state_lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._flusher: BackgroundFlusher | None = None
        self._closed = False
        self.buffer_enabled = buffer
        self._buffer_path = Path(buffer_path) if buffer_path else default_buffer_path()
        if buffer_max_records is None:
            buffer_max_records = int(_env_float("COSTMONITOR_BUFFER_MAX_RECORDS", DEFAULT_MAX_RECORDS))
        self._buffer_max_records = buffer_max_records
        self._outbox: Outbox | None = None
        self.lost_records = 0  # undeliverable records that could not be written to the outbox either
        if self.buffer_enabled and self._buffer_path.exists():
            # Records left by an earlier run against the same server and key are resent from now on.
            try:
                if self.outbox.pending():
                    self._ensure_flusher()
            except (OSError, sqlite3.Error) as exc:
                logger.error("CostMonitor outbox %s is unreadable (%s); waiting records are not resent.",
                             self._buffer_path, exc)
        _live_clients.add(self)

    # --- plumbing ------------------------------------------------------------------------------

    @property
    def target(self) -> str:
        """Which server and key the outbox entries belong to (a hash: the key is never written)."""
        return hashlib.sha256(f"{self.base_url}|{self.api_key}".encode()).hexdigest()[:32]

    @property
    def outbox(self) -> Outbox:
        if self._outbox is None:
            self._outbox = Outbox(self._buffer_path, max_records=self._buffer_max_records, target=self.target)
        return self._outbox

    def _require_key(self) -> None:
        if not self.api_key:
            raise ConfigurationError("No API key: set COSTMONITOR_API_KEY or pass api_key= "
                                     "(create one in the portal or with `manage.py create_api_key`).")

    def request(self, method: str, path: str, *, json: Any = None, params: Mapping[str, Any] | None = None,
                headers: Mapping[str, str] | None = None) -> Any:
        """Send one request; return the envelope's `data` (or the text of a non-JSON answer)."""
        self._require_key()
        try:
            response = self._http.request(method, path, json=_jsonable(json) if json is not None else None,
                                          params=_compact(params) if params else None, headers=headers)
        except httpx.TransportError as exc:  # refused, reset, DNS, timeouts
            self._went_offline()
            raise MonitorUnavailableError(
                f"CostMonitor server at {self.base_url} is unreachable: {exc.__class__.__name__}: {exc}") from exc
        return self._answer(response)

    @staticmethod
    def _answer(response: httpx.Response) -> Any:
        content_type = response.headers.get("content-type", "")
        body: Any = None
        if "json" in content_type:
            try:
                body = response.json()
            except ValueError:
                body = None
        if response.status_code >= 400:
            if body is None:
                if response.status_code >= 500:
                    return _raise(ServerError(f"HTTP {response.status_code} from the CostMonitor server.",
                                              status_code=response.status_code))
                body = {"error": {"message": response.text[:200] or f"HTTP {response.status_code}"}}
            raise error_from_response(response.status_code, body, response.headers)
        if response.status_code == 204 or not response.content:
            return None
        if body is None:
            return response.text
        if isinstance(body, dict) and body.get("status") == "success" and "data" in body:
            return body["data"]
        return body

    def _went_offline(self) -> None:
        with self._state_lock:
            self._offline_until = time.monotonic() + self.offline_seconds

    def _back_online(self) -> None:
        with self._state_lock:
            self._offline_until = 0.0

    @property
    def offline(self) -> bool:
        return time.monotonic() < self._offline_until

    # --- recording with the outbox ----------------------------------------------------------------

    def _record(self, path: str, body: dict[str, Any], idempotency_key: str | None = None) -> dict[str, Any]:
        """POST a record; keep it in the outbox when it cannot be delivered now."""
        self._require_key()
        key = idempotency_key or body.get("request_id") or f"sdk-{uuid.uuid4().hex}"
        body = _jsonable(body)
        if self.offline and self.buffer_enabled:
            return self._keep(path, body, key, "server unreachable moments ago")
        try:
            data = self.request("POST", path, json=body, headers={"Idempotency-Key": key})
        except CostMonitorError as exc:
            if is_transient(exc) and self.buffer_enabled:
                return self._keep(path, body, key, str(exc))
            raise
        self._back_online()
        if self._outbox is not None and self._flusher is not None:
            self._flusher.wake()  # the server is back: resend what waits
        return data

    def _keep(self, path: str, body: dict[str, Any], key: str, reason: str) -> dict[str, Any]:
        try:
            self.outbox.add(method="POST", path=path, body=body, idempotency_key=key)
        except (OSError, sqlite3.Error) as exc:
            # Never break the pipeline over our own bookkeeping: say loudly what was lost.
            self.lost_records += 1
            logger.error("CostMonitor could not keep an undeliverable record in %s (%s): record LOST (%s %s, "
                         "key %s); %d lost so far.", self._buffer_path, exc, path, body.get("operation_name", ""),
                         key, self.lost_records)
            return {"queued": False, "lost": True, "idempotency_key": key}
        logger.warning("CostMonitor: record kept in the outbox for later (%s); %d waiting.", reason,
                       self.outbox.pending())
        self._ensure_flusher()
        return {"queued": True, "idempotency_key": key}

    def _ensure_flusher(self) -> None:
        if not self.background_flush or self._closed:
            return
        with self._state_lock:
            if self._flusher is None or not self._flusher.is_alive():
                self._flusher = BackgroundFlusher(self._flush_quietly, lambda: self.outbox.pending() > 0,
                                                  interval=self.flush_interval)
                self._flusher.start()

    def _flush_quietly(self) -> bool:
        return self.flush()

    def flush(self, timeout: float | None = None) -> bool:
        """Resend every waiting record, oldest first, with its original idempotency key.

        Returns True when the outbox is empty. Stops at the first transient failure (the server is
        still away) or an authentication/permission error (the records wait for a fixed key);
        records the server rejects as invalid are logged, counted in `outbox.rejected` and removed.
        """
        if not self.buffer_enabled:
            return True
        if self._outbox is None and not self._buffer_path.exists():
            return True
        deadline = time.monotonic() + timeout if timeout is not None else None
        with self._flush_lock:
            while True:
                entries = self.outbox.peek(100)
                if not entries:
                    return True
                for entry in entries:
                    if deadline is not None and time.monotonic() > deadline:
                        return False
                    try:
                        self.request(entry.method, entry.path, json=entry.body,
                                     headers={"Idempotency-Key": entry.idempotency_key})
                    except CostMonitorError as exc:
                        self.outbox.note_failure(entry.id, f"{exc.code}: {exc}")
                        gone = isinstance(exc, NotFoundError) and "breaker" in (exc.details or {})
                        if not gone and (is_transient(exc) or isinstance(
                                exc, (AuthenticationError, PermissionDeniedError, NotFoundError, ConfigurationError))):
                            logger.info("CostMonitor outbox: %d record(s) still waiting (%s).",
                                        self.outbox.pending(), exc)
                            return False
                        if _already_delivered(entry.path, exc):
                            # Our keys are unique per record, so the server already holds this one.
                            self.outbox.remove(entry.id)
                            continue
                        logger.error("CostMonitor rejected a buffered record (%s %s, key %s): %s %s — "
                                     "discarded.", entry.method, entry.path, entry.idempotency_key, exc.code,
                                     exc.details or exc)
                        self.outbox.remove(entry.id, rejected=True)
                    else:
                        self.outbox.remove(entry.id)
                        self._back_online()

    @property
    def pending_records(self) -> int:
        if self._outbox is None and not self._buffer_path.exists():
            return 0
        return self.outbox.pending()

    @property
    def dropped_records(self) -> int:
        if self._outbox is None and not self._buffer_path.exists():
            return 0
        return self.outbox.dropped

    def close(self, *, flush_timeout: float | None = 0.0) -> None:
        """Stop the background thread; try one last resend unless the server is known to be away.

        Waiting records stay on disk and are resent by the next client with the same server and key.
        """
        if self._closed:
            return
        self._closed = True
        if self._flusher is not None:
            self._flusher.stop()
        if flush_timeout and not self.offline:
            try:
                self.flush(timeout=flush_timeout)
            except CostMonitorError:
                pass
        self._http.close()
        _live_clients.discard(self)

    def __enter__(self) -> CostMonitorClient:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close(flush_timeout=self.timeout)

    def _fail_open_or_raise(self, exc: CostMonitorError, what: str) -> bool:
        """During an outage: True to let the operation go ahead (fail open), else re-raise."""
        outage = isinstance(exc, MonitorUnavailableError) or (isinstance(exc, ServerError))
        if not outage:
            raise exc
        if not self.fail_open:
            raise exc
        logger.warning("CostMonitor unavailable for %s (%s): allowing the operation (fail_open=True).", what, exc)
        return True

    # --- Dashboard (BudgetDashboardAPI) -------------------------------------------------------------

    def get_dashboard_overview(self) -> dict[str, Any]:
        return self.request("GET", "/dashboard/overview")

    def get_budget_status(self, include_projections: bool = True) -> dict[str, Any]:
        return self.request("GET", "/budget/status", params={"include_projections": str(include_projections).lower()})

    def get_cost_analytics(self, time_range: str | None = None, granularity: str | None = None,
                           include_categories: bool | None = None) -> dict[str, Any]:
        params = {"time_range": time_range, "granularity": granularity,
                  "include_categories": None if include_categories is None else str(include_categories).lower()}
        return self.request("GET", "/analytics/costs", params=params)

    def get_cost_report(self, start_date: str | date | datetime | None = None,
                        end_date: str | date | datetime | None = None, format: str = "json") -> Any:
        """The cost report; `format="csv"` returns the CSV text."""
        return self.request("GET", "/reports/costs",
                            params={"start_date": start_date, "end_date": end_date, "format": format})

    def get_research_analysis(self, days: int = 30) -> dict[str, Any]:
        return self.request("GET", "/analytics/research", params={"days": days})

    def get_api_health_check(self) -> dict[str, Any]:
        return self.request("GET", "/system/health")

    def trigger_budget_check(self) -> dict[str, Any]:
        return self.request("POST", "/system/budget-check", json={})

    def get_performance_metrics(self) -> dict[str, Any]:
        return self.request("GET", "/system/performance")

    # --- Budgets (BudgetManager) ------------------------------------------------------------------

    def check_budget_status(self, cost_amount: float | Decimal, operation_type: str = "llm_call",
                            research_category: str | None = None, *, model_name: str | None = None,
                            raise_on_exceeded: bool = True) -> dict[str, Any]:
        """Would an operation of `cost_amount` fit the budgets? (no hold; see `reserve()` for one)

        A denial raises `BudgetExceededException` (with the server's details), or — with
        `raise_on_exceeded=False` — returns the server's status with `operation_allowed: False`.
        When the server is unreachable: fail open (returns `operation_allowed: True`,
        `budget_health: "unknown"`, `degraded: True`) or raise `MonitorUnavailableError`.
        """
        body = _compact({"cost_amount": cost_amount, "operation_type": operation_type,
                         "research_category": research_category or self.default_research_category,
                         "model_name": model_name})
        try:
            return self.request("POST", "/budget/check", json=body)
        except CostMonitorError as exc:
            if exc.code == "BUDGET_EXCEEDED" and not raise_on_exceeded:
                status = dict(exc.details) if isinstance(exc.details, dict) else {}
                status.setdefault("operation_allowed", False)
                status.setdefault("message", exc.message)
                return status
            self._fail_open_or_raise(exc, "a budget check")
            return {"operation_allowed": True, "budget_health": "unknown", "degraded": True,
                    "reason": str(exc), "daily_status": None, "monthly_status": None, "alerts_generated": []}

    def update_budget_limits(self, daily_budget: float | Decimal | None = None,
                             monthly_budget: float | Decimal | None = None) -> dict[str, Any]:
        body = _compact({"daily_budget": daily_budget, "monthly_budget": monthly_budget})
        if not body:
            raise ValueError("Give daily_budget, monthly_budget or both.")
        return self.request("PATCH", "/budget/limits", json=body)

    def get_budget_summary(self) -> dict[str, Any]:
        return self.request("GET", "/budget/summary")

    def get_spending_trends(self, days: int = 30) -> dict[str, Any]:
        return self.request("GET", "/budget/trends", params={"days": days})

    # --- Reservations ---------------------------------------------------------------------------

    def reserve_budget(self, estimated_cost: float | Decimal | None = None, *, model_name: str | None = None,
                       estimated_tokens: Mapping[str, int] | None = None, calls: int | None = None,
                       operation_type: str = "llm_call", research_category: str | None = None) -> dict[str, Any]:
        """Hold an estimate against the budgets; returns `{allowed, operation_id, expires_at, estimated_cost}`.

        Raises `BudgetExceededException` when the hold would not fit. Settle it by recording with
        `operation_id=`, or give it back with `release_reservation()`.
        """
        body = _compact({"estimated_cost": estimated_cost, "model_name": model_name,
                         "estimated_tokens": dict(estimated_tokens) if estimated_tokens else None,
                         "calls": calls, "operation_type": operation_type,
                         "research_category": research_category or self.default_research_category})
        return self.request("POST", "/budget/reserve", json=body)

    def release_reservation(self, operation_id: str) -> Any:
        return self.request("DELETE", f"/budget/reserve/{operation_id}")

    def reserve(self, estimated_cost: float | Decimal | None = None, **kwargs: Any):
        """Context manager: hold an estimate for a whole experiment, settle at the end, release on error.

        See `costmonitor.sdk.protection.BudgetReservation`.
        """
        from .protection import BudgetReservation

        return BudgetReservation(self, estimated_cost=estimated_cost, **kwargs)

    # --- Cost tracking (APIUsageMetricsLogger) -------------------------------------------------------

    def track_api_call(self, operation_name: str, model_name: str | None = None,
                       research_category: str | None = None, **kwargs: Any):
        """Context manager that times a call and records it on exit (a failure too, re-raising it)."""
        from .tracking import ApiCallTracker

        return ApiCallTracker(self, operation_name=operation_name, model_name=model_name,
                              research_category=research_category or self.default_research_category, **kwargs)

    def log_api_call(self, operation_name: str | None = None, model_name: str | None = None, *,
                     token_usage: Mapping[str, int] | None = None, cost_usd: float | Decimal | None = None,
                     response_time_ms: float | None = None, request_size: int | None = None,
                     response_size: int | None = None, success: bool = True, error_type: str | None = None,
                     error_message: str | None = None, research_category: str | None = None,
                     operation_type: str | None = None, metadata: Mapping[str, Any] | None = None,
                     occurred_at: datetime | str | None = None, experiment: str | None = None,
                     run_id: str | None = None, operation_id: str | None = None, request_id: str | None = None,
                     idempotency_key: str | None = None, partial: bool = False) -> dict[str, Any]:
        """Record one API call. Without `cost_usd`, the server prices `token_usage` for `model_name`.

        With `operation_id` it settles that reservation; with `partial=True` too, its cost is taken
        out of the hold instead, which stays held for further calls (release the rest at the end).

        Returns the stored record, or `{"queued": True, "idempotency_key": …}` when it waits in the
        outbox for the server to come back.
        """
        usage = None
        if token_usage is not None:
            usage = {k: int(v) for k, v in token_usage.items() if v is not None}
            if "total_tokens" not in usage:
                usage["total_tokens"] = usage.get("prompt_tokens", 0) + usage.get("completion_tokens", 0)
        body = _compact({
            "operation_name": operation_name, "operation_type": operation_type, "model_name": model_name,
            "research_category": research_category or self.default_research_category,
            "token_usage": usage, "cost_usd": cost_usd, "response_time_ms": response_time_ms,
            "request_size": request_size, "response_size": response_size, "success": success,
            "error_type": error_type, "error_message": error_message,
            "metadata": dict(metadata) if metadata else None,
            "occurred_at": occurred_at or utc_now_iso(), "experiment": experiment, "run_id": run_id,
            "operation_id": str(operation_id) if operation_id else None, "request_id": request_id,
            "partial": True if partial else None,
        })
        return self._record(TRACK_PATH, body, idempotency_key or request_id)

    def track_cost(self, cost_data: Mapping[str, Any] | None = None, *, idempotency_key: str | None = None,
                   **fields: Any) -> dict[str, Any]:
        """Record a cost in either shape the API takes: the full `log_api_call` fields or the short
        `{operation_type, cost, tokens, model}` of the reference's REST client."""
        body = dict(cost_data or {})
        body.update(fields)
        body.setdefault("occurred_at", utc_now_iso())
        return self._record(TRACK_PATH, _compact(body), idempotency_key)

    def log_batch_operation(self, operation_name: str, batch_size: int, total_tokens: int,
                            total_cost: float | Decimal | None, processing_time_ms: float | None = None,
                            success_count: int | None = None, error_count: int | None = None,
                            research_category: str | None = None, model_name: str | None = None, *,
                            metadata: Mapping[str, Any] | None = None, occurred_at: datetime | str | None = None,
                            idempotency_key: str | None = None, **extra: Any) -> dict[str, Any]:
        body = _compact({
            "operation_name": operation_name, "batch_size": batch_size, "total_tokens": total_tokens,
            "total_cost": total_cost, "processing_time_ms": processing_time_ms, "success_count": success_count,
            "error_count": error_count, "research_category": research_category or self.default_research_category,
            "model_name": model_name, "metadata": dict(metadata) if metadata else None,
            "occurred_at": occurred_at or utc_now_iso(), **extra,
        })
        return self._record(BATCH_PATH, body, idempotency_key)

    def log_bulk(self, events: Iterable[Mapping[str, Any]], *, idempotency_key: str | None = None) -> dict[str, Any]:
        """Record up to 1000 calls at once, all or nothing (each event: a `log_api_call` body)."""
        items = []
        for event in events:
            item = _compact(dict(event))
            item.setdefault("occurred_at", utc_now_iso())
            items.append(item)
        return self._record(BULK_PATH, {"events": items}, idempotency_key)

    def get_performance_summary(self) -> dict[str, Any]:
        return self.request("GET", "/metrics/performance-summary")

    # --- Alerts (AlertNotificationSystem) ------------------------------------------------------------

    def send_alert(self, alert: Mapping[str, Any] | Any = None, **fields: Any) -> dict[str, Any]:
        """Send an alert: a mapping, an object with the reference's BudgetAlert attributes, or fields."""
        body: dict[str, Any] = {}
        if isinstance(alert, Mapping):
            body.update(alert)
        elif alert is not None:
            for name in ("timestamp", "alert_level", "period_type", "period_key", "current_cost", "budget_limit",
                         "percentage_used", "threshold_percentage", "message", "metadata"):
                if hasattr(alert, name):
                    value = getattr(alert, name)
                    body[name] = getattr(value, "value", value)  # enums → their value
        body.update(fields)
        return self.request("POST", "/alerts/send", json=_compact(body))

    def test_channels(self) -> dict[str, Any]:
        return self.request("POST", "/alerts/test-channels", json={})

    def get_delivery_stats(self) -> dict[str, Any]:
        return self.request("GET", "/alerts/delivery-stats")

    # --- Circuit breakers (CostCircuitBreakerManager) -------------------------------------------------

    def get_system_status(self) -> dict[str, Any]:
        """The breakers' states and statistics (the reference's `cb_manager.get_system_status()`)."""
        return self.request("GET", "/breakers/status")

    def create_circuit_breaker(self, name: str, threshold_rules: Iterable[Any] | None = None,
                               failure_threshold: int = 5, recovery_timeout: float = 60.0,
                               **fields: Any) -> dict[str, Any]:
        """Create a breaker (admins). Rules: mappings or objects with the reference's `CostThresholdRule`
        attributes (rule_id, threshold_type, threshold_value, action, …)."""
        rules = []
        for rule in threshold_rules or []:
            if not isinstance(rule, Mapping):
                rule = {k: getattr(rule, k) for k in ("rule_id", "threshold_type", "threshold_value", "action",
                                                      "throttle_factor", "cooldown_seconds", "window_minutes",
                                                      "model_name", "research_category") if hasattr(rule, k)}
            rules.append({k: getattr(v, "value", v) for k, v in rule.items()})  # enums → their value
        body = _compact({"name": name, "rules": rules, "failure_threshold": failure_threshold,
                         "recovery_timeout": recovery_timeout, **fields})
        return self.request("POST", "/breakers", json=body)

    def reset_circuit_breaker(self, name: str, *, clear_statistics: bool = False) -> dict[str, Any]:
        return self.request("POST", f"/breakers/{name}/reset", json={"clear_statistics": clear_statistics})

    def breaker_execute(self, breaker_name: str, *, operation_type: str = "llm_call", model_name: str | None = None,
                        estimated_tokens: Mapping[str, int] | None = None,
                        estimated_cost: float | Decimal | None = None,
                        research_category: str | None = None) -> dict[str, Any]:
        """Ask a breaker whether an operation may run; raises `CircuitBreakerError` when it may not."""
        body = _compact({"operation_type": operation_type, "model_name": model_name,
                         "estimated_tokens": dict(estimated_tokens) if estimated_tokens else None,
                         "estimated_cost": estimated_cost,
                         "research_category": research_category or self.default_research_category})
        return self.request("POST", f"/breakers/{breaker_name}/execute", json=body)

    def update_operation_cost(self, breaker_name: str, operation_id: str, actual_cost: float | Decimal | None = None,
                              operation_type: str | None = None, *, success: bool = True,
                              error_type: str | None = None, error_message: str | None = None,
                              prompt_tokens: int | None = None, completion_tokens: int | None = None,
                              response_time_ms: float | None = None) -> dict[str, Any]:
        """Report a protected operation's outcome to its breaker, which records the usage once and
        settles the hold. Without `actual_cost` the server prices the tokens. Kept in the outbox (with a
        key per operation, so a resend is answered, not counted again) when the server is away."""
        body = _compact({"success": success, "actual_cost": actual_cost, "error_type": error_type or None,
                         "error_message": error_message or None, "prompt_tokens": prompt_tokens,
                         "completion_tokens": completion_tokens, "response_time_ms": response_time_ms,
                         "operation_type": operation_type})
        return self._record(f"/breakers/{breaker_name}/operations/{operation_id}/result", body,
                            idempotency_key=f"breaker-result-{operation_id}")

    def execute_with_protection(self, breaker_name: str, operation_callable: Callable[..., Any],
                                operation_type: str = "llm_call", model_name: str | None = None,
                                estimated_tokens: Mapping[str, int] | None = None, **kwargs: Any) -> Any:
        """Run `operation_callable` only if the breaker allows it; settle its actual cost and outcome.

        See `costmonitor.sdk.protection.execute_with_protection`.
        """
        from .protection import execute_with_protection

        return execute_with_protection(self, breaker_name, operation_callable, operation_type=operation_type,
                                       model_name=model_name, estimated_tokens=estimated_tokens, **kwargs)


def _already_delivered(path: str, exc: CostMonitorError) -> bool:
    """A resend answered "key already used" or "operation already settled": the first attempt arrived."""
    if exc.status_code == 422 and "Idempotency-Key" in exc.details:
        return True
    return "/operations/" in path and "already" in str(exc.details.get("operation_id", ""))


def _raise(exc: BaseException):
    raise exc


# Clients still open at interpreter exit stop their threads (records stay on disk for next time).
_live_clients: weakref.WeakSet[CostMonitorClient] = weakref.WeakSet()


@atexit.register
def _close_live_clients() -> None:
    for client in list(_live_clients):
        try:
            client.close(flush_timeout=0.0)
        except Exception:  # noqa: BLE001 - never fail the interpreter's exit
            pass


# The reference's class names, for code written against it.
BudgetMonitoringClient = CostMonitorClient
