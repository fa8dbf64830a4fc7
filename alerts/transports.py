"""Channel transports: a registry maps each channel kind to a class whose notify() sends one alert.

notify() returns a SendResult (what the peer answered) or raises TransportError, which says whether
the failure is permanent (SMTP 5xx, HTTP 4xx other than 429, a refused destination: retrying will
not help) or temporary (SMTP 4xx, HTTP 5xx, 429 with its Retry-After, timeouts, refused connections).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import smtplib
import time
from dataclasses import dataclass, field
from email.utils import make_msgid

from django.conf import settings
from django.core.mail import EmailMessage, get_connection
from django.core.mail.backends.smtp import EmailBackend as SMTPEmailBackend

from .http import HttpAnswer, UnsafeDestination, post_json, retry_after_seconds
from .models import AlertChannel, BudgetAlert

logger = logging.getLogger("costmonitor.alerts")

LOG_LEVEL_FOR_ALERT = {"info": "INFO", "warning": "WARNING", "critical": "ERROR", "exceeded": "CRITICAL"}


@dataclass
class SendResult:
    http_status: int | None = None
    smtp_reply: str = ""
    message_id: str = ""
    info: dict = field(default_factory=dict)  # recipients / channel + message_ts / log_level


class TransportError(Exception):
    def __init__(self, message: str, *, permanent: bool, http_status: int | None = None, smtp_reply: str = "",
                 retry_after: float | None = None):
        super().__init__(message)
        self.message = message
        self.permanent = permanent
        self.http_status = http_status
        self.smtp_reply = smtp_reply
        self.retry_after = retry_after


def send_timeout() -> float:
    return float(settings.ALERT_SEND_TIMEOUT_SECONDS)


# --- What an alert says -----------------------------------------------------------------------

def _money(value) -> str:
    return "—" if value is None else f"${value:,.2f}"


def _pct(value) -> str:
    return f"{value.normalize():f}%" if hasattr(value, "normalize") else f"{value:g}%"


def alert_payload(alert: BudgetAlert) -> dict:
    """What a webhook receives about an alert: the API's alert fields, keyed by `alert_id`."""
    from .selectors import alert_dict

    payload = alert_dict(alert)
    payload["alert_id"] = payload.pop("id")
    return payload


def alert_subject(alert: BudgetAlert) -> str:
    return f"[CostMonitor {alert.alert_level.upper()}] {alert.message}"[:200]


def alert_text(alert: BudgetAlert) -> str:
    lines = [alert.message, "", f"Level:      {alert.alert_level.upper()} ({alert.get_alert_type_display()})"]
    if alert.budget_id:
        lines.append(f"Budget:     {alert.budget.name}")
    if alert.team_id:
        lines.append(f"Team:       {alert.team.name}")
    if alert.period_type or alert.period_key:
        lines.append(f"Period:     {alert.period_type} {alert.period_key}".rstrip())
    if alert.budget_limit is not None:
        used = f" ({_pct(alert.percentage_used)})" if alert.percentage_used is not None else ""
        lines.append(f"Spent:      {_money(alert.current_cost)} of {_money(alert.budget_limit)}{used}")
    elif alert.current_cost:
        lines.append(f"Spent:      {_money(alert.current_cost)}")
    if alert.threshold_percentage is not None:
        lines.append(f"Threshold:  {_pct(alert.threshold_percentage)}")
    lines.append(f"Time:       {alert.timestamp:%Y-%m-%d %H:%M:%S} UTC")
    return "\n".join(lines) + "\n"


# --- Transports -------------------------------------------------------------------------------

class Transport:
    success_message = "Test message sent"

    def __init__(self, channel: AlertChannel):
        self.channel = channel
        self.config = channel.config or {}
        self.secrets = channel.secrets or {}

    def notify(self, alert: BudgetAlert, *, event_id) -> SendResult:
        raise NotImplementedError


class ReplyCapturingSMTPBackend(SMTPEmailBackend):
    """Django's SMTP backend, remembering the server's reply to DATA (smtplib drops it on success)."""

    last_reply = ""

    def open(self):
        opened = super().open()
        if self.connection is not None and not getattr(self.connection, "_reply_captured", False):
            original_data = self.connection.data

            def data(msg):
                code, text = original_data(msg)
                self.last_reply = f"{code} {text.decode(errors='replace') if isinstance(text, bytes) else text}"
                return code, text

            self.connection.data = data
            self.connection._reply_captured = True
        return opened


def _smtp_error_text(exc: smtplib.SMTPResponseException) -> str:
    text = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
    return f"{exc.smtp_code} {text}"


class EmailTransport(Transport):
    success_message = "Test email sent successfully"

    def connection(self):
        if self.config.get("smtp_server"):
            return get_connection(
                "alerts.transports.ReplyCapturingSMTPBackend", fail_silently=False,
                host=self.config["smtp_server"], port=self.config.get("smtp_port") or 587,
                username=self.config.get("username") or None, password=self.secrets.get("password") or None,
                use_tls=bool(self.config.get("use_tls")), use_ssl=bool(self.config.get("use_ssl")),
                timeout=send_timeout())
        return get_connection(fail_silently=False)  # the site's EMAIL_URL settings

    def notify(self, alert: BudgetAlert, *, event_id) -> SendResult:
        sender = self.config.get("sender_email") or settings.DEFAULT_FROM_EMAIL
        recipients = list(self.config.get("recipient_emails") or [])
        domain = sender.rpartition("@")[2] or "costmonitor.local"
        message_id = make_msgid(idstring=str(event_id)[:8], domain=domain)
        connection = self.connection()
        message = EmailMessage(alert_subject(alert), alert_text(alert), from_email=sender, to=recipients,
                               connection=connection,
                               headers={"Message-ID": message_id, "X-CostMonitor-Event-Id": str(event_id)})
        try:
            message.send()
        except smtplib.SMTPRecipientsRefused as exc:
            replies = [f"{code} {text.decode(errors='replace') if isinstance(text, bytes) else text}"
                       for code, text in exc.recipients.values()]
            permanent = all(500 <= code < 600 for code, _ in exc.recipients.values())
            raise TransportError(f"All recipients refused: {'; '.join(replies)}", permanent=permanent,
                                 smtp_reply=replies[0] if replies else "") from exc
        except smtplib.SMTPResponseException as exc:
            reply = _smtp_error_text(exc)
            raise TransportError(f"SMTP error {reply}", permanent=500 <= exc.smtp_code < 600,
                                 smtp_reply=reply) from exc
        except (smtplib.SMTPException, OSError) as exc:
            raise TransportError(f"SMTP connection failed: {exc or type(exc).__name__}", permanent=False) from exc
        reply = getattr(connection, "last_reply", "") or ""
        return SendResult(smtp_reply=reply[:300], message_id=message_id, info={"recipients": recipients})


def _post(url: str, body: bytes, headers: dict | None = None) -> HttpAnswer:
    try:
        return post_json(url, body, headers=headers, timeout=send_timeout())
    except UnsafeDestination as exc:
        raise TransportError(str(exc), permanent=True) from exc
    except TimeoutError as exc:
        raise TransportError(f"Timed out after {send_timeout():g} s", permanent=False) from exc
    except ConnectionRefusedError as exc:
        raise TransportError("Connection refused", permanent=False) from exc
    except OSError as exc:  # DNS, TLS, resets: may well work next time
        raise TransportError(f"Connection failed: {exc}", permanent=False) from exc


def _raise_for_status(answer: HttpAnswer) -> None:
    status = answer.status
    if 200 <= status < 300:
        return
    snippet = answer.body[:200].decode(errors="replace").strip()
    message = f"HTTP {status}" + (f": {snippet}" if snippet else "")
    if status == 429:
        raise TransportError(message, permanent=False, http_status=status,
                             retry_after=retry_after_seconds(answer.headers.get("retry-after")))
    if status >= 500:
        raise TransportError(message, permanent=False, http_status=status,
                             retry_after=retry_after_seconds(answer.headers.get("retry-after")))
    # 3xx (redirects are not followed) and 4xx: the request itself is wrong; retrying will not help.
    raise TransportError(message, permanent=True, http_status=status)


class SlackTransport(Transport):
    success_message = "Test Slack message sent"
    emoji = {"info": ":information_source:", "warning": ":warning:", "critical": ":rotating_light:",
             "exceeded": ":no_entry:"}

    def notify(self, alert: BudgetAlert, *, event_id) -> SendResult:
        payload = {"text": f"{self.emoji.get(alert.alert_level, '')} *{alert.alert_level.upper()}* "
                           f"{alert.message}".strip(),
                   "attachments": [{"text": alert_text(alert)}]}
        if self.config.get("channel"):
            payload["channel"] = self.config["channel"]
        if self.config.get("username"):
            payload["username"] = self.config["username"]
        answer = _post(self.secrets.get("webhook_url", ""), json.dumps(payload).encode())
        _raise_for_status(answer)
        message_ts = None
        try:  # incoming webhooks answer "ok"; chat.postMessage-style peers answer {"ts": …}
            message_ts = json.loads(answer.body).get("ts")
        except (ValueError, AttributeError):
            pass
        return SendResult(http_status=answer.status, message_id=message_ts or "",
                          info={"channel": self.config.get("channel", ""), "message_ts": message_ts})


def webhook_signature(secret: str, raw_body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), raw_body, hashlib.sha256).hexdigest()


class WebhookTransport(Transport):
    success_message = "Test webhook delivered"

    def notify(self, alert: BudgetAlert, *, event_id) -> SendResult:
        sent_at = time.time()
        body = {"event_id": str(event_id), "event_type": f"alert.{alert.alert_type}", "sent_at": sent_at,
                "alert": alert_payload(alert)}
        raw = json.dumps(body, separators=(",", ":"), sort_keys=True).encode()
        headers = {"X-CostMonitor-Event-Id": str(event_id), "X-CostMonitor-Timestamp": str(int(sent_at))}
        if self.secrets.get("secret"):
            headers["X-CostMonitor-Signature"] = webhook_signature(self.secrets["secret"], raw)
        answer = _post(self.secrets.get("url", ""), raw, headers)
        _raise_for_status(answer)
        return SendResult(http_status=answer.status, message_id=str(event_id), info={"event_id": str(event_id)})


class LogTransport(Transport):
    success_message = "Test alert logged"

    def notify(self, alert: BudgetAlert, *, event_id) -> SendResult:
        level_name = self.config.get("log_level") or LOG_LEVEL_FOR_ALERT.get(alert.alert_level, "WARNING")
        logger.log(logging.getLevelName(level_name), "Budget alert [%s/%s] %s (event %s)", alert.alert_level,
                   alert.alert_type, alert.message, event_id)
        return SendResult(info={"log_level": level_name})


REGISTRY: dict[str, type[Transport]] = {
    AlertChannel.Kind.EMAIL: EmailTransport,
    AlertChannel.Kind.SLACK: SlackTransport,
    AlertChannel.Kind.WEBHOOK: WebhookTransport,
    AlertChannel.Kind.LOG: LogTransport,
}


def transport_for(channel: AlertChannel) -> Transport:
    return REGISTRY[channel.kind](channel)
