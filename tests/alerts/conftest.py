"""Real peers for alert tests: an aiosmtpd SMTP server and a threaded HTTP server on 127.0.0.1,
both started by the test and able to answer what the test asks (451/550, 500/429, slow)."""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from aiosmtpd.controller import Controller
from django.utils import timezone

from alerts import tasks
from alerts.models import AlertChannel, AlertDelivery
from alerts.services import channel_save
from budgets.models import Budget


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- SMTP -----------------------------------------------------------------------------------------

class RecordingSMTPHandler:
    """Accepts mail into `messages`; `replies` queues answers to DATA ("451 …", "550 …") for the next sends."""

    def __init__(self):
        self.messages: list[dict] = []
        self.replies: list[str] = []
        self.data_commands = 0

    async def handle_DATA(self, server, session, envelope):
        self.data_commands += 1
        if self.replies:
            return self.replies.pop(0)
        self.messages.append({"from": envelope.mail_from, "to": list(envelope.rcpt_tos),
                              "data": envelope.content.decode("utf8", errors="replace")})
        return "250 2.0.0 Message accepted for delivery"


@dataclass
class SMTPPeer:
    host: str
    port: int
    handler: RecordingSMTPHandler


@pytest.fixture
def smtp_peer():
    handler = RecordingSMTPHandler()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    yield SMTPPeer("127.0.0.1", port, handler)
    controller.stop()


# --- HTTP -----------------------------------------------------------------------------------------

@dataclass
class Reply:
    status: int = 200
    body: bytes = b"ok"
    headers: dict = field(default_factory=dict)
    delay: float = 0.0


@dataclass
class Received:
    path: str
    headers: dict
    body: bytes

    @property
    def json(self):
        return json.loads(self.body)


class HTTPPeer:
    """Records every POST; answers from `replies` (a queue) and then with `default`."""

    def __init__(self):
        self.received: list[Received] = []
        self.replies: list[Reply] = []
        self.default = Reply()
        self.lock = threading.Lock()
        peer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with peer.lock:
                    peer.received.append(Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                    reply = peer.replies.pop(0) if peer.replies else peer.default
                if reply.delay:
                    time.sleep(reply.delay)
                try:
                    self.send_response(reply.status)
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(reply.body)))
                    self.end_headers()
                    self.wfile.write(reply.body)
                except OSError:  # the client gave up (timeout test)
                    pass

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def http_peer():
    peer = HTTPPeer()
    yield peer
    peer.stop()


@pytest.fixture
def refused_port() -> int:
    """A port on 127.0.0.1 where nothing listens: connections are refused."""
    return free_port()


# --- Data -----------------------------------------------------------------------------------------

@pytest.fixture(autouse=True)
def alert_defaults(db):
    """The organisation budgets and the log channel (migrations create them; a transactional test
    elsewhere may have flushed them). Organisation limits are set high so tests choose what crosses."""
    for period in ("daily", "monthly"):
        Budget.objects.update_or_create(is_global_default=True, period=period,
                                        defaults={"name": f"Organisation {period}", "limit_usd": Decimal("1000000"),
                                                  "scope": Budget.Scope.ORGANIZATION})
    AlertChannel.objects.get_or_create(name="logging", defaults={"kind": "log", "config": {"log_level": ""}})


def make_channel(name: str, kind: str, config: dict, **data) -> AlertChannel:
    return channel_save(channel=None, actor=None, data={"name": name, "kind": kind, "config": config, **data})


def email_channel(smtp: SMTPPeer, name="email", recipients=("pi@lab.example", "finance@lab.example"), **data):
    return make_channel(name, "email", {"smtp_server": smtp.host, "smtp_port": smtp.port, "use_tls": False,
                                        "sender_email": "alerts@lab.example",
                                        "recipient_emails": list(recipients)}, **data)


def slack_channel(peer: HTTPPeer, name="slack", **data):
    return make_channel(name, "slack", {"webhook_url": peer.url("/services/T000/B000/XXX"),
                                        "channel": "#budget-alerts"}, **data)


def webhook_channel(peer: HTTPPeer, name="webhook", secret="s3cret-signing-key", **data):
    config = {"url": peer.url("/costmonitor-events")}
    if secret:
        config["secret"] = secret
    return make_channel(name, "webhook", config, **data)


def team_budget(team, limit="10", period="daily", **fields) -> Budget:
    """A team budget that has existed for two months (so it counts backdated records too)."""
    budget = Budget.objects.create(name=f"{team.name} {period}", scope=Budget.Scope.TEAM, team=team, period=period,
                                   limit_usd=Decimal(limit), **fields)
    Budget.objects.filter(pk=budget.pk).update(created_at=timezone.now() - timedelta(days=60))
    budget.refresh_from_db()
    return budget


def deliver_due() -> list[str]:
    """Run the delivery task for every due delivery, as workers would (one task each)."""
    due = AlertDelivery.objects.filter(status=AlertDelivery.Status.PENDING, next_attempt_at__lte=timezone.now())
    return [tasks.deliver(pk) for pk in due.order_by("id").values_list("pk", flat=True)]


def record(user, cost, **fields):
    """Record one cost through the ledger's real service (as the track endpoint does)."""
    from tracking.events import parse_event
    from tracking.services import usage_record

    return usage_record(user=user, event=parse_event({"cost_usd": cost, **fields}))
