"""Nothing is lost when the monitor is down: records wait in the on-disk outbox and arrive exactly once
when the server is back — sent by `flush()` or by the background thread."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta

import pytest

from costmonitor.sdk import CostMonitorClient, Outbox
from tracking.models import UsageRecord

from .conftest import free_port

pytestmark = pytest.mark.django_db(transaction=True)


class ModelTimeout(Exception):
    pass


def wait_until(condition, seconds: float = 30.0) -> bool:
    """Poll for an outcome (a bound on waiting, not a timing assertion)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def record_some_calls(client: CostMonitorClient, start: int, count: int) -> list[dict]:
    answers = []
    for i in range(start, start + count):
        with client.track_api_call(f"step-{i}", model_name="gpt-4o-mini", research_category="outage") as t:
            t.set_tokens(prompt=100, completion=20)
            t.set_cost(0.001)
        answers.append(t.result)
    return answers


def test_server_stops_pipeline_keeps_recording_and_every_record_arrives_once(restartable_server, researcher_key,
                                                                            make_client):
    client = make_client(restartable_server.url, researcher_key)
    sent = record_some_calls(client, 0, 3)
    assert all("id" in answer for answer in sent)

    restartable_server.stop()
    queued = record_some_calls(client, 3, 5)
    with pytest.raises(ModelTimeout):  # a failed call during the outage is kept too, and the error propagates
        with client.track_api_call("step-fail", model_name="gpt-4o-mini", research_category="outage"):
            raise ModelTimeout("upstream timed out")
    client.log_batch_operation(operation_name="batch-during-outage", batch_size=4, total_tokens=400,
                               total_cost=0.004, research_category="outage")
    assert all(answer["queued"] for answer in queued)
    assert client.pending_records == 7
    assert client.flush() is False  # still down: nothing is lost, nothing is dropped
    assert client.pending_records == 7
    assert UsageRecord.objects.count() == 3

    restartable_server.start()
    assert client.flush() is True
    assert client.pending_records == 0
    assert client.flush() is True  # flushing again sends nothing twice

    names = list(UsageRecord.objects.order_by("operation_name").values_list("operation_name", flat=True))
    assert names == sorted([f"step-{i}" for i in range(8)] + ["step-fail", "batch-during-outage"])
    failed = UsageRecord.objects.get(operation_name="step-fail")
    assert failed.success is False and failed.error_type == "ModelTimeout"
    assert client.dropped_records == 0


def test_background_thread_resends_when_the_server_returns(restartable_server, researcher_key, make_client):
    client = make_client(restartable_server.url, researcher_key, background_flush=True, flush_interval=0.1)
    restartable_server.stop()
    record_some_calls(client, 0, 4)
    assert client.pending_records == 4

    restartable_server.start()
    assert wait_until(lambda: client.pending_records == 0)
    assert wait_until(lambda: UsageRecord.objects.count() == 4)
    time.sleep(0.3)  # a few more flusher rounds: still exactly once
    assert UsageRecord.objects.count() == 4


def test_records_left_by_a_previous_run_are_resent_by_the_next_client(restartable_server, researcher_key,
                                                                      make_client):
    first_run = make_client(restartable_server.url, researcher_key)
    restartable_server.stop()
    record_some_calls(first_run, 0, 2)
    first_run.close()

    restartable_server.start()
    next_run = make_client(restartable_server.url, researcher_key, background_flush=True, flush_interval=0.1)
    assert wait_until(lambda: next_run.pending_records == 0)
    assert UsageRecord.objects.count() == 2


def test_a_record_whose_answer_was_lost_is_not_counted_twice(live_server, researcher_key, make_client):
    """The server stored it but the answer never came back, so the SDK kept it: the resend carries
    the same idempotency key and body, and the server replays its first answer."""
    client = make_client(live_server.url, researcher_key)
    body = {"operation_name": "answer-lost", "cost_usd": 0.02,
            "occurred_at": (datetime.now(UTC) - timedelta(minutes=1)).isoformat()}
    first = client.track_cost(body, idempotency_key="sdk-lost-answer")
    client.outbox.add(method="POST", path="/costs/track", body=body, idempotency_key="sdk-lost-answer")
    assert client.flush() is True
    assert UsageRecord.objects.count() == 1
    assert UsageRecord.objects.get().pk == first["id"]


def test_full_outbox_drops_the_oldest_says_so_and_counts_them(researcher_key, make_client, caplog, live_server):
    port = free_port()
    client = make_client(f"http://127.0.0.1:{port}", researcher_key, buffer_max_records=3)
    with caplog.at_level(logging.WARNING, logger="costmonitor.sdk"):
        for i in range(5):
            client.log_api_call(operation_name=f"call-{i}", cost_usd=0.001)
    assert client.pending_records == 3
    assert client.dropped_records == 2
    assert "full" in caplog.text and "dropped" in caplog.text
    assert [e.body["operation_name"] for e in client.outbox.peek()] == ["call-2", "call-3", "call-4"]


def test_outbox_keeps_each_servers_records_apart(tmp_path):
    path = tmp_path / "shared.sqlite3"
    ours = Outbox(path, target="ours")
    theirs = Outbox(path, target="theirs")
    ours.add(method="POST", path="/costs/track", body={"cost": 1}, idempotency_key="k1")
    theirs.add(method="POST", path="/costs/track", body={"cost": 2}, idempotency_key="k1")
    assert ours.pending() == 1 and theirs.pending() == 1
    assert ours.peek()[0].body == {"cost": 1}
    assert path.stat().st_mode & 0o777 == 0o600


def test_an_unwritable_outbox_never_breaks_the_pipeline(researcher_key, make_client, tmp_path, caplog):
    (tmp_path / "not-a-dir").write_text("")
    client = make_client(f"http://127.0.0.1:{free_port()}", researcher_key,
                         buffer_path=tmp_path / "not-a-dir" / "outbox.sqlite3")
    with caplog.at_level(logging.ERROR, logger="costmonitor.sdk"):
        with client.track_api_call("step", model_name="gpt-4o-mini") as tracker:
            tracker.set_cost(0.01)
    assert tracker.result["lost"] is True
    assert client.lost_records == 1
    assert "LOST" in caplog.text


def test_a_resend_whose_key_was_already_used_counts_as_delivered(live_server, researcher_key, make_client):
    client = make_client(live_server.url, researcher_key)
    client.track_cost({"operation_name": "first", "cost_usd": 0.01}, idempotency_key="sdk-used-key")
    client.outbox.add(method="POST", path="/costs/track", body={"operation_name": "first", "cost_usd": 0.02},
                      idempotency_key="sdk-used-key")
    assert client.flush() is True
    assert UsageRecord.objects.count() == 1
    assert client.outbox.rejected == 0


def test_a_waiting_result_for_a_breaker_deleted_meanwhile_does_not_block_the_records_behind_it(
        live_server, researcher_key, make_client):
    client = make_client(live_server.url, researcher_key)
    client.outbox.add(method="POST", path="/breakers/retired/operations/6f1c2a9e-0d4b-4a57-9a53-2f6f3c1d8e20/result",
                      body={"success": True, "actual_cost": 0.01}, idempotency_key="breaker-result-retired")
    client.outbox.add(method="POST", path="/costs/track", body={"operation_name": "behind", "cost_usd": 0.02},
                      idempotency_key="sdk-behind")
    assert client.flush() is True
    assert UsageRecord.objects.get().operation_name == "behind"
    assert client.outbox.rejected == 1


def test_records_wait_while_the_server_answers_404_for_every_path(live_server, researcher_key, make_client):
    client = make_client(live_server.url + "/not-the-api", researcher_key)  # a misconfigured base URL
    client.outbox.add(method="POST", path="/costs/track", body={"operation_name": "waits", "cost_usd": 0.02},
                      idempotency_key="sdk-waits")
    assert client.flush() is False
    assert client.pending_records == 1 and client.outbox.rejected == 0
