"""Shared fixtures: the personas (an admin, a researcher, an outsider on another team), API clients
with real API keys, and the `postgres` marker that must run, not skip, in CI."""

from __future__ import annotations

import importlib
import os

import pytest
from django.core.cache import cache
from django.db import connection
from rest_framework.test import APIClient

from budgets import accounts
from budgets.models import Team


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "browser" in item.keywords:
            item.add_marker(pytest.mark.django_db(transaction=True))


@pytest.fixture(autouse=True)
def _clear_cache():
    cache.clear()
    yield
    cache.clear()


_DATA_MIGRATIONS = [
    ("budgets.migrations.0002_roles_and_global_budgets", "create_roles_and_budgets"),
    ("alerts.migrations.0002_default_log_channel", "create_log_channel"),
]


def _uses_database(request) -> str | None:
    marker = request.node.get_closest_marker("django_db")
    names = set(request.fixturenames)
    if (marker and marker.kwargs.get("transaction")) or names & {"transactional_db", "live_server"}:
        return "transactional_db"
    if marker or "db" in names:
        return "db"
    return None


@pytest.fixture(autouse=True)
def _migration_defaults(request):
    """A transactional test ends with a flush that also wipes what data migrations created (the
    roles, the organisation budgets, the log channel); put them back before the next test."""
    fixture = _uses_database(request)
    if fixture is None:
        return
    request.getfixturevalue(fixture)
    from django.apps import apps
    from django.contrib.auth.models import Group

    if not Group.objects.filter(name="admin").exists():
        for module, function in _DATA_MIGRATIONS:
            getattr(importlib.import_module(module), function)(apps, None)


@pytest.fixture(autouse=True)
def _require_postgres(request):
    if request.node.get_closest_marker("postgres") is None:
        return
    if connection.vendor == "postgresql":
        return
    if os.environ.get("REQUIRE_POSTGRES") == "1":
        pytest.fail("This test needs PostgreSQL (DATABASE_URL), and CI requires it to run.")
    pytest.skip("needs PostgreSQL: set DATABASE_URL=postgres://…")


@pytest.fixture
def team(db):
    return Team.objects.create(name="Metabolomics")


@pytest.fixture
def other_team(db):
    return Team.objects.create(name="Proteomics")


@pytest.fixture
def admin_user(db, team):
    return accounts.user_provision(username="alice", role="admin", team_name=team.name, password="pw-alice-123")


@pytest.fixture
def researcher(db, team):
    return accounts.user_provision(username="rita", role="researcher", team_name=team.name, password="pw-rita-123")


@pytest.fixture
def outsider(db, other_team):
    return accounts.user_provision(username="otto", role="researcher", team_name=other_team.name,
                                   password="pw-otto-123")


def client_for(user) -> APIClient:
    """An API client that authenticates like a pipeline: with a real API key of the user."""
    _, raw_key = accounts.api_key_create(user=user, name="test key")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_key}")
    client.raw_key = raw_key
    return client


@pytest.fixture
def admin_client(admin_user):
    return client_for(admin_user)


@pytest.fixture
def researcher_client(researcher):
    return client_for(researcher)


@pytest.fixture
def outsider_client(outsider):
    return client_for(outsider)


@pytest.fixture
def anon_client():
    return APIClient()
