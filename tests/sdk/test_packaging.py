"""The SDK is importable on a pipeline host without Django, and the console script is installed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import costmonitor

REPO = Path(costmonitor.__file__).resolve().parent.parent


def _env_without_django() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "COSTMONITOR_"))}
    env["PYTHONPATH"] = str(REPO)
    return env


def test_sdk_imports_without_django_or_settings():
    code = ("import sys, costmonitor, costmonitor.sdk\n"
            "from costmonitor import CostMonitorClient, BudgetExceededException\n"
            "from costmonitor.sdk import BudgetManagementFactory, APIUsageMetricsLogger\n"
            "heavy = ('django', 'rest_framework', 'cryptography')\n"
            "loaded = sorted(m for m in sys.modules if m.split('.')[0] in heavy)\n"
            "assert not loaded, loaded\n"
            "print('ok')\n")
    result = subprocess.run([sys.executable, "-c", code], env=_env_without_django(), cwd="/",
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_console_script_help():
    script = Path(sys.executable).with_name("lightrag-budget")
    result = subprocess.run([str(script), "--help"], env=_env_without_django(), capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    for command in ("status", "overview", "report", "set-budget", "config"):
        assert command in result.stdout
