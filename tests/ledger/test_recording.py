"""Recording costs: both client shapes, pricing and versioned overrides, idempotency, exact money,
every invalid input refused with nothing stored, budget checks and limits, reservations."""

import json
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db.models import Sum
from django.db.models.signals import post_init
from django.utils import timezone
from rest_framework.test import APIClient

from budgets import accounts
from budgets import services as budget_services
from budgets.models import AuditLog, Budget, Membership, Reservation, SpendCounter
from tests.conftest import client_for
from tests.counters import CounterTotal, counter_total
from tracking import services as tracking_services
from tracking.events import parse_event
from tracking.models import HourlyRollup, ModelPriceOverride, UsageRecord
from tracking.rebuild import counters_rebuild

pytestmark = pytest.mark.django_db


def daily_counter() -> CounterTotal | None:
    return counter_total(budget_services.global_budget("daily"))


def assert_nothing_stored():
    assert UsageRecord.objects.count() == 0
    assert HourlyRollup.objects.count() == 0
    assert not SpendCounter.objects.filter(spent__gt=0).exists()


# --- Both client shapes ------------------------------------------------------------------------

def test_typescript_client_short_shape_is_recorded(researcher_client):
    answer = researcher_client.post("/api/v1/costs/track", {"operation_type": "llm_call", "cost": 0.0021,
                                                           "tokens": 420, "model": "gpt-4o-mini"}, format="json")
    assert answer.status_code == 201, answer.content
    body = answer.json()
    assert body["status"] == "success"
    record = UsageRecord.objects.get(pk=body["data"]["id"])
    assert (record.model_name, record.cost_usd, record.total_tokens) == ("gpt-4o-mini", Decimal("0.0021"), 420)
    assert record.price_source == "client" and record.occurred_at <= timezone.now()


@pytest.mark.parametrize("accept", ["", "application/json", "text/html"])
def test_a_recording_answers_json_to_clients_and_the_browsable_api_to_browsers(researcher_client, accept):
    headers = {"HTTP_ACCEPT": accept} if accept else {}
    response = researcher_client.post("/api/v1/costs/track", {"operation_type": "llm_call", "cost": 0.25},
                                      format="json", **headers)
    assert response.status_code == 201
    if accept == "text/html":
        assert response["Content-Type"].startswith("text/html")
        assert "&quot;cost_usd&quot;: 0.25" in response.content.decode()
    else:
        assert response["Content-Type"] == "application/json"
        body = json.loads(response.content)
        assert set(body) == {"status", "data", "meta"} and body["status"] == "success"
        assert body["data"]["cost_usd"] == 0.25 and body["meta"]["request_id"] == response["X-Request-ID"]
    assert UsageRecord.objects.count() == 1


def test_rest_client_log_api_call_shape_with_x_api_key_is_recorded(researcher, anon_client):
    raw_key = client_for(researcher).raw_key
    body = {"operation_name": "literature_search", "model_name": "gpt-4o-mini",
            "token_usage": {"prompt_tokens": 50, "completion_tokens": 25, "total_tokens": 75}, "cost_usd": 0.005,
            "response_time_ms": 800, "success": True, "research_category": "literature_search",
            "request_size": 2048, "response_size": 4096, "metadata": {"pipeline": "nightly"},
            "experiment": "exp-1", "run_id": "run-9"}
    answer = anon_client.post("/api/v1/costs/track", json.dumps(body), content_type="application/json",
                              HTTP_X_API_KEY=raw_key)
    assert answer.status_code == 201, answer.content
    record = UsageRecord.objects.get()
    assert (record.prompt_tokens, record.completion_tokens, record.total_tokens) == (50, 25, 75)
    assert record.response_time_ms == Decimal("800") and record.research_category == "literature_search"
    assert record.metadata == {"pipeline": "nightly"} and record.experiment == "exp-1" and record.run_id == "run-9"
    assert record.user == researcher and record.api_key is not None
    assert daily_counter().spent == Decimal("0.005")


def test_a_failed_call_with_a_cost_counts_as_spend(researcher_client):
    answer = researcher_client.post("/api/v1/costs/track", {"cost_usd": 0.4, "success": False,
                                                           "error_type": "Timeout", "error_message": "took too long"},
                                    format="json")
    assert answer.status_code == 201
    assert daily_counter().spent == Decimal("0.4")
    rollup = HourlyRollup.objects.get()
    assert (rollup.failed_calls, rollup.cost_usd, rollup.successful_cost_usd) == (1, Decimal("0.4"), 0)


def test_a_batch_operation_is_one_record_counting_its_calls(researcher_client):
    answer = researcher_client.post("/api/v1/costs/batch", {
        "operation_name": "batch_metabolite_analysis", "batch_size": 10, "total_tokens": 5000, "total_cost": 0.25,
        "processing_time_ms": 15000, "success_count": 9, "error_count": 1,
        "research_category": "metabolite_identification"}, format="json")
    assert answer.status_code == 201, answer.content
    record = UsageRecord.objects.get()
    assert (record.kind, record.batch_size, record.success_count, record.error_count) == ("batch", 10, 9, 1)
    assert daily_counter().calls == 10 and daily_counter().spent == Decimal("0.25")


# --- Pricing -----------------------------------------------------------------------------------

def test_tokens_without_cost_are_priced_from_the_price_table(researcher_client):
    answer = researcher_client.post("/api/v1/costs/track", {"model_name": "gpt-4o-mini", "token_usage": {
        "prompt_tokens": 1000, "completion_tokens": 500}}, format="json")
    assert answer.status_code == 201, answer.content
    record = UsageRecord.objects.get()
    # gpt-4o-mini: $0.15 per million input tokens, $0.60 per million output tokens.
    assert record.cost_usd == Decimal("0.00045") and record.price_source == "genai-prices"
    assert record.price_version.startswith("genai-prices")


def test_unknown_model_without_cost_is_invalid_and_stores_nothing(researcher_client):
    answer = researcher_client.post("/api/v1/costs/track", {"model_name": "no-such-model-9000", "token_usage": {
        "prompt_tokens": 1000, "completion_tokens": 500}}, format="json")
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "INVALID_PARAMETERS"
    assert "model_name" in answer.json()["error"]["details"]
    assert_nothing_stored()


def test_price_overrides_apply_from_their_effective_date(admin_user, researcher_client):
    now = timezone.now()
    ModelPriceOverride.objects.create(model_name="gpt-4o-mini", input_per_million_usd=1, output_per_million_usd=2,
                                      effective_from=now - timedelta(days=10), created_by=admin_user)
    ModelPriceOverride.objects.create(model_name="gpt-4o-mini", input_per_million_usd=3, output_per_million_usd=4,
                                      effective_from=now - timedelta(days=2), created_by=admin_user)
    costs = {}
    for label, when in (("before", now - timedelta(days=20)), ("first", now - timedelta(days=5)),
                        ("second", now - timedelta(hours=1))):
        answer = researcher_client.post("/api/v1/costs/track", {
            "model_name": "gpt-4o-mini", "occurred_at": when.isoformat(),
            "token_usage": {"prompt_tokens": 1000, "completion_tokens": 1000}}, format="json")
        assert answer.status_code == 201, answer.content
        costs[label] = (answer.json()["data"]["cost_usd"], answer.json()["data"]["price_source"])
    assert costs["before"] == (0.00075, "genai-prices")
    assert costs["first"] == (0.003, "override")
    assert costs["second"] == (0.007, "override")


# --- Idempotency -------------------------------------------------------------------------------

def test_a_retried_idempotency_key_is_stored_once_and_answered_the_same(researcher_client):
    body = {"cost": 0.25, "model": "gpt-4o"}
    first = researcher_client.post("/api/v1/costs/track", body, format="json", HTTP_IDEMPOTENCY_KEY="call-1")
    again = researcher_client.post("/api/v1/costs/track", body, format="json", HTTP_IDEMPOTENCY_KEY="call-1")
    assert first.status_code == again.status_code == 201
    assert first.json()["data"] == again.json()["data"] and again["Idempotent-Replayed"] == "true"
    assert UsageRecord.objects.count() == 1 and daily_counter().calls == 1


def test_request_id_field_is_an_idempotency_key_too(researcher_client):
    for _ in range(3):
        researcher_client.post("/api/v1/costs/track", {"cost": 0.1, "request_id": "req-77"}, format="json")
    assert UsageRecord.objects.count() == 1


def test_the_same_key_with_a_different_body_answers_422_and_stores_nothing_more(researcher_client):
    researcher_client.post("/api/v1/costs/track", {"cost": 0.25}, format="json", HTTP_IDEMPOTENCY_KEY="k")
    answer = researcher_client.post("/api/v1/costs/track", {"cost": 0.26}, format="json", HTTP_IDEMPOTENCY_KEY="k")
    assert answer.status_code == 422
    assert answer.json()["error"]["code"] == "INVALID_PARAMETERS"
    assert UsageRecord.objects.count() == 1 and daily_counter().spent == Decimal("0.25")


def test_the_same_key_and_body_on_another_endpoint_is_a_conflict_not_a_replay(researcher_client):
    body = {"operation_name": "nightly", "batch_size": 2, "total_cost": 0.5}
    assert researcher_client.post("/api/v1/costs/batch", body, format="json",
                                  HTTP_IDEMPOTENCY_KEY="run-7").status_code == 201
    answer = researcher_client.post("/api/v1/costs/bulk", {"events": [{"cost": 0.5}]}, format="json",
                                    HTTP_IDEMPOTENCY_KEY="run-7")
    assert answer.status_code == 422
    body_on_track = {"cost": 0.25}
    researcher_client.post("/api/v1/costs/track", body_on_track, format="json", HTTP_IDEMPOTENCY_KEY="run-8")
    answer = researcher_client.post("/api/v1/costs/bulk", body_on_track, format="json", HTTP_IDEMPOTENCY_KEY="run-8")
    assert answer.status_code == 422
    assert UsageRecord.objects.count() == 2


def test_idempotency_keys_are_scoped_per_owner(researcher_client, outsider_client):
    body = {"cost": 0.25}
    assert researcher_client.post("/api/v1/costs/track", body, format="json",
                                  HTTP_IDEMPOTENCY_KEY="shared").status_code == 201
    answer = outsider_client.post("/api/v1/costs/track", body, format="json", HTTP_IDEMPOTENCY_KEY="shared")
    assert answer.status_code == 201 and "Idempotent-Replayed" not in answer
    assert UsageRecord.objects.values("team").distinct().count() == 2


def test_an_idempotent_request_that_failed_can_be_retried(researcher_client):
    bad = researcher_client.post("/api/v1/costs/track", {"model_name": "no-such-model"}, format="json",
                                 HTTP_IDEMPOTENCY_KEY="retry-me")
    assert bad.status_code == 400
    good = researcher_client.post("/api/v1/costs/track", {"model_name": "no-such-model"}, format="json",
                                  HTTP_IDEMPOTENCY_KEY="retry-me")
    assert good.status_code == 400  # the same failure again, not a replay of a stored success
    assert UsageRecord.objects.count() == 0


# --- Exact money -------------------------------------------------------------------------------

@pytest.mark.postgres  # SQLite keeps decimals as floating point: exact sums are PostgreSQL's (CI runs it)
def test_ten_thousand_hundredths_of_a_cent_sum_to_exactly_one_dollar(researcher_client):
    for _ in range(10):
        answer = researcher_client.post("/api/v1/costs/bulk", {"events": [{"cost_usd": 0.0001}] * 1000},
                                        format="json")
        assert answer.status_code == 201, answer.content
    assert UsageRecord.objects.count() == 10_000
    assert UsageRecord.objects.aggregate(total=Sum("cost_usd"))["total"] == Decimal("1.000000")
    assert daily_counter().spent == Decimal("1.000000") and daily_counter().calls == 10_000
    assert HourlyRollup.objects.aggregate(total=Sum("cost_usd"))["total"] == Decimal("1.000000")


def test_a_bulk_request_with_one_bad_event_stores_nothing(researcher_client):
    events = [{"cost": 0.1}] * 999 + [{"cost": -0.1}]
    answer = researcher_client.post("/api/v1/costs/bulk", {"events": events}, format="json")
    assert answer.status_code == 400 and "events[999].cost" in answer.json()["error"]["details"]
    assert_nothing_stored()


def test_a_bulk_stores_every_field_exactly_as_a_single_track_does(researcher_client):
    awkward = 'quote " backslash \\ newline \n tab \t brace { comma , unicode é 漢 🙂 NULL-ish "NULL"'
    event = {"operation_name": awkward, "operation_type": "llm_call", "model_name": "gpt-4o-mini",
             "research_category": "pathway_analysis", "experiment": "exp {1}", "run_id": 'run "7"',
             "token_usage": {"prompt_tokens": 1234, "completion_tokens": 56}, "cost_usd": "0.123457",
             "response_time_ms": 812.125, "request_size": 2048, "response_size": 9_000_000_000, "success": False,
             "error_type": "Timeout", "error_message": awkward,
             # Relative, with microseconds: recordings accept at most 400 days back.
             "occurred_at": (timezone.now() - timedelta(days=30)).replace(microsecond=678901).isoformat(),
             "metadata": {"note": awkward, "nested": {"list": [1, 2.5, None, True]}, "": "empty key"}}
    single = researcher_client.post("/api/v1/costs/track", event, format="json")
    bulk = researcher_client.post("/api/v1/costs/bulk", {"events": [event, {**event, "model_name": "gpt-4o",
                                                                              "cost_usd": None}]}, format="json")
    assert single.status_code == 201 and bulk.status_code == 201, bulk.content
    ignored = {"id", "recorded_at"}
    stored = [{k: v for k, v in vars(r).items() if k not in ignored and not k.startswith("_")}
              for r in UsageRecord.objects.order_by("id")]
    assert stored[1] == stored[0]
    assert stored[0]["operation_name"] == awkward and stored[0]["metadata"]["note"] == awkward
    assert stored[0]["response_size"] == 9_000_000_000 and stored[0]["cost_usd"] == Decimal("0.123457")
    priced = UsageRecord.objects.get(pk=bulk.json()["data"]["ids"][1])
    assert priced.price_source == "genai-prices" and priced.cost_usd > 0 and priced.operation_id is None


def test_the_records_a_recording_returns_are_the_stored_ones(researcher, django_assert_num_queries):
    events = [parse_event({"cost_usd": "0.25", "model_name": "gpt-4o", "metadata": {"k": [1]},
                           "occurred_at": (timezone.now() - timedelta(days=3)).isoformat()}),
              parse_event({"model_name": "gpt-4o-mini", "token_usage": {"prompt_tokens": 10}})]
    returned = tracking_services.usage_record_many(user=researcher, events=events)
    for record in returned:
        # No query: every field is set in memory (none deferred) and the relations are cached.
        with django_assert_num_queries(0):
            in_memory = {f.attname: f.value_from_object(record) for f in UsageRecord._meta.concrete_fields}
            assert record.user == researcher and record.team.pk == record.team_id
        stored = UsageRecord.objects.get(pk=record.pk)
        assert in_memory == {f.attname: f.value_from_object(stored) for f in UsageRecord._meta.concrete_fields}
        assert record._state.adding is False


def test_model_init_signals_reach_their_listeners_when_there_are_any(researcher_client):
    seen = []

    def listener(sender, instance, **kwargs):
        seen.append(instance)

    post_init.connect(listener, sender=UsageRecord)
    try:
        answer = researcher_client.post("/api/v1/costs/bulk", {"events": [{"cost": 0.1}, {"cost": 0.2}]},
                                        format="json")
    finally:
        post_init.disconnect(listener, sender=UsageRecord)
    assert answer.status_code == 201, answer.content
    assert sorted(r.cost_usd for r in seen) == [Decimal("0.1"), Decimal("0.2")]


def test_more_than_a_thousand_events_are_refused(researcher_client):
    answer = researcher_client.post("/api/v1/costs/bulk", {"events": [{"cost": 0.1}] * 1001}, format="json")
    assert answer.status_code == 400 and "events" in answer.json()["error"]["details"]
    assert_nothing_stored()


# --- Invalid input: refused, naming the field, nothing stored -----------------------------------

@pytest.mark.parametrize("body, field", [
    ({"cost": -1}, "cost"),
    ({"cost_usd": -0.000001}, "cost_usd"),
    ({"cost_usd": "NaN"}, "cost_usd"),
    ({"cost_usd": "Infinity"}, "cost_usd"),
    ({"cost": 1e12}, "cost"),
    ({"cost_usd": 0.0000001}, "cost_usd"),
    ({"cost_usd": "0.1234567"}, "cost_usd"),
    ({"cost": "a lot"}, "cost"),
    ({"cost": True}, "cost"),
    ({"cost": 0.1, "tokens": "many"}, "tokens"),
    ({"cost": 0.1, "tokens": -5}, "tokens"),
    ({"cost": 0.1, "tokens": 1.5}, "tokens"),
    ({"cost": 0.1, "prompt_tokens": 10**12}, "prompt_tokens"),
    ({"cost": 0.1, "token_usage": {"prompt_tokens": 1, "bogus": 2}}, "token_usage.bogus"),
    ({"cost": 0.1, "token_usage": [1, 2]}, "token_usage"),
    ({"cost": 0.1, "success": "yes"}, "success"),
    ({"cost": 0.1, "response_time_ms": -3}, "response_time_ms"),
    ({"cost": 0.1, "model_name": 12}, "model_name"),
    ({"cost": 0.1, "model": "x" * 101}, "model"),
    ({"cost": 0.1, "metadata": "not an object"}, "metadata"),
    ({"cost": 0.1, "occurred_at": "2999-01-01T00:00:00Z"}, "occurred_at"),
    ({"cost": 0.1, "occurred_at": "last tuesday"}, "occurred_at"),
    ({"cost": 0.1, "favourite_colour": "blue"}, "favourite_colour"),
    ({"cost": 0.1, "team": "Metabolomics"}, "team"),
    ({"cost": 0.1, "operation_id": "not-a-uuid"}, "operation_id"),
    ({"tokens": 100}, "cost_usd"),
])
def test_invalid_track_bodies_are_refused_and_store_nothing(researcher_client, body, field):
    answer = researcher_client.post("/api/v1/costs/track", body, format="json")
    assert answer.status_code == 400, answer.content
    error = answer.json()["error"]
    assert error["code"] == "INVALID_PARAMETERS" and field in error["details"], error
    assert_nothing_stored()


@pytest.mark.parametrize("raw", ['{"cost": NaN}', '{"cost": Infinity}', '{"cost": -Infinity}', '{"cost": 0.1',
                                 '[{"cost": 0.1}]', '"cost"'])
def test_raw_non_json_numbers_and_broken_bodies_are_refused(researcher_client, raw):
    answer = researcher_client.post("/api/v1/costs/track", raw, content_type="application/json")
    assert answer.status_code == 400, answer.content
    assert answer.json()["error"]["code"] == "INVALID_PARAMETERS"
    assert_nothing_stored()


@pytest.mark.parametrize("path, raw, field", [
    ("/api/v1/costs/track", '{"cost_usd": 0.1, "error_message": "bad byte \\u0000 in output"}', "error_message"),
    ("/api/v1/costs/track", '{"cost_usd": 0.1, "operation_name": "\\ud800"}', "operation_name"),
    ("/api/v1/costs/track", '{"cost_usd": 0.1, "metadata": {"prompt": "a\\u0000b"}}', "metadata"),
    ("/api/v1/costs/track", '{"cost_usd": 0.1, "metadata": {"\\udfff": 1}}', "metadata"),
    ("/api/v1/costs/track", '{"cost_usd": 0.1, "request_id": "retry-\\u0000"}', "Idempotency-Key"),
    ("/api/v1/costs/batch", '{"operation_name": "x\\u0000", "batch_size": 2, "total_cost": 0.2}', "operation_name"),
    ("/api/v1/costs/bulk", '{"events": [{"cost_usd": 0.1, "model_name": "m\\u0000"}]}', "events[0].model_name"),
])
def test_text_the_database_cannot_store_is_refused_not_a_server_error(researcher_client, path, raw, field):
    # A 500 here is worse than rude: the SDK keeps 5xx answers in its outbox and resends them, so
    # one record with a NUL byte in an error message would block every record queued after it.
    answer = researcher_client.post(path, raw, content_type="application/json")
    assert answer.status_code == 400, answer.content
    error = answer.json()["error"]
    assert error["code"] == "INVALID_PARAMETERS" and field in error["details"], error
    assert_nothing_stored()


def test_an_oversize_body_answers_413_and_stores_nothing(researcher_client, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 100_000
    body = json.dumps({"cost": 0.1, "error_message": "x" * 200_000})
    answer = researcher_client.post("/api/v1/costs/track", body, content_type="application/json")
    assert answer.status_code == 413
    assert answer.json()["error"]["code"] == "INVALID_PARAMETERS"
    assert_nothing_stored()


def test_a_batch_whose_counts_exceed_its_size_is_refused(researcher_client):
    answer = researcher_client.post("/api/v1/costs/batch", {"operation_name": "b", "batch_size": 5,
                                                           "success_count": 5, "error_count": 1, "total_cost": 1},
                                    format="json")
    assert answer.status_code == 400 and "success_count" in answer.json()["error"]["details"]
    assert_nothing_stored()


def test_recording_for_a_team_you_do_not_belong_to_is_refused(researcher_client, other_team):
    answer = researcher_client.post("/api/v1/costs/track", {"cost": 0.1, "team": other_team.pk}, format="json")
    assert answer.status_code == 400 and "team" in answer.json()["error"]["details"]
    assert_nothing_stored()


# --- Budget checks -----------------------------------------------------------------------------

def test_a_key_made_for_a_team_stops_booking_to_it_when_its_owner_leaves(researcher, team, other_team):
    Membership.objects.create(user=researcher, team=other_team)
    _, raw_key = accounts.api_key_create(user=researcher, name="proteomics key", team=other_team)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_key}")
    assert client.post("/api/v1/costs/track", {"cost_usd": 0.5}, format="json").json()["data"]["team"] == other_team.pk

    Membership.objects.filter(user=researcher, team=other_team).delete()
    for path, body in (("/api/v1/costs/track", {"cost_usd": 0.5}), ("/api/v1/budget/reserve", {"estimated_cost": 1}),
                       ("/api/v1/budget/check", {"cost_amount": 1})):
        answer = client.post(path, body, format="json")
        assert answer.status_code == 400, (path, answer.content)
        assert "team" in answer.json()["error"]["details"]
    assert UsageRecord.objects.filter(team=other_team).count() == 1
    assert not Reservation.objects.exists()


def test_check_answers_the_reference_shape(researcher_client):
    researcher_client.post("/api/v1/costs/track", {"cost": 10, "research_category": "pathway_analysis"},
                           format="json")
    answer = researcher_client.post("/api/v1/budget/check", {"cost_amount": 5.0, "operation_type": "llm_call",
                                                            "research_category": "metabolite_identification"},
                                    format="json")
    assert answer.status_code == 200, answer.content
    data = answer.json()["data"]
    assert data["operation_allowed"] is True and data["budget_health"] == "healthy"
    assert data["daily_status"] == {**data["daily_status"], "total_cost": 10.0, "projected_cost": 15.0,
                                    "percentage_used": 20.0, "budget_limit": 50.0, "over_budget": False}
    assert data["monthly_status"]["total_cost"] == 10.0 and data["alerts_generated"] == []
    assert data["cost_breakdown"]["by_category"] == {"pathway_analysis": 10.0}
    assert data["cost_breakdown"]["by_operation"] == {"llm_call": 10.0}


def test_a_hard_team_budget_denies_with_402_naming_the_budget(researcher_client, team):
    Budget.objects.create(name="Metabolomics daily", scope="team", team=team, period="daily", limit_usd=5)
    researcher_client.post("/api/v1/costs/track", {"cost": 4}, format="json")
    answer = researcher_client.post("/api/v1/budget/check", {"cost_amount": 2}, format="json")
    assert answer.status_code == 402
    error = answer.json()["error"]
    assert error["code"] == "BUDGET_EXCEEDED" and "Metabolomics daily" in error["message"]
    assert {k: error["details"][k] for k in ("current_cost", "requested_cost", "budget_limit", "projected_total",
                                             "budget_name", "budget_scope")} == {
        "current_cost": 4.0, "requested_cost": 2.0, "budget_limit": 5.0, "projected_total": 6.0,
        "budget_name": "Metabolomics daily", "budget_scope": "team"}


def test_a_soft_budget_allows_and_reports_over_budget(researcher_client):
    Budget.objects.create(name="gpt-4o soft", scope="model", model_name="gpt-4o", period="daily", limit_usd=1,
                          enforcement="soft")
    answer = researcher_client.post("/api/v1/budget/check", {"cost_amount": 2, "model_name": "gpt-4o"},
                                    format="json")
    assert answer.status_code == 200 and answer.json()["data"]["operation_allowed"] is True
    soft = next(b for b in answer.json()["data"]["budgets"] if b["budget_name"] == "gpt-4o soft")
    assert soft["over_budget"] is True


def test_other_teams_budgets_do_not_apply(researcher_client, other_team):
    Budget.objects.create(name="Proteomics daily", scope="team", team=other_team, period="daily", limit_usd=0)
    assert researcher_client.post("/api/v1/budget/check", {"cost_amount": 1}, format="json").status_code == 200


def test_check_refuses_a_negative_or_over_precise_cost(researcher_client):
    for amount in (-1, "0.0000001", "NaN"):
        answer = researcher_client.post("/api/v1/budget/check", {"cost_amount": amount}, format="json")
        assert answer.status_code == 400 and "cost_amount" in answer.json()["error"]["details"], amount


# --- Limits ------------------------------------------------------------------------------------

def test_researcher_cannot_raise_the_daily_limit(researcher_client):
    answer = researcher_client.patch("/api/v1/budget/limits", {"daily_budget": 500}, format="json")
    assert answer.status_code == 403
    assert budget_services.global_budget("daily").limit_usd == Decimal("50")
    assert not AuditLog.objects.filter(object_type="Budget").exists()


def test_admin_changes_the_limits_and_each_change_is_audited(admin_user, admin_client):
    answer = admin_client.patch("/api/v1/budget/limits", {"daily_budget": 75.0, "monthly_budget": 1500.0},
                                format="json")
    assert answer.status_code == 200, answer.content
    assert answer.json()["data"]["daily_budget"] == 75.0 and answer.json()["data"]["monthly_budget"] == 1500.0
    rows = {row.object_id: row for row in AuditLog.objects.filter(action="budget.updated")}
    daily = rows[str(budget_services.global_budget("daily").pk)]
    assert daily.actor == admin_user
    assert [Decimal(v) for v in daily.changes["limit_usd"]] == [Decimal("50"), Decimal("75")]
    assert len(rows) == 2


# --- Reservations ------------------------------------------------------------------------------

def test_recording_with_the_operation_id_replaces_the_estimate_with_the_actual_cost(researcher_client):
    held = researcher_client.post("/api/v1/budget/reserve", {"estimated_cost": 3}, format="json")
    assert held.status_code == 201, held.content
    assert daily_counter().reserved == Decimal("3")
    operation_id = held.json()["data"]["operation_id"]
    answer = researcher_client.post("/api/v1/costs/track", {"cost": 1.25, "operation_id": operation_id},
                                    format="json")
    assert answer.status_code == 201, answer.content
    counter = daily_counter()
    assert (counter.spent, counter.reserved) == (Decimal("1.25"), 0)
    assert Reservation.objects.get().status == "settled"
    again = researcher_client.post("/api/v1/costs/track", {"cost": 1.25, "operation_id": operation_id},
                                   format="json")
    assert again.status_code == 400 and "operation_id" in again.json()["error"]["details"]


def test_a_reservation_can_be_priced_from_a_model_and_tokens(researcher_client):
    answer = researcher_client.post("/api/v1/budget/reserve", {"model_name": "gpt-4o-mini", "calls": 10,
                                                              "estimated_tokens": {"input": 1000, "output": 500}},
                                    format="json")
    assert answer.status_code == 201, answer.content
    assert answer.json()["data"]["estimated_cost"] == 0.0045


def test_an_absurd_token_estimate_is_refused_before_it_holds_anything(researcher_client):
    Budget.objects.filter(is_global_default=True).update(enforcement=Budget.Enforcement.SOFT)
    answer = researcher_client.post("/api/v1/budget/reserve", {
        "model_name": "gpt-4o", "calls": 1_000_000, "estimated_tokens": {"input": 100_000_000, "output": 100_000_000}},
        format="json")
    assert answer.status_code == 400 and "estimated_cost" in answer.json()["error"]["details"]
    assert not Reservation.objects.exists()
    assert SpendCounter.objects.aggregate(held=Sum("reserved"))["held"] in (None, 0)


def test_released_reservations_hold_nothing(researcher_client):
    operation_id = researcher_client.post("/api/v1/budget/reserve", {"estimated_cost": 3},
                                          format="json").json()["data"]["operation_id"]
    answer = researcher_client.delete(f"/api/v1/budget/reserve/{operation_id}")
    assert answer.status_code == 200 and answer.json()["data"]["status"] == "released"
    assert daily_counter().reserved == 0


def test_another_users_reservation_cannot_be_released(researcher_client, outsider_client):
    operation_id = researcher_client.post("/api/v1/budget/reserve", {"estimated_cost": 3},
                                          format="json").json()["data"]["operation_id"]
    assert outsider_client.delete(f"/api/v1/budget/reserve/{operation_id}").status_code == 400
    assert daily_counter().reserved == Decimal("3")


def test_expired_reservations_are_released_and_a_late_record_still_counts(researcher_client):
    operation_id = researcher_client.post("/api/v1/budget/reserve", {"estimated_cost": 30},
                                          format="json").json()["data"]["operation_id"]
    assert researcher_client.post("/api/v1/budget/reserve", {"estimated_cost": 30}, format="json").status_code == 402
    released = budget_services.reservations_expire(now=timezone.now() + timedelta(hours=1))
    assert released == 2 - 1  # the denied one never existed
    assert daily_counter().reserved == 0 and Reservation.objects.get().status == "expired"
    assert researcher_client.post("/api/v1/budget/reserve", {"estimated_cost": 30}, format="json").status_code == 201
    late = researcher_client.post("/api/v1/costs/track", {"cost": 2, "operation_id": operation_id}, format="json")
    assert late.status_code == 201  # the call happened: its cost is not lost
    assert (daily_counter().spent, daily_counter().reserved) == (Decimal("2"), Decimal("30"))


def test_a_reservation_that_would_exceed_a_hard_budget_is_refused_and_holds_nothing(researcher_client):
    answer = researcher_client.post("/api/v1/budget/reserve", {"estimated_cost": 51}, format="json")
    assert answer.status_code == 402 and answer.json()["error"]["code"] == "BUDGET_EXCEEDED"
    assert answer.json()["error"]["details"]["budget_limit"] == 50.0
    assert Reservation.objects.count() == 0 and not SpendCounter.objects.filter(reserved__gt=0).exists()


# --- Partial settlement (an experiment's calls recorded against its hold) ------------------------

def no_counter_drift() -> bool:
    return not counters_rebuild(budgets=list(Budget.objects.filter(is_active=True)), write=False).has_drift


def reserve(client, amount) -> str:
    answer = client.post("/api/v1/budget/reserve", {"estimated_cost": amount}, format="json")
    assert answer.status_code == 201, answer.content
    return answer.json()["data"]["operation_id"]


def track(client, body):
    answer = client.post("/api/v1/costs/track", body, format="json")
    assert answer.status_code == 201, answer.content
    return answer.json()["data"]


def test_a_partial_record_takes_its_cost_out_of_the_hold_which_stays_held(researcher_client):
    operation_id = reserve(researcher_client, 3)
    track(researcher_client, {"cost": 1, "operation_id": operation_id, "partial": True})
    assert (daily_counter().spent, daily_counter().reserved) == (Decimal("1"), Decimal("2"))
    assert Reservation.objects.get().status == "held"
    # More than what remains held: the hold gives what it has, the whole cost is spent.
    track(researcher_client, {"cost": "2.5", "operation_id": operation_id, "partial": True})
    assert (daily_counter().spent, daily_counter().reserved) == (Decimal("3.5"), Decimal("0"))
    released = researcher_client.delete(f"/api/v1/budget/reserve/{operation_id}")
    assert released.status_code == 200 and Reservation.objects.get().status == "released"
    assert (daily_counter().spent, daily_counter().reserved) == (Decimal("3.5"), Decimal("0"))
    assert no_counter_drift()


def test_a_final_record_settles_what_partial_records_left(researcher_client):
    operation_id = reserve(researcher_client, 3)
    track(researcher_client, {"cost": 1, "operation_id": operation_id, "partial": True})
    assert no_counter_drift()  # the hold's remaining amount is what the counter holds
    track(researcher_client, {"cost": "0.5", "operation_id": operation_id})
    assert (daily_counter().spent, daily_counter().reserved) == (Decimal("1.5"), Decimal("0"))
    assert Reservation.objects.get().status == "settled"
    refused = researcher_client.post("/api/v1/costs/track", {"cost": 1, "operation_id": operation_id,
                                                             "partial": True}, format="json")
    assert refused.status_code == 400 and "operation_id" in refused.json()["error"]["details"]


def test_partial_records_keep_hold_and_spend_from_counting_twice_near_a_hard_limit(researcher_client, team):
    Budget.objects.create(name="Lab $10/day", scope="team", team=team, period="daily", limit_usd=10)
    operation_id = reserve(researcher_client, 8)
    for _ in range(5):
        track(researcher_client, {"cost": 1, "operation_id": operation_id, "partial": True})
    # $5 spent, $3 still held: $2 more fits (with plain records it would be 5 + 8 + 2 > 10).
    assert researcher_client.post("/api/v1/budget/reserve", {"estimated_cost": 2}, format="json").status_code == 201
    assert researcher_client.post("/api/v1/budget/reserve", {"estimated_cost": "0.01"},
                                  format="json").status_code == 402


def test_expiry_releases_what_partial_records_left(researcher_client):
    reserve(researcher_client, 3)
    operation_id = str(Reservation.objects.get().operation_id)
    track(researcher_client, {"cost": 1, "operation_id": operation_id, "partial": True})
    assert budget_services.reservations_expire(now=timezone.now() + timedelta(hours=1)) == 1
    assert (daily_counter().spent, daily_counter().reserved) == (Decimal("1"), Decimal("0"))
    assert no_counter_drift()


def test_partial_needs_an_operation_id_and_stores_nothing_without_one(researcher_client):
    answer = researcher_client.post("/api/v1/costs/track", {"cost": 1, "partial": True}, format="json")
    assert answer.status_code == 400 and "partial" in answer.json()["error"]["details"]
    bad = researcher_client.post("/api/v1/costs/track", {"cost": 1, "partial": "yes"}, format="json")
    assert bad.status_code == 400 and "partial" in bad.json()["error"]["details"]
    assert not UsageRecord.objects.exists()
