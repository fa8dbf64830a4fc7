"""`track_api_call`: a context manager that times one LLM call and records it on exit.

    with monitor.track_api_call("summarise", model_name="gpt-4o-mini", research_category="literature_search") as t:
        response = openai_client.chat.completions.create(...)
        t.set_usage_from_openai(response)

The block's own duration is measured; tokens, cost and sizes come from the setters. If the block
raises, a failed call (success false, the exception's type and message) is recorded and the
exception goes on unchanged. Without `set_cost()` the server prices the tokens for the model.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from .exceptions import CostMonitorError

if TYPE_CHECKING:
    from .client import CostMonitorClient

logger = logging.getLogger("costmonitor.sdk")

_ERROR_MESSAGE_LIMIT = 1000


def _get(obj: Any, name: str) -> Any:
    if obj is None:
        return None
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


def openai_usage(response: Any) -> dict[str, Any] | None:
    """Read the token usage from an OpenAI SDK response (or its dict form); None when it has none.

    Handles Chat Completions and Embeddings (`prompt_tokens`/`completion_tokens`), the Responses API
    (`input_tokens`/`output_tokens`) and clients with the same shape (Azure OpenAI, Anthropic, vLLM…).
    Returns `{"prompt_tokens", "completion_tokens", "total_tokens", "model", "details"}`.
    """
    usage = _get(response, "usage")
    if usage is None:
        return None
    prompt = _get(usage, "prompt_tokens")
    if prompt is None:
        prompt = _get(usage, "input_tokens")
    completion = _get(usage, "completion_tokens")
    if completion is None:
        completion = _get(usage, "output_tokens")
    prompt, completion = int(prompt or 0), int(completion or 0)
    total = _get(usage, "total_tokens")
    total = int(total) if total is not None else prompt + completion
    details: dict[str, int] = {}
    cached = _get(_get(usage, "prompt_tokens_details") or _get(usage, "input_tokens_details"), "cached_tokens")
    if cached:
        details["cached_tokens"] = int(cached)
    reasoning = _get(_get(usage, "completion_tokens_details") or _get(usage, "output_tokens_details"),
                     "reasoning_tokens")
    if reasoning:
        details["reasoning_tokens"] = int(reasoning)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": total,
            "model": _get(response, "model"), "details": details}


class ApiCallTracker:
    """What `track_api_call` yields; records one call when the `with` block ends."""

    def __init__(self, client: CostMonitorClient, *, operation_name: str, model_name: str | None = None,
                 research_category: str | None = None, operation_type: str = "llm_call",
                 experiment: str | None = None, run_id: str | None = None, operation_id: str | None = None,
                 metadata: Mapping[str, Any] | None = None, idempotency_key: str | None = None,
                 partial: bool = False):
        self.client = client
        self.partial = partial
        self.operation_name = operation_name
        self.model_name = model_name
        self.research_category = research_category
        self.operation_type = operation_type
        self.experiment = experiment
        self.run_id = run_id
        self.operation_id = operation_id
        self.metadata: dict[str, Any] = dict(metadata or {})
        self.idempotency_key = idempotency_key
        self.token_usage: dict[str, int] | None = None
        self.cost_usd: Decimal | float | None = None
        self.response_time_ms: float | None = None
        self.request_size: int | None = None
        self.response_size: int | None = None
        self.success = True
        self.error_type: str | None = None
        self.error_message: str | None = None
        self.result: dict[str, Any] | None = None  # the stored record (or the outbox receipt) after exit
        self._started: float | None = None
        self.started_at: datetime | None = None

    # --- the reference's setters ------------------------------------------------------------------

    def set_tokens(self, prompt: int = 0, completion: int = 0, total: int | None = None) -> None:
        self.token_usage = {"prompt_tokens": int(prompt), "completion_tokens": int(completion),
                            "total_tokens": int(total) if total is not None else int(prompt) + int(completion)}

    def set_cost(self, cost_usd: float | Decimal | str) -> None:
        self.cost_usd = Decimal(str(cost_usd))

    def set_response_details(self, response_time_ms: float | None = None, request_size: int | None = None,
                             response_size: int | None = None) -> None:
        if response_time_ms is not None:
            self.response_time_ms = float(response_time_ms)
        if request_size is not None:
            self.request_size = int(request_size)
        if response_size is not None:
            self.response_size = int(response_size)

    # --- conveniences -------------------------------------------------------------------------

    def set_model(self, model_name: str) -> None:
        self.model_name = model_name

    def add_metadata(self, **values: Any) -> None:
        self.metadata.update(values)

    def set_error(self, error_type: str, error_message: str = "") -> None:
        """Mark the call failed without raising (e.g. a refusal or an empty answer)."""
        self.success = False
        self.error_type = error_type
        self.error_message = error_message[:_ERROR_MESSAGE_LIMIT]

    def set_usage_from_openai(self, response: Any) -> dict[str, Any] | None:
        """Take tokens (and the model, if none was given) from an OpenAI SDK response's `usage`."""
        usage = openai_usage(response)
        if usage is None:
            logger.warning("CostMonitor: the response has no `usage`; no tokens recorded for %s.",
                           self.operation_name)
            return None
        self.set_tokens(usage["prompt_tokens"], usage["completion_tokens"], usage["total_tokens"])
        if usage["model"] and not self.model_name:
            self.model_name = usage["model"]
        elif usage["model"] and usage["model"] != self.model_name:
            self.metadata.setdefault("response_model", usage["model"])
        if usage["details"]:
            self.metadata.setdefault("usage_details", usage["details"])
        return usage

    # --- the context manager ------------------------------------------------------------------

    def __enter__(self) -> ApiCallTracker:
        self._started = time.perf_counter()
        self.started_at = datetime.now(UTC)
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        elapsed_ms = (time.perf_counter() - (self._started or time.perf_counter())) * 1000
        cost = self.cost_usd
        if exc is not None:
            self.success = False
            self.error_type = exc_type.__name__
            self.error_message = str(exc)[:_ERROR_MESSAGE_LIMIT]
            if cost is None and not self.token_usage:
                cost = Decimal("0")  # failed before any usage: nothing to price, and no model needed
        try:
            self.result = self.client.log_api_call(
                operation_name=self.operation_name, model_name=self.model_name,
                research_category=self.research_category, operation_type=self.operation_type,
                token_usage=self.token_usage, cost_usd=cost,
                response_time_ms=self.response_time_ms if self.response_time_ms is not None else round(elapsed_ms, 3),
                request_size=self.request_size, response_size=self.response_size, success=self.success,
                error_type=self.error_type, error_message=self.error_message, metadata=self.metadata or None,
                occurred_at=self.started_at, experiment=self.experiment, run_id=self.run_id,
                operation_id=self.operation_id, idempotency_key=self.idempotency_key, partial=self.partial)
        except CostMonitorError as record_error:
            if exc is None:
                raise
            # The pipeline's own exception matters more than ours: log, and let it propagate.
            logger.warning("CostMonitor could not record the failed call %s: %s", self.operation_name,
                           record_error)
        return False

    async def __aenter__(self) -> ApiCallTracker:
        return self.__enter__()

    async def __aexit__(self, exc_type, exc, tb) -> bool:
        return self.__exit__(exc_type, exc, tb)
