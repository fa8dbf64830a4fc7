"""Spending protection: run a call only when a cost circuit breaker allows it, and hold budget for a
whole experiment.

`execute_with_protection` asks the breaker, runs the callable only when allowed, then reports the
actual cost and the outcome; a refusal raises `CircuitBreakerError` (or `BudgetExceededException`)
with the server's details and the callable is never run.

`reserve()` holds an estimate for N calls against the budgets before an experiment starts, so two
pipelines cannot both spend the last dollars. Each call made through the hold is recorded as a
*partial* settlement (its cost is taken out of the hold, so hold and spend never count twice); at
the end, or on an error, what is left of the hold is released.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from .exceptions import CostMonitorError
from .tracking import openai_usage

if TYPE_CHECKING:
    from .client import CostMonitorClient

logger = logging.getLogger("costmonitor.sdk")


def _as_decimal(value: Any) -> Decimal | None:
    if value is None:
        return None
    return Decimal(str(value))


def execute_with_protection(client: CostMonitorClient, breaker_name: str, operation_callable: Callable[..., Any],
                            operation_type: str = "llm_call", model_name: str | None = None,
                            estimated_tokens: Mapping[str, int] | None = None, *,
                            estimated_cost: float | Decimal | None = None, research_category: str | None = None,
                            args: tuple = (), kwargs: Mapping[str, Any] | None = None,
                            cost_of: Callable[[Any], float | Decimal | None] | None = None,
                            operation_name: str | None = None) -> Any:
    """Run `operation_callable(*args, **kwargs)` under breaker `breaker_name`; return its result.

    The server admits the call with a budget hold and an `operation_id`, or refuses it:
    `CircuitBreakerError` (blocked: HTTP 503; throttled: 429; `retry_after_seconds` and the rule in
    `details`) or `BudgetExceededException` — the callable is then never run.
    Afterwards the outcome is reported to the breaker, which records the usage once and settles the
    hold: the actual cost is `cost_of(result)` when given, else the server prices the tokens of an
    OpenAI-style `result.usage`, else the estimate stands. A callable that raises is reported as a
    failure (its error type and message) and the exception propagates.
    When the server is unreachable the callable runs if `client.fail_open` (its usage is recorded
    through the outbox), else `MonitorUnavailableError` is raised.
    """
    kwargs = dict(kwargs or {})
    category = research_category or client.default_research_category
    name = operation_name or getattr(operation_callable, "__name__", None) or operation_type
    try:
        permit = client.breaker_execute(breaker_name, operation_type=operation_type, model_name=model_name,
                                        estimated_tokens=estimated_tokens, estimated_cost=estimated_cost,
                                        research_category=category)
    except CostMonitorError as exc:
        client._fail_open_or_raise(exc, f"circuit breaker {breaker_name!r}")
        return _run_unprotected(client, operation_callable, args, kwargs, name=name, operation_type=operation_type,
                                model_name=model_name, research_category=category, cost_of=cost_of,
                                breaker_name=breaker_name)
    operation_id = permit["operation_id"]
    started = time.perf_counter()
    try:
        result = operation_callable(*args, **kwargs)
    except BaseException as exc:
        _report(client, breaker_name, operation_id, {
            "success": False, "error_type": type(exc).__name__, "error_message": str(exc)[:1000],
            "response_time_ms": _elapsed_ms(started), "operation_type": operation_type})
        raise
    report: dict[str, Any] = {"success": True, "response_time_ms": _elapsed_ms(started),
                              "operation_type": operation_type}
    actual_cost = _as_decimal(cost_of(result)) if cost_of is not None else None
    usage = openai_usage(result)
    if usage is not None:
        report["prompt_tokens"] = usage["prompt_tokens"]
        report["completion_tokens"] = usage["completion_tokens"]
        if usage["details"]:
            report["metadata"] = {"usage_details": usage["details"]}
    if actual_cost is not None:
        report["actual_cost"] = actual_cost
    elif usage is None or not (usage["prompt_tokens"] or usage["completion_tokens"]):
        report["actual_cost"] = _as_decimal(permit.get("estimated_cost"))  # nothing better is known
    _report(client, breaker_name, operation_id, report)
    return result


def _elapsed_ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)


def _run_unprotected(client: CostMonitorClient, operation_callable, args, kwargs, *, name, operation_type,
                     model_name, research_category, cost_of, breaker_name) -> Any:
    """Fail-open path: run the call and record it like `track_api_call` would (the outbox keeps it)."""
    with client.track_api_call(name, model_name=model_name, research_category=research_category,
                               operation_type=operation_type, metadata={"breaker": breaker_name,
                                                                        "unprotected": True}) as tracker:
        result = operation_callable(*args, **kwargs)
        if openai_usage(result) is not None:
            tracker.set_usage_from_openai(result)
        if cost_of is not None and cost_of(result) is not None:
            tracker.set_cost(cost_of(result))
    return result


def _report(client: CostMonitorClient, breaker_name: str, operation_id: str, body: dict[str, Any]) -> None:
    """Tell the breaker how the operation went; through the outbox, so an outage loses nothing."""
    try:
        client._record(f"/breakers/{breaker_name}/operations/{operation_id}/result",
                       {k: v for k, v in body.items() if v is not None},
                       idempotency_key=f"breaker-result-{operation_id}")
    except CostMonitorError as exc:
        logger.warning("CostMonitor could not report operation %s to breaker %s: %s", operation_id, breaker_name,
                       exc)


class BudgetReservation:
    """Context manager from `client.reserve(...)`: a budget hold for a whole experiment.

        with monitor.reserve(model_name="gpt-4o-mini", estimated_tokens={"input": 800, "output": 200},
                             calls=500, research_category="pathway_analysis") as hold:
            for item in items:
                with hold.track_api_call("classify", model_name="gpt-4o-mini") as t:
                    ...

    Entering reserves (raising `BudgetExceededException` if the estimate does not fit). Calls made
    through `hold.track_api_call` / `hold.log_api_call` are recorded with the reservation's
    `operation_id` and `partial: true`: each call's cost is taken out of the hold (which stays held),
    so near the limit the hold and the calls already made are not counted twice. They are summed in
    `actual_cost`. Leaving (normally, or with an exception, which is re-raised) releases what is left
    of the hold. A hold that is never released (the process died) expires on the server.
    """

    def __init__(self, client: CostMonitorClient, *, estimated_cost: float | Decimal | None = None,
                 model_name: str | None = None, estimated_tokens: Mapping[str, int] | None = None,
                 calls: int | None = None, operation_type: str = "llm_call", research_category: str | None = None,
                 experiment: str | None = None):
        self.client = client
        self.request = {"estimated_cost": estimated_cost, "model_name": model_name,
                        "estimated_tokens": estimated_tokens, "calls": calls, "operation_type": operation_type,
                        "research_category": research_category or client.default_research_category}
        self.model_name = model_name
        self.research_category = self.request["research_category"]
        self.operation_type = operation_type
        self.experiment = experiment
        self.reservation: dict[str, Any] = {}
        self.operation_id: str | None = None
        self.actual_cost = Decimal("0")
        self.calls_recorded = 0
        self.state = "new"  # new → held → settled | released (| unreserved when failing open)

    @property
    def estimated_cost(self) -> Decimal | None:
        return _as_decimal(self.reservation.get("estimated_cost"))

    def __enter__(self) -> BudgetReservation:
        try:
            self.reservation = self.client.reserve_budget(**self.request)
        except CostMonitorError as exc:
            self.client._fail_open_or_raise(exc, "a budget reservation")
            self.reservation = {"allowed": True, "operation_id": None, "degraded": True}
            self.state = "unreserved"
            return self
        self.operation_id = self.reservation.get("operation_id")
        self.state = "held"
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if self.state != "held":
            return False
        try:
            self.client.release_reservation(self.operation_id)
            self.state = "settled" if exc is None else "released"
        except CostMonitorError as release_error:
            # The hold expires on the server by itself; never mask the pipeline's own outcome.
            logger.warning("CostMonitor could not release reservation %s (%s); it will expire on its own.",
                           self.operation_id, release_error)
            self.state = "expiring"
        return False

    def _count(self, record: Any) -> None:
        self.calls_recorded += 1
        if isinstance(record, Mapping) and record.get("cost_usd") is not None:
            self.actual_cost += Decimal(str(record["cost_usd"]))

    def _through_hold(self, fields: dict[str, Any]) -> None:
        if self.state == "held" and self.operation_id:
            fields.setdefault("operation_id", self.operation_id)
            fields.setdefault("partial", True)

    def log_api_call(self, **fields: Any) -> dict[str, Any]:
        self._through_hold(fields)
        fields.setdefault("model_name", self.model_name)
        fields.setdefault("research_category", self.research_category)
        fields.setdefault("operation_type", self.operation_type)
        fields.setdefault("experiment", self.experiment)
        record = self.client.log_api_call(**fields)
        self._count(record)
        return record

    def track_api_call(self, operation_name: str, model_name: str | None = None,
                       research_category: str | None = None, **kwargs: Any):
        reservation = self

        from .tracking import ApiCallTracker

        class _Tracker(ApiCallTracker):
            def __exit__(self, exc_type, exc, tb) -> bool:
                outcome = super().__exit__(exc_type, exc, tb)
                reservation._count(self.result)
                return outcome

        kwargs.setdefault("operation_type", self.operation_type)
        kwargs.setdefault("experiment", self.experiment)
        self._through_hold(kwargs)
        return _Tracker(self.client, operation_name=operation_name, model_name=model_name or self.model_name,
                        research_category=research_category or self.research_category, **kwargs)
