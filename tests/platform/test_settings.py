"""Settings from the environment, checked in fresh processes with a clean environment (no `.env`)."""

import json
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

from django.core.checks import run_checks

BASE_DIR = Path(__file__).resolve().parents[2]
PRINT_SETTINGS = """
import json, django
django.setup()
from django.conf import settings
print(json.dumps({
    "database": {k: settings.DATABASES["default"].get(k) for k in ("ENGINE", "NAME", "CONN_MAX_AGE",
                                                                  "CONN_HEALTH_CHECKS", "OPTIONS")},
    "cache": settings.CACHES["default"],
    "q_cluster": {k: settings.Q_CLUSTER.get(k) for k in ("orm", "redis", "retry", "timeout")},
    "rate_limits": settings.RATE_LIMITS,
    "budget_timezone": settings.BUDGET_TIMEZONE,
}, default=str))
"""


def run_in_clean_env(*args: str, **environment: str) -> subprocess.CompletedProcess:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "DJANGO_SETTINGS_MODULE": "costmonitor.settings",
           "ENV_FILE": str(BASE_DIR / "tests" / "no-such.env"), **environment}
    return subprocess.run([sys.executable, *args], cwd=BASE_DIR, env=env, capture_output=True, text=True,
                          timeout=120)


def settings_in_clean_env(**environment: str) -> dict:
    result = run_in_clean_env("-c", PRINT_SETTINGS, **environment)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def production_env(**overrides: str) -> dict:
    return {"DEBUG": "false", "SECRET_KEY": secrets.token_urlsafe(64), "ALLOWED_HOSTS": "example.org",
            "CACHE_URL": "redis://127.0.0.1:6379/1", **overrides}


def test_start_up_refuses_a_missing_secret_key_with_debug_off():
    result = run_in_clean_env("manage.py", "check", DEBUG="false")
    assert result.returncode != 0
    assert "ImproperlyConfigured: SECRET_KEY is not set" in result.stderr


def test_debug_runs_without_a_secret_key():
    assert run_in_clean_env("manage.py", "check", DEBUG="true").returncode == 0


def test_deploy_check_passes_with_production_settings():
    result = run_in_clean_env("manage.py", "check", "--deploy", "--fail-level", "WARNING", **production_env())
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_per_process_cache_is_refused_outside_debug():
    env = production_env()
    del env["CACHE_URL"]
    result = run_in_clean_env("manage.py", "check", **env)
    assert result.returncode != 0
    assert "costmonitor.E001" in result.stderr


def test_per_process_cache_check_in_process(settings):
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    settings.DEBUG = False
    assert "costmonitor.E001" in [message.id for message in run_checks()]
    settings.DEBUG = True
    assert "costmonitor.E001" not in [message.id for message in run_checks()]


def test_default_database_is_a_sqlite_file_with_persistent_checked_connections():
    found = settings_in_clean_env(DEBUG="true")
    database = found["database"]
    assert database["ENGINE"] == "django.db.backends.sqlite3"
    assert database["NAME"].endswith("db.sqlite3")
    assert database["CONN_MAX_AGE"] and database["CONN_MAX_AGE"] > 0
    assert database["CONN_HEALTH_CHECKS"] is False  # a round trip per request; CONN_HEALTH_CHECKS=true turns it on
    assert found["q_cluster"]["orm"] == "default" and found["q_cluster"]["redis"] is None
    assert found["q_cluster"]["retry"] > found["q_cluster"]["timeout"]
    assert found["budget_timezone"] == "UTC"


def test_database_url_selects_postgresql_with_persistent_prepared_connections():
    found = settings_in_clean_env(DEBUG="true", DATABASE_URL="postgres://cm:pw@db.internal:5432/costmonitor")
    database = found["database"]
    assert database["ENGINE"] == "django.db.backends.postgresql"
    assert database["NAME"] == "costmonitor"
    assert database["CONN_MAX_AGE"] > 0 and database["CONN_HEALTH_CHECKS"] is False
    assert database["OPTIONS"]["prepare_threshold"] == 1
    found = settings_in_clean_env(DEBUG="true", DATABASE_URL="postgres://cm:pw@db.internal:5432/costmonitor",
                                  CONN_HEALTH_CHECKS="true", DATABASE_PREPARED_STATEMENTS="false")
    assert found["database"]["CONN_HEALTH_CHECKS"] is True
    assert "prepare_threshold" not in found["database"]["OPTIONS"]


def test_redis_url_moves_the_queue_and_the_cache_to_redis():
    found = settings_in_clean_env(DEBUG="true", REDIS_URL="redis://127.0.0.1:6379/3")
    assert found["q_cluster"]["redis"] == "redis://127.0.0.1:6379/3"
    assert found["q_cluster"]["orm"] is None
    assert found["cache"]["BACKEND"] == "costmonitor.cache.ReusingRedisCache"
    assert found["cache"]["LOCATION"] == "redis://127.0.0.1:6379/3"


def test_cache_url_selects_the_cache():
    found = settings_in_clean_env(DEBUG="true", CACHE_URL="dbcache://costmonitor_cache")
    assert found["cache"]["BACKEND"] == "django.core.cache.backends.db.DatabaseCache"


def test_rate_limits_come_from_the_environment():
    found = settings_in_clean_env(DEBUG="true", RATE_LIMIT_DASHBOARD="5/min", RATE_LIMIT_BUDGET_CHECKS="none",
                                  RATE_LIMIT_ALERTS="2/s", RATE_LIMIT_TRACKING="100/min")
    assert found["rate_limits"]["dashboard"] == "5/min"
    assert found["rate_limits"]["budget_checks"] == "none"
    assert found["rate_limits"]["alerts"] == "2/s"
    assert found["rate_limits"]["tracking"] == "100/min"


def test_env_file_is_read_when_present(tmp_path):
    env_file = tmp_path / "costmonitor.env"
    env_file.write_text("DEBUG=true\nBUDGET_TIMEZONE=Europe/Berlin\n")
    found = settings_in_clean_env(ENV_FILE=str(env_file))
    assert found["budget_timezone"] == "Europe/Berlin"


def test_readme_documents_every_environment_variable_the_settings_read():
    settings_source = (BASE_DIR / "costmonitor" / "settings.py").read_text()
    variables = set(re.findall(r'env(?:\.\w+)?\(\s*"([A-Z][A-Z0-9_]+)"', settings_source))
    assert {"DATABASE_URL", "SECRET_KEY", "REDIS_URL", "RATE_LIMIT_DASHBOARD"} <= variables
    readme = (BASE_DIR / "README.md").read_text()
    assert sorted(name for name in variables if f"`{name}`" not in readme) == []
