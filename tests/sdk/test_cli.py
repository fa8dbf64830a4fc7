"""`lightrag-budget` against a live server: each command's output and exit code, and the stored config."""

from __future__ import annotations

import json
import stat
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from budgets.models import Budget
from budgets.services import global_budget
from costmonitor import cli
from tracking.models import UsageRecord

from .conftest import free_port

pytestmark = pytest.mark.django_db(transaction=True)

OPENAI_KEY = "sk-proj-Zx81aQ3vT0pLk9mN2bV7cX4zR6wY1uE5iO8pA3sD"


@pytest.fixture
def as_user(live_server, monkeypatch):
    """Point the CLI at the live server with a given key (through the environment)."""

    def use(raw_key: str) -> None:
        monkeypatch.setenv("COSTMONITOR_URL", live_server.url)
        monkeypatch.setenv("COSTMONITOR_API_KEY", raw_key)

    return use


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# --- config -------------------------------------------------------------------------------------

def test_config_stores_api_keys_encrypted_in_private_files_and_shows_them_masked(capsys, tmp_path, researcher_key):
    code, out, _ = run(capsys, "config", "set", "COSTMONITOR_API_KEY", researcher_key)
    assert code == 0 and "(encrypted)" in out and researcher_key not in out
    assert run(capsys, "config", "set", "OPENAI_API_KEY", OPENAI_KEY)[0] == 0
    assert run(capsys, "config", "set", "COSTMONITOR_URL", "http://127.0.0.1:8000/")[0] == 0
    assert run(capsys, "config", "set", "DAILY_BUDGET_LIMIT", "50.0")[0] == 0

    config_dir = tmp_path / "config"
    config_file, key_file = config_dir / "config.json", config_dir / "secret.key"
    assert stat.S_IMODE(config_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    stored = config_file.read_text()
    assert researcher_key not in stored and OPENAI_KEY not in stored
    assert json.loads(stored)["COSTMONITOR_URL"] == "http://127.0.0.1:8000"

    code, out, _ = run(capsys, "config", "show")
    assert code == 0
    assert OPENAI_KEY not in out and researcher_key not in out
    assert cli.mask(OPENAI_KEY) in out and OPENAI_KEY[-4:] in out
    assert "DAILY_BUDGET_LIMIT" in out and "50.0" in out
    assert "encrypted" in out

    code, out, _ = run(capsys, "config", "get", "OPENAI_API_KEY", "--reveal")
    assert code == 0 and out.strip() == OPENAI_KEY


def test_config_refuses_unknown_settings_and_bad_values(capsys):
    code, _, err = run(capsys, "config", "set", "DAILY_BUDGET", "50")
    assert code == 2 and "unknown setting" in err
    code, _, err = run(capsys, "config", "set", "DAILY_BUDGET_LIMIT", "lots")
    assert code == 2 and "number of US dollars" in err
    code, _, err = run(capsys, "config", "set", "COSTMONITOR_URL", "localhost:8000")
    assert code == 2 and "http://" in err


def test_every_command_has_help(capsys):
    for argv in (["--help"], ["status", "--help"], ["overview", "--help"], ["report", "--help"],
                 ["set-budget", "--help"], ["config", "--help"], ["config", "set", "--help"],
                 ["config", "show", "--help"], ["check", "--help"], ["outbox", "--help"]):
        with pytest.raises(SystemExit) as exited:
            cli.main(argv)
        assert exited.value.code == 0
        assert "usage: lightrag-budget" in capsys.readouterr().out


# --- budgets --------------------------------------------------------------------------------------

def test_admin_sets_the_budget(capsys, as_user, admin_key):
    as_user(admin_key)
    code, out, _ = run(capsys, "set-budget", "--daily", "75.0", "--monthly", "1500.0")
    assert code == 0, out
    assert "daily $75.00" in out and "monthly $1,500.00" in out
    assert global_budget("daily").limit_usd == Decimal("75")
    assert global_budget("monthly").limit_usd == Decimal("1500")


def test_set_budget_takes_the_configured_default(capsys, as_user, admin_key):
    as_user(admin_key)
    run(capsys, "config", "set", "DAILY_BUDGET_LIMIT", "60")
    code, out, _ = run(capsys, "set-budget")
    assert code == 0 and "daily $60.00" in out
    assert global_budget("daily").limit_usd == Decimal("60")


def test_researcher_cannot_set_the_budget(capsys, as_user, researcher_key):
    as_user(researcher_key)
    code, _, err = run(capsys, "set-budget", "--daily", "1000000")
    assert code == 5
    assert "permission denied" in err
    assert global_budget("daily").limit_usd == Decimal("50")


def test_bad_budget_input_is_refused_before_calling_the_server(capsys, as_user, admin_key):
    as_user(admin_key)
    code, _, err = run(capsys, "set-budget", "--daily", "-3")
    assert code == 2 and "non-negative" in err
    code, _, err = run(capsys, "set-budget")
    assert code == 2 and "--daily" in err


def test_bad_key_exits_4(capsys, as_user):
    as_user("cm_this-key-does-not-exist")
    code, _, err = run(capsys, "check", "--cost", "1")
    assert code == 4
    assert "authentication failed" in err and "COSTMONITOR_API_KEY" in err


def test_no_key_exits_4(capsys, live_server, monkeypatch):
    monkeypatch.setenv("COSTMONITOR_URL", live_server.url)
    code, _, err = run(capsys, "check", "--cost", "1")
    assert code == 4 and "No API key" in err


def test_unreachable_server_exits_3(capsys, researcher_key, monkeypatch):
    monkeypatch.setenv("COSTMONITOR_API_KEY", researcher_key)
    code, _, err = run(capsys, "--url", f"http://127.0.0.1:{free_port()}", "status")
    assert code == 3
    assert "cannot reach" in err


def test_check_exits_6_when_the_budget_would_be_exceeded(capsys, as_user, researcher_key, team):
    as_user(researcher_key)
    code, out, _ = run(capsys, "check", "--cost", "1.5", "--category", "pathway_analysis")
    assert code == 0 and "Operation allowed" in out
    Budget.objects.create(name="Pilot", scope=Budget.Scope.TEAM, team=team, limit_usd=Decimal("1"))
    code, _, err = run(capsys, "check", "--cost", "1.5")
    assert code == 6 and "budget exceeded" in err and "Pilot" in err


def test_status_table(capsys, as_user, researcher_key, monitor):
    monitor.log_api_call(operation_name="x", cost_usd=12.5)
    as_user(researcher_key)
    code, out, err = run(capsys, "status")
    assert code == 0, err
    assert "Budget status" in out
    assert "$12.50" in out


def test_overview_json_and_table(capsys, as_user, researcher_key, monitor):
    monitor.log_api_call(operation_name="x", model_name="gpt-4o-mini", cost_usd=3.25)
    as_user(researcher_key)
    code, out, err = run(capsys, "overview", "--format", "json")
    assert code == 0, err
    overview = json.loads(out)
    assert overview["metrics"]["daily_cost"] == 3.25
    code, out, err = run(capsys, "overview")
    assert code == 0, err
    assert "Dashboard overview" in out and "$3.25" in out


def test_report_json_and_csv(capsys, as_user, researcher_key, monitor, tmp_path):
    monitor.log_api_call(operation_name="x", model_name="gpt-4o-mini", cost_usd=2.0,
                         research_category="metabolite_identification")
    as_user(researcher_key)
    today = datetime.now(UTC).date()
    start, end = (today - timedelta(days=5)).isoformat(), (today + timedelta(days=1)).isoformat()
    code, out, err = run(capsys, "report", "--start", start, "--end", end)
    assert code == 0, err
    report = json.loads(out)
    assert "cost_report" in report or "summary" in report
    code, out, err = run(capsys, "report", "--start", start, "--end", end, "--format", "csv")
    assert code == 0, err
    assert "," in out.splitlines()[0]
    assert "gpt-4o-mini" in out or "metabolite_identification" in out


def test_report_refuses_a_backwards_range(capsys, as_user, researcher_key):
    as_user(researcher_key)
    code, _, err = run(capsys, "report", "--start", "2026-08-06", "--end", "2026-08-01")
    assert code == 2 and "after --end" in err
    with pytest.raises(SystemExit) as exited:
        cli.main(["report", "--start", "yesterday", "--end", "2026-08-01"])
    assert exited.value.code == 2


def test_outbox_command_flushes_waiting_records(capsys, as_user, researcher_key, live_server, make_client):
    offline = make_client(f"http://127.0.0.1:{free_port()}", researcher_key)
    as_user(researcher_key)
    # Records kept for *this* server and key are the ones the command sends.
    queued = make_client(live_server.url, researcher_key)
    queued.outbox.add(method="POST", path="/costs/track", body={"operation_name": "kept", "cost_usd": 0.01},
                      idempotency_key="cli-outbox-1")
    assert offline.pending_records == 0
    code, out, err = run(capsys, "outbox", "--flush")
    assert code == 0, err
    assert "Waiting records: 0" in out
    assert UsageRecord.objects.filter(operation_name="kept").count() == 1
