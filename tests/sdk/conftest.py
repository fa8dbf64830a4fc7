"""Fixtures for the SDK and CLI tests: a live server on the real database, real API keys, and a
server that can be stopped and started again on the same port (the outage case).

Transactional tests flush the database after each test, which also removes what the data
migration made (the role groups and the organisation budgets); `_roles_and_budgets` puts them back.
"""

from __future__ import annotations

import importlib
import socket

import pytest
from django.apps import apps as django_apps
from django.core.servers.basehttp import ThreadedWSGIServer
from django.test.testcases import LiveServerThread, QuietWSGIRequestHandler, _StaticFilesHandler

from budgets import accounts
from costmonitor.sdk import CostMonitorClient


@pytest.fixture(autouse=True)
def _roles_and_budgets(request):
    marker = request.node.get_closest_marker("django_db")
    transactional = marker is not None and (marker.kwargs.get("transaction") or "transactional_db" in marker.args)
    if not transactional and "live_server" not in request.fixturenames:
        yield
        return
    request.getfixturevalue("transactional_db")
    migration = importlib.import_module("budgets.migrations.0002_roles_and_global_budgets")
    migration.create_roles_and_budgets(django_apps, None)
    yield


@pytest.fixture(autouse=True)
def _sdk_environment(monkeypatch, tmp_path):
    """No developer settings leak in: the config dir and outbox live in the test's tmp dir."""
    for name in ("COSTMONITOR_URL", "COSTMONITOR_API_KEY", "COSTMONITOR_TIMEOUT", "COSTMONITOR_FAIL_OPEN",
                 "COSTMONITOR_CONNECT_TIMEOUT", "COSTMONITOR_BUFFER_MAX_RECORDS", "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("COSTMONITOR_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("COSTMONITOR_BUFFER_PATH", str(tmp_path / "outbox.sqlite3"))


def raw_key_for(user, name: str = "pipeline") -> str:
    return accounts.api_key_create(user=user, name=name)[1]


@pytest.fixture
def researcher_key(researcher):
    return raw_key_for(researcher)


@pytest.fixture
def admin_key(admin_user):
    return raw_key_for(admin_user)


@pytest.fixture
def make_client(tmp_path):
    """Clients against a URL with a key; background flushing off unless asked (tests flush explicitly)."""
    made: list[CostMonitorClient] = []

    def make(url: str, key: str, **options) -> CostMonitorClient:
        options.setdefault("background_flush", False)
        options.setdefault("buffer_path", tmp_path / "outbox.sqlite3")
        client = CostMonitorClient(url, key, **options)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close(flush_timeout=0)


@pytest.fixture
def monitor(live_server, researcher_key, make_client):
    return make_client(live_server.url, researcher_key)


@pytest.fixture
def admin_monitor(live_server, admin_key, make_client):
    return make_client(live_server.url, admin_key)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class _DroppingServer(ThreadedWSGIServer):
    """Remembers its open connections so that stopping also cuts kept-alive ones, as a crash would."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.open_connections: set[socket.socket] = set()

    def process_request(self, request, client_address):
        self.open_connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request):
        self.open_connections.discard(request)
        super().shutdown_request(request)

    def drop_connections(self) -> None:
        for connection in list(self.open_connections):
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _RestartableThread(LiveServerThread):
    server_class = _DroppingServer

    def _create_server(self, connections_override=None):
        # Reuse the address: the same port must be bindable again right after a stop.
        return self.server_class((self.host, self.port), QuietWSGIRequestHandler, allow_reuse_address=True,
                                 connections_override=connections_override)


class RestartableServer:
    """Our WSGI app on a real socket that a test can stop (dropping every connection) and start
    again on the same port."""

    def __init__(self):
        self.port = 0
        self.thread: _RestartableThread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        thread = _RestartableThread("127.0.0.1", _StaticFilesHandler, port=self.port)
        thread.daemon = True
        thread.start()
        thread.is_ready.wait()
        if thread.error:
            raise thread.error
        self.port = thread.port
        self.thread = thread

    def stop(self) -> None:
        if self.thread is not None:
            httpd = getattr(self.thread, "httpd", None)
            self.thread.terminate()
            if httpd is not None:
                httpd.drop_connections()
            self.thread = None


@pytest.fixture
def restartable_server(transactional_db):
    server = RestartableServer()
    server.start()
    yield server
    server.stop()
