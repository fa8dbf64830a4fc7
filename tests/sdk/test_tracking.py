"""A pipeline records its calls through the SDK against a live server: the context manager, single
calls, batches, bulk uploads and server-side pricing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace

import pytest

from costmonitor.sdk import openai_usage
from tracking.models import UsageRecord

pytestmark = pytest.mark.django_db(transaction=True)


class PipelineError(RuntimeError):
    pass


def test_tracked_call_records_tokens_cost_and_details(monitor, researcher):
    with monitor.track_api_call(operation_name="metabolite_analysis", model_name="gpt-4o-mini",
                                research_category="metabolite_identification") as tracker:
        tracker.set_tokens(prompt=100, completion=50)
        tracker.set_cost(0.023)
        tracker.set_response_details(response_time_ms=1500, request_size=2048, response_size=4096)

    record = UsageRecord.objects.get()
    assert record.user == researcher
    assert record.operation_name == "metabolite_analysis"
    assert record.model_name == "gpt-4o-mini"
    assert record.research_category == "metabolite_identification"
    assert (record.prompt_tokens, record.completion_tokens, record.total_tokens) == (100, 50, 150)
    assert record.cost_usd == Decimal("0.023")
    assert record.price_source == "client"
    assert record.response_time_ms == Decimal("1500")
    assert (record.request_size, record.response_size) == (2048, 4096)
    assert record.success is True
    assert tracker.result["id"] == record.pk


def test_costs_and_times_computed_in_floats_are_recorded_rounded_not_refused(monitor):
    # Prices per token make costs finer than the micro-dollars the server stores (1234 tokens at
    # $0.15 per million = $0.0001851), and float sums add noise (0.1 + 0.2): round, don't lose the call.
    with monitor.track_api_call("classify", model_name="gpt-4o-mini") as tracker:
        tracker.set_cost(1234 * 0.15 / 1_000_000)
        tracker.set_response_details(response_time_ms=123.456789)
    monitor.log_api_call("summarise", cost_usd=0.1 + 0.2, response_time_ms=0.1 + 0.2)
    monitor.log_batch_operation("embed", batch_size=3, total_tokens=30, total_cost=Decimal("0.00000051"))
    records = list(UsageRecord.objects.order_by("id"))
    assert [r.cost_usd for r in records] == [Decimal("0.000185"), Decimal("0.3"), Decimal("0.000001")]
    assert [r.response_time_ms for r in records[:2]] == [Decimal("123.457"), Decimal("0.3")]
    assert monitor.pending_records == 0
    assert monitor.check_budget_status(cost_amount=1 / 3)["operation_allowed"] is True


def test_tracked_call_times_the_block_when_no_time_is_given(monitor):
    with monitor.track_api_call("quick", model_name="gpt-4o-mini") as tracker:
        tracker.set_cost("0.001")
    record = UsageRecord.objects.get()
    assert record.response_time_ms is not None and record.response_time_ms >= 0
    assert record.occurred_at is not None


def test_failing_block_is_recorded_as_failure_and_the_error_propagates(monitor):
    with pytest.raises(PipelineError, match="model overloaded"):
        with monitor.track_api_call("pathway_lookup", model_name="gpt-4o", research_category="pathway_analysis") as t:
            t.set_tokens(prompt=10, completion=0)
            raise PipelineError("model overloaded")

    record = UsageRecord.objects.get()
    assert record.success is False
    assert record.error_type == "PipelineError"
    assert "model overloaded" in record.error_message
    assert record.prompt_tokens == 10


def test_server_prices_tokens_when_no_cost_is_set(monitor):
    with monitor.track_api_call("summarise", model_name="gpt-4o-mini") as tracker:
        tracker.set_tokens(prompt=1000, completion=500)
    record = UsageRecord.objects.get()
    assert record.price_source != "client"
    assert record.cost_usd > 0
    assert tracker.result["cost_usd"] == float(record.cost_usd)


def test_openai_response_usage_is_read_without_arithmetic(monitor):
    # The attribute layout of openai.types.chat.ChatCompletion (the SDK reads attributes, not types).
    response = SimpleNamespace(
        model="gpt-4o-mini-2024-07-18",
        usage=SimpleNamespace(prompt_tokens=1200, completion_tokens=300, total_tokens=1500,
                              prompt_tokens_details=SimpleNamespace(cached_tokens=1024),
                              completion_tokens_details=SimpleNamespace(reasoning_tokens=0)))
    with monitor.track_api_call("classify", research_category="data_validation") as tracker:
        tracker.set_usage_from_openai(response)

    record = UsageRecord.objects.get()
    assert (record.prompt_tokens, record.completion_tokens, record.total_tokens) == (1200, 300, 1500)
    assert record.model_name == "gpt-4o-mini-2024-07-18"
    assert record.metadata["usage_details"] == {"cached_tokens": 1024}
    assert record.cost_usd > 0


def test_openai_usage_adapter_reads_responses_api_and_dicts():
    responses_api = SimpleNamespace(model="gpt-4.1", usage=SimpleNamespace(
        input_tokens=40, output_tokens=60, total_tokens=100,
        input_tokens_details=SimpleNamespace(cached_tokens=0),
        output_tokens_details=SimpleNamespace(reasoning_tokens=12)))
    assert openai_usage(responses_api) == {"prompt_tokens": 40, "completion_tokens": 60, "total_tokens": 100,
                                           "model": "gpt-4.1", "details": {"reasoning_tokens": 12}}
    as_dict = {"model": "text-embedding-3-small", "usage": {"prompt_tokens": 8, "total_tokens": 8}}
    assert openai_usage(as_dict)["total_tokens"] == 8
    assert openai_usage(SimpleNamespace(usage=None)) is None


def test_log_api_call_as_in_the_reference(monitor):
    record = monitor.log_api_call(
        operation_name="literature_search", model_name="gpt-4o-mini",
        token_usage={"prompt_tokens": 50, "completion_tokens": 25, "total_tokens": 75},
        cost_usd=0.005, response_time_ms=800, success=True, research_category="literature_search",
        experiment="exp-7", run_id="run-1", metadata={"paper": "PMC123"})
    stored = UsageRecord.objects.get(pk=record["id"])
    assert stored.cost_usd == Decimal("0.005")
    assert (stored.experiment, stored.run_id, stored.metadata) == ("exp-7", "run-1", {"paper": "PMC123"})


def test_track_cost_takes_the_reference_rest_clients_short_shape(monitor):
    record = monitor.track_cost({"operation_type": "llm_call", "cost": 0.5, "tokens": 100, "model": "gpt-4o-mini"})
    assert record["cost_usd"] == 0.5
    assert UsageRecord.objects.get().model_name == "gpt-4o-mini"


def test_same_idempotency_key_is_counted_once(monitor):
    when = datetime.now(UTC) - timedelta(minutes=3)
    first = monitor.log_api_call(operation_name="x", cost_usd=0.1, idempotency_key="pipeline-run-42-step-1",
                                 occurred_at=when)
    again = monitor.log_api_call(operation_name="x", cost_usd=0.1, idempotency_key="pipeline-run-42-step-1",
                                 occurred_at=when)
    assert first == again
    assert UsageRecord.objects.count() == 1


def test_batch_operation(monitor):
    record = monitor.log_batch_operation(
        operation_name="batch_metabolite_analysis", batch_size=10, total_tokens=5000, total_cost=0.25,
        processing_time_ms=15000, success_count=9, error_count=1, research_category="metabolite_identification")
    stored = UsageRecord.objects.get(pk=record["id"])
    assert stored.kind == "batch"
    assert (stored.batch_size, stored.success_count, stored.error_count) == (10, 9, 1)
    assert stored.cost_usd == Decimal("0.25")
    assert stored.total_tokens == 5000


def test_bulk_upload_is_all_or_nothing(monitor):
    answer = monitor.log_bulk([{"operation_name": f"step-{i}", "cost_usd": 0.01} for i in range(5)])
    assert answer["recorded"] == 5
    assert UsageRecord.objects.count() == 5

    from costmonitor.sdk import InvalidParametersError

    with pytest.raises(InvalidParametersError) as caught:
        monitor.log_bulk([{"cost_usd": 0.01}, {"cost_usd": -1}])
    assert "events[1].cost_usd" in caught.value.details
    assert UsageRecord.objects.count() == 5


def test_performance_summary_reflects_recorded_calls(monitor):
    monitor.log_api_call(operation_name="a", model_name="gpt-4o-mini", cost_usd=0.02, response_time_ms=100)
    summary = monitor.get_performance_summary()
    assert summary["current_day"]["total_calls"] >= 1
