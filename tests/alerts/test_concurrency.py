"""Exactly once under real concurrency (PostgreSQL): many recorders, racing workers, a real qcluster."""

import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path

import pytest
from django.db import connection, connections

from alerts import tasks
from alerts.models import AlertDelivery, BudgetAlert
from alerts.services import system_alert_raise
from tests.counters import counter_total

from .conftest import record, team_budget, webhook_channel

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]


def in_own_connection(function, *args):
    try:
        return function(*args)
    finally:
        connections.close_all()


def test_200_concurrent_records_crossing_75_90_100_give_three_alerts_and_three_deliveries_per_channel(
        researcher, team, http_peer):
    budget = team_budget(team, limit="10")
    webhook = webhook_channel(http_peer)
    with ThreadPoolExecutor(max_workers=16) as pool:  # 200 records of $0.05: exactly $10.00
        list(pool.map(lambda _: in_own_connection(record, researcher, "0.05"), range(200)))
    alerts = BudgetAlert.objects.filter(budget=budget, alert_type="threshold")
    assert sorted(alerts.values_list("alert_level", flat=True)) == ["critical", "exceeded", "warning"]
    for channel_name in ("logging", webhook.name):
        assert AlertDelivery.objects.filter(alert__in=alerts, channel__name=channel_name).count() == 3
    assert counter_total(budget).spent == Decimal("10.00")
    for delivery in AlertDelivery.objects.filter(alert__in=alerts, channel=webhook):
        tasks.deliver(delivery.pk)
    assert sorted(r.json["alert"]["alert_level"] for r in http_peer.received) == ["critical", "exceeded", "warning"]


def test_racing_workers_send_a_delivery_exactly_once(http_peer):
    webhook = webhook_channel(http_peer)
    alert = system_alert_raise(alert_type="manual", level="warning", message="race", dedupe_key="race:1")
    delivery = AlertDelivery.objects.get(alert=alert, channel=webhook)
    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = list(pool.map(lambda _: in_own_connection(tasks.deliver, delivery.pk), range(8)))
    assert outcomes.count("sent") == 1 and outcomes.count("skipped") == 7
    assert len(http_peer.received) == 1


def test_concurrent_monitor_cycles_create_each_alert_once(researcher, team):
    from alerts.services import monitor_cycle_run

    budget = team_budget(team, limit="10")
    record(researcher, "9.50")
    BudgetAlert.objects.all().delete()  # as if the inline path had been lost
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda _: in_own_connection(monitor_cycle_run), range(4)))
    levels = list(BudgetAlert.objects.filter(budget=budget, alert_type="threshold").values_list("alert_level",
                                                                                                 flat=True))
    assert sorted(levels) == ["critical", "warning"]


def test_a_real_qcluster_delivers_a_queued_alert(http_peer):
    webhook_channel(http_peer)
    alert = system_alert_raise(alert_type="manual", level="critical", message="from the queue",
                               dedupe_key="qcluster:1")  # autocommit: queued to the ORM broker right away
    settings_dict = connection.settings_dict
    database_url = (f"postgres://{settings_dict['USER']}:{settings_dict['PASSWORD'] or ''}@{settings_dict['HOST']}:"
                    f"{settings_dict['PORT'] or 5432}/{settings_dict['NAME']}")
    env = {**os.environ, "DATABASE_URL": database_url, "DJANGO_SETTINGS_MODULE": "tests.settings",
           "Q_WORKERS": "1", "Q_SYNC": "false", "REDIS_URL": "", "CACHE_URL": "",
           "DEBUG": "true"}  # DEBUG: the embedded per-process cache is fine for this one worker
    worker = subprocess.Popen([sys.executable, "manage.py", "qcluster"], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        while not http_peer.received and time.monotonic() < deadline and worker.poll() is None:
            time.sleep(0.2)
        assert http_peer.received, "the worker never delivered: " + (
            worker.stdout.read().decode(errors="replace") if worker.poll() is not None else "still running")
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
    body = http_peer.received[0].json
    assert body["alert"]["message"] == "from the queue" and body["alert"]["alert_id"] == alert.pk
    delivery = AlertDelivery.objects.get(alert=alert, channel__kind="webhook")
    assert delivery.status == "sent" and body["event_id"] == str(delivery.event_id)
