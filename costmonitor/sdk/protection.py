"""Spending protection: run a call only when a cost circuit breaker allows it, and hold budget for a
whole experiment.

`execute_with_protection` asks the breaker, runs the callable only when allowed, then reports the
actual cost and the outcome; a refusal raises `CircuitBreakerError` (or `BudgetExceededException`)
with the server's details and the callable is never run.

`reserve()` holds an estimate for N calls against the budgets before an experiment starts, so two
pipelines cannot both spend the last dollars; at the end the hold is settled, and on an error it is
released.
"""

from __future__ import annotations

import logging
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
                            record_usage: bool = True, operation_name: str | None = None) -> Any:
    """Run `operation_callable(*args, **kwargs)` under breaker `breaker_name`; return its result.

    The actual cost reported to the breaker is `cost_of(result)` when given; otherwise, if the
    result carries an OpenAI-style `usage`, the call is recorded (with `record_usage`) and the
    server's price for those tokens is used; otherwise the breaker's estimate.
    Raises `CircuitBreakerError` (blocked: 503, throttled: 429, with `retry_after_seconds`) or
    `BudgetExceededException` without running the callable. When the server is unreachable the
    callable runs if `client.fail_open` (its usage still recorded through the outbox), else
    `MonitorUnavailableError` is raised.
    """
    kwargs = dict(kwargs or {})
    category = research_category or client.default_research_category
    try:
        permit = client.breaker_execute(breaker_name, operation_type=operation_type, model_name=model_name,
                                        estimated_tokens=estimated_tokens, estimated_cost=estimated_cost,
                                        research_category=category)
    except CostMonitorError as exc:
        client._fail_open_or_raise(exc, f"circuit breaker {breaker_name!r}")
        permit = {"allowed": True, "operation_id": None, "degraded": True}
    operation_id = permit.get("operation_id")
    name = operation_name or getattr(operation_callable, "__name__", None) or operation_type

    try:
        result = operation_callable(*args, **kwargs)
    except BaseException as exc:
        _report(client, breaker_name, operation_id, operation_type, actual_cost=None, success=False,
                error_type=type(exc).__name__)
        raise

    actual_cost = _as_decimal(cost_of(result)) if cost_of is not None else None
    usage = openai_usage(result)
    if record_usage and usage is not None:
        record = client.log_api_call(
            operation_name=name, operation_type=operation_type, model_name=model_name or usage["model"],
            research_category=category, cost_usd=actual_cost,
            token_usage={k: usage[k] for k in ("prompt_tokens", "completion_tokens", "total_tokens")},
            metadata={"breaker": breaker_name, **({"usage_details": usage["details"]} if usage["details"] else {})})
        if actual_cost is None and isinstance(record, Mapping) and record.get("cost_usd") is not None:
            actual_cost = _as_decimal(record["cost_usd"])
    if actual_cost is None:
        actual_cost = _as_decimal(permit.get("estimated_cost"))
    _report(client, breaker_name, operation_id, operation_type, actual_cost=actual_cost, success=True,
            error_type=None)
    return result


def _report(client: CostMonitorClient, breaker_name: str, operation_id: str | None, operation_type: str, *,
            actual_cost: Decimal | None, success: bool, error_type: str | None) -> None:
    """Tell the breaker how the operation went; through the outbox, so an outage loses nothing."""
    if not operation_id:
        return
    body = {"success": success, "actual_cost": actual_cost, "error_type": error_type,
            "operation_type": operation_type}
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
    through `hold.track_api_call` / `hold.log_api_call` are recorded as usual and summed in
    `actual_cost`. Leaving normally settles: the hold is given back and the recorded calls are the
    spend; leaving with an exception releases the hold the same way and re-raises. A hold that is
    never settled (the process died) expires on the server.
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

    def log_api_call(self, **fields: Any) -> dict[str, Any]:
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
        return _Tracker(self.client, operation_name=operation_name, model_name=model_name or self.model_name,
                        research_category=research_category or self.research_category, **kwargs)
