"""Alert operations: raise alerts exactly once, deliver them through their channels, run the monitor.

An alert is a row first (unique dedupe_key: a database constraint decides "exactly once"), then
one delivery row per matching channel, enqueued to django-q2 after commit. A worker claims a
delivery with a conditional UPDATE (pending and due, or a 'sending' claim old enough that its worker
must be dead) and goes on only if it changed one row; every send writes a DeliveryAttempt.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import lru_cache, partial

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from budgets.models import AuditLog, Budget
from budgets.selectors import percentage
from budgets.services import CounterChange, budget_states
from costmonitor.api.throttles import rate_for
from costmonitor.errors import InvalidParameters

from .models import (
    AlertChannel,
    AlertDelivery,
    AlertLevel,
    BudgetAlert,
    DeliveryAttempt,
    SendWindow,
)
from .transports import SendResult, TransportError, transport_for

logger = logging.getLogger("costmonitor.alerts")

ALERT_DELIVERY_FAILED = "ALERT_DELIVERY_FAILED"
THRESHOLD_LEVELS = (
    (AlertLevel.WARNING, "warning_percentage"),
    (AlertLevel.CRITICAL, "critical_percentage"),
    (AlertLevel.EXCEEDED, "exceeded_percentage"),
)


# --- Creating alerts once ---------------------------------------------------------------------

def channels_matching(alert: BudgetAlert) -> list[AlertChannel]:
    """Active channels whose level, team and budget filters all let this alert through."""
    matching = []
    for channel in AlertChannel.objects.filter(is_active=True).prefetch_related("teams", "budgets"):
        if channel.levels and alert.alert_level not in channel.levels:
            continue
        team_ids = {t.pk for t in channel.teams.all()}
        if team_ids and alert.team_id not in team_ids:
            continue
        budget_ids = {b.pk for b in channel.budgets.all()}
        if budget_ids and alert.budget_id not in budget_ids:
            continue
        matching.append(channel)
    return matching


def alert_create_once(*, dedupe_key: str, enqueue: bool = True, **fields) -> BudgetAlert | None:
    """Create the alert and its deliveries unless its dedupe_key exists; None when it already did.

    Concurrent callers with the same key meet at the unique index: one inserts, the others wait
    for it to commit and get None. Deliveries are enqueued only after the transaction commits.
    """
    with transaction.atomic():
        alert, created = BudgetAlert.objects.get_or_create(dedupe_key=dedupe_key, defaults=fields)
        if not created:
            return None
        deliveries = AlertDelivery.objects.bulk_create(
            [AlertDelivery(alert=alert, channel=channel) for channel in channels_matching(alert)])
        if enqueue and deliveries:
            transaction.on_commit(partial(deliveries_enqueue, delivery_ids=[d.pk for d in deliveries]), robust=True)
    return alert


def system_alert_raise(*, alert_type: str, level: str, message: str, dedupe_key: str, team=None, budget=None,
                       details: dict | None = None) -> BudgetAlert | None:
    """Raise a non-threshold alert (breaker opened, …) once per dedupe_key; deliveries go after commit."""
    if alert_type not in BudgetAlert.AlertType.values:
        raise InvalidParameters(f"Unknown alert type {alert_type!r}.", field="alert_type")
    if level not in AlertLevel.values:
        raise InvalidParameters(f"Unknown alert level {level!r}.", field="alert_level")
    if not dedupe_key or len(dedupe_key) > 200:
        raise InvalidParameters("A dedupe key of 1 to 200 characters.", field="dedupe_key")
    return alert_create_once(
        dedupe_key=dedupe_key, alert_type=alert_type, alert_level=level, message=message,
        team=team if team is not None else (budget.team if budget is not None and budget.team_id else None),
        budget=budget, details=details or {},
        period_type=budget.period if budget is not None else "", budget_limit=budget.limit_usd if budget else None)


# --- Threshold alerts -------------------------------------------------------------------------

@lru_cache(maxsize=1024)
def _threshold_amounts(limit: Decimal, percentages: tuple) -> tuple[tuple[str, Decimal, Decimal], ...]:
    return tuple((level, Decimal(pct), limit * Decimal(pct) / 100)
                 for (level, _attribute), pct in zip(THRESHOLD_LEVELS, percentages, strict=True))


def budget_thresholds(budget: Budget) -> tuple[tuple[str, Decimal, Decimal], ...]:
    """(level, percentage, amount) of each threshold, worked out once per distinct limit and
    percentages (every recording asks, for every budget it counts toward)."""
    return _threshold_amounts(budget.limit_usd, tuple(getattr(budget, attribute) for _, attribute in THRESHOLD_LEVELS))


def thresholds_crossed(change: CounterChange) -> list[tuple[str, Decimal]]:
    """Levels whose threshold lies in (spent_before, spent_after]: pure arithmetic, no queries."""
    budget = change.budget
    if budget.limit_usd <= 0 or change.spent_after <= change.spent_before:
        return []
    return [(level, pct) for level, pct, threshold in budget_thresholds(budget)
            if change.spent_before < threshold <= change.spent_after]


def thresholds_reached(budget: Budget, spent: Decimal) -> list[tuple[str, Decimal]]:
    if budget.limit_usd <= 0:
        return []
    return [(level, pct) for level, pct, threshold in budget_thresholds(budget) if threshold <= spent]


def threshold_dedupe_key(budget_id: int, period_key: str, level: str) -> str:
    return f"threshold:{budget_id}:{period_key}:{level}"


def _threshold_fields(budget: Budget, period_key: str, level: str, pct: Decimal, spent: Decimal) -> dict:
    used = percentage(spent, budget.limit_usd)
    words = {"warning": "warning", "critical": "critical", "exceeded": "exceeded"}
    return {
        "alert_type": BudgetAlert.AlertType.THRESHOLD, "alert_level": level,
        "period_type": budget.period, "period_key": period_key,
        "current_cost": spent, "budget_limit": budget.limit_usd, "percentage_used": Decimal(str(used)),
        "threshold_percentage": pct, "budget": budget, "team_id": budget.team_id,
        "message": (f"{budget.get_period_display()} budget {words[level]}: {used:g}% of {budget.name} used "
                    f"(${spent:,.2f} of ${budget.limit_usd:,.2f})"),
        "details": {"budget_name": budget.name, "scope": budget.scope, "enforcement": budget.enforcement,
                    "threshold_amount": float(budget.limit_usd * pct / 100)},
    }


def threshold_alert_raise(*, budget: Budget, period_key: str, level: str, pct: Decimal,
                          spent: Decimal) -> BudgetAlert | None:
    return alert_create_once(dedupe_key=threshold_dedupe_key(budget.pk, period_key, level),
                             **_threshold_fields(budget, period_key, level, pct, spent))


def _threshold_alerts_after_commit(crossings: list[tuple]) -> None:
    for budget, period_key, level, pct, spent in crossings:
        threshold_alert_raise(budget=budget, period_key=period_key, level=level, pct=pct, spent=spent)


# How close below its next threshold a total seen inside a transaction must be for the recording to
# re-read the committed total after commit (see thresholds_recheck_needed): a quarter of the limit.
RECHECK_MARGIN_FRACTION = Decimal("0.25")


def thresholds_recheck_needed(change: CounterChange) -> bool:
    """Whether this recording must re-read its period's committed total after commit, because a
    threshold may have been crossed without this or any other recording seeing it. Pure arithmetic.

    Why a total can be stale: a recording reads its period's total (the sum of the slot rows) in the
    statement that writes its own slot, BEFORE it commits (CounterWrite.done, budgets.services.
    recording_done), so recordings on other slots that commit between that read and this commit are
    missing from `spent_after`. If this commit is the one that takes the committed total over
    threshold T, nobody may have seen T crossed: the others read before this commit, and this one saw
    T minus what they committed meanwhile.

    When it cannot be stale, no re-read: with one slot every writer of a period queues on that row's
    lock, so the read sees every earlier commit; SQLite serialises writers. Past the last threshold
    there is nothing left to miss.

    Otherwise, re-read when the seen total is within a margin M of the next threshold above it.
    A threshold is missed only if, between this recording's counter write and its commit (a few
    statements), other recordings of the same period committed more than M. At most SLOTS - 1 others
    hold uncommitted spend on a period at any moment (each keeps its slot row locked until it
    commits), so M = max(a quarter of the limit, SLOTS x this recording's step — spent_after minus
    spent_before, at least its own cost): the second term
    covers costs that are large against the budget (every other slot in flight with a cost like this
    one, and more), the first keeps small costs covered even when many land in that window. Records
    further below (under 50 % of the limit with the default 75/90/100 % thresholds) pay nothing; the
    one-minute monitor cycle stays the backstop for anything beyond the margin.
    """
    budget = change.budget
    if budget.limit_usd <= 0 or change.spent_after <= change.spent_before:
        return False
    if connection.vendor != "postgresql" or settings.SPEND_COUNTER_SLOTS <= 1:
        return False
    above = [threshold for _level, _pct, threshold in budget_thresholds(budget) if threshold > change.spent_after]
    if not above:
        return False
    margin = max(budget.limit_usd * RECHECK_MARGIN_FRACTION,
                 settings.SPEND_COUNTER_SLOTS * (change.spent_after - change.spent_before))
    return change.spent_after >= min(above) - margin


def _threshold_recheck_after_commit(rechecks: list[tuple]) -> None:
    """After commit: read the periods' committed totals (every slot row summed, one indexed query) and
    create each level crossed above what the recording saw. A level another recording raised (or is
    raising) meets its dedupe_key: it exists once."""
    from django.db.models import Sum

    from budgets.models import SpendCounter

    condition = Q()
    for budget, period_key, _seen in rechecks:
        condition |= Q(budget_id=budget.pk, period_key=period_key)
    totals = {(row["budget_id"], row["period_key"]): row["spent"]
              for row in SpendCounter.objects.filter(condition).order_by().values("budget_id", "period_key")
              .annotate(spent=Sum("spent"))}
    for budget, period_key, seen in rechecks:
        committed = totals.get((budget.pk, period_key))
        if committed is None or committed <= seen:
            continue
        for level, pct in thresholds_crossed(CounterChange(budget, period_key, seen, committed, Decimal(0))):
            threshold_alert_raise(budget=budget, period_key=period_key, level=level, pct=pct, spent=committed)


def on_spend_recorded(sender, changes: list[CounterChange], **kwargs) -> None:
    """Receiver of budgets.services.spend_recorded, inside the recording transaction.

    Costs nothing unless a threshold was crossed, or the total seen may be stale near a threshold
    (thresholds_recheck_needed: then one read after commit); alerts are created after commit (a
    rolled-back record raises nothing), robustly: a failure here is logged and left to the monitor
    cycle, it never fails the request that recorded the cost.
    """
    crossings = [(change.budget, change.period_key, level, pct, change.spent_after)
                 for change in changes for level, pct in thresholds_crossed(change)]
    if crossings:
        transaction.on_commit(partial(_threshold_alerts_after_commit, crossings), robust=True)
    rechecks = [(change.budget, change.period_key, change.spent_after)
                for change in changes if thresholds_recheck_needed(change)]
    if rechecks:
        transaction.on_commit(partial(_threshold_recheck_after_commit, rechecks), robust=True)


def _previous_period_states(budgets: list[Budget], now: datetime) -> list:
    """Each daily/monthly budget's previous period (yesterday, last month), read like the current one:
    one counter query per kind of period."""
    from budgets.periods import budget_period_bounds

    by_instant: dict[datetime, list[Budget]] = {}
    for budget in budgets:
        if budget.period in (Budget.Period.DAILY, Budget.Period.MONTHLY):
            # The last instant of the previous period: just before the current one starts (DST-aware).
            instant = budget_period_bounds(budget, now)[0] - timedelta(microseconds=1)
            by_instant.setdefault(instant, []).append(budget)
    return [state for instant, group in by_instant.items() for state in budget_states(budgets=group, at=instant)]


def thresholds_evaluate(*, now: datetime | None = None, budgets: list[Budget] | None = None) -> list[BudgetAlert]:
    """The monitor's pass: every active budget's current counter, and its previous day's or month's (a
    crossing recorded just before a period ended while no process raised it, e.g. during downtime
    over midnight); creates any missing level alert — once, the period key is in the dedupe key."""
    now = now or timezone.now()
    if budgets is None:
        budgets = list(Budget.objects.filter(is_active=True).select_related("team"))
    wanted = []
    for state in budget_states(budgets=budgets, at=now) + _previous_period_states(budgets, now):
        for level, pct in thresholds_reached(state.budget, state.spent):
            wanted.append((state, level, pct))
    keys = [threshold_dedupe_key(s.budget.pk, s.period_key, level) for s, level, _ in wanted]
    existing = set(BudgetAlert.objects.filter(dedupe_key__in=keys).values_list("dedupe_key", flat=True))
    created = []
    for (state, level, pct), key in zip(wanted, keys, strict=True):
        if key not in existing:
            alert = threshold_alert_raise(budget=state.budget, period_key=state.period_key, level=level, pct=pct,
                                          spent=state.spent)
            if alert is not None:
                created.append(alert)
    return created


# --- Manual alerts, acknowledgement -----------------------------------------------------------

def alert_acknowledge(*, alert: BudgetAlert, user) -> BudgetAlert:
    """Acknowledge once: the first person and time are kept."""
    BudgetAlert.objects.filter(pk=alert.pk, acknowledged_at__isnull=True).update(
        acknowledged_by=user, acknowledged_at=timezone.now())
    alert.refresh_from_db(fields=["acknowledged_by", "acknowledged_at"])
    return alert


def alert_send_now(*, actor, fields: dict) -> dict:
    """send_alert: record a manual alert and deliver it now to every matching channel (synchronously).

    A channel that fails temporarily stays pending and is retried by the workers; the answer says so.
    """
    alert = alert_create_once(dedupe_key=f"manual:{uuid.uuid4()}", enqueue=False,
                              alert_type=BudgetAlert.AlertType.MANUAL, created_by=actor, **fields)
    results, failed, pending = {}, [], []
    for delivery in alert.deliveries.select_related("channel").order_by("channel__name"):
        outcome = delivery_attempt(delivery_id=delivery.pk)
        name = delivery.channel.name
        results[name] = outcome.as_result(delivery.channel)
        if outcome.status != "sent":
            failed.append(name)
            if outcome.status in ("retrying", "deferred"):
                pending.append(name)
    return {"alert_id": alert.pk, "delivery_results": results, "overall_success": not failed,
            "failed_channels": failed, "pending_channels": pending}


# --- Delivering -------------------------------------------------------------------------------

@dataclass
class DeliveryOutcome:
    status: str  # sent | retrying | failed | deferred (rate limit) | skipped (not claimable)
    result: SendResult | None = None
    error: str = ""
    at: datetime = field(default_factory=timezone.now)
    next_attempt_at: datetime | None = None
    response_time_ms: int = 0

    def as_result(self, channel: AlertChannel) -> dict:
        """The reference's per-channel delivery_results entry."""
        body = {"success": self.status == "sent", "timestamp": self.at.timestamp(), "channel_kind": channel.kind}
        if self.result is not None:
            body.update(self.result.info)
            if channel.kind == AlertChannel.Kind.EMAIL:
                body["message_id"] = self.result.message_id
            if self.result.http_status is not None:
                body["http_status"] = self.result.http_status
        if self.status != "sent":
            body["error"] = self.error or self.status
            body["will_retry"] = self.status in ("retrying", "deferred")
            if self.next_attempt_at:
                body["next_attempt_at"] = self.next_attempt_at.timestamp()
        body["response_time_ms"] = self.response_time_ms
        return body


def claim_timeout() -> timedelta:
    return timedelta(seconds=settings.ALERT_CLAIM_TIMEOUT_SECONDS)


def retry_delay(attempts: int, retry_after: float | None = None) -> timedelta:
    """Exponential backoff (base × 2^(n-1), capped), never sooner than the peer's Retry-After."""
    seconds = min(settings.ALERT_RETRY_BASE_SECONDS * 2 ** max(0, attempts - 1), settings.ALERT_RETRY_MAX_SECONDS)
    if retry_after:
        seconds = max(seconds, min(retry_after, settings.ALERT_RETRY_MAX_SECONDS))
    return timedelta(seconds=seconds)


def send_slot_take(*, channel_id: int, now: datetime) -> datetime | None:
    """Count one message to this channel in the current window; when the window is full, the time
    it reopens. One atomic upsert, so every process and worker shares the same count."""
    rate = rate_for("alerts")
    if rate is None:
        return None
    limit, seconds = rate
    window = int(now.timestamp()) // seconds * seconds
    table = SendWindow._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (channel_id, window_start, count) VALUES (%s, %s, 1) "
            f"ON CONFLICT (channel_id, window_start) DO UPDATE SET count = {table}.count + 1 "
            f"WHERE {table}.count < %s RETURNING count", [channel_id, window, limit])
        taken = cursor.fetchone()
    if taken:
        return None
    return datetime.fromtimestamp(window + seconds, tz=UTC)


def _claim(delivery_id: int, now: datetime) -> uuid.UUID | None:
    token = uuid.uuid4()
    claimable = Q(status=AlertDelivery.Status.PENDING, next_attempt_at__lte=now) | Q(
        status=AlertDelivery.Status.SENDING, claimed_at__lt=now - claim_timeout())
    changed = AlertDelivery.objects.filter(claimable, pk=delivery_id).update(
        status=AlertDelivery.Status.SENDING, claim_token=token, claimed_at=now, attempts=F("attempts") + 1)
    return token if changed == 1 else None


def delivery_attempt(*, delivery_id: int) -> DeliveryOutcome:
    """Claim the delivery, take a send slot, send through its channel's transport, record the attempt."""
    now = timezone.now()
    token = _claim(delivery_id, now)
    if token is None:
        return DeliveryOutcome("skipped", error="Not due, already sent, or being sent by another worker.")
    delivery = AlertDelivery.objects.select_related("alert__budget", "alert__team", "channel").get(pk=delivery_id)
    channel = delivery.channel
    mine = AlertDelivery.objects.filter(pk=delivery_id, claim_token=token)

    reopens = send_slot_take(channel_id=channel.pk, now=now)
    if reopens is not None:  # over the sending rate: wait for the next window, the attempt does not count
        mine.update(status=AlertDelivery.Status.PENDING, next_attempt_at=reopens, attempts=F("attempts") - 1,
                    claim_token=None, claimed_at=None, enqueued_at=None)
        return DeliveryOutcome("deferred", error="Alert sending rate reached; queued for the next minute.",
                               next_attempt_at=reopens)

    started = time.monotonic()
    result, error = None, None
    if not channel.is_active:
        error = TransportError("The channel is disabled.", permanent=True)
    else:
        try:
            result = transport_for(channel).notify(delivery.alert, event_id=delivery.event_id)
        except TransportError as exc:
            error = exc
        except Exception as exc:  # a transport bug must not lose the alert: record it, retry later
            logger.exception("Alert transport %s crashed", channel.kind)
            error = TransportError(f"Unexpected error: {exc}", permanent=False)
    elapsed_ms = int((time.monotonic() - started) * 1000)
    finished = timezone.now()

    if error is None:
        _attempt_record(delivery, channel, success=True, result=result, elapsed_ms=elapsed_ms, at=finished)
        mine.update(status=AlertDelivery.Status.SENT, sent_at=finished, last_error="", claim_token=None)
        AlertChannel.objects.filter(pk=channel.pk).update(last_sent_at=finished)
        return DeliveryOutcome("sent", result=result, at=finished, response_time_ms=elapsed_ms)

    attempts = delivery.attempts
    final = error.permanent or attempts >= settings.ALERT_MAX_ATTEMPTS
    message = error.message if not final or error.permanent else (
        f"{error.message} (gave up after {attempts} attempts)")
    _attempt_record(delivery, channel, success=False, error=error, message=message, final=final,
                    elapsed_ms=elapsed_ms, at=finished)
    AlertChannel.objects.filter(pk=channel.pk).update(last_error=message[:1000], last_error_at=finished)
    if final:
        mine.update(status=AlertDelivery.Status.FAILED, last_error=message, claim_token=None)
        logger.warning("Alert delivery %s to %s failed for good: %s", delivery.pk, channel.name, message)
        return DeliveryOutcome("failed", error=message, at=finished, response_time_ms=elapsed_ms)
    next_at = finished + retry_delay(attempts, error.retry_after)
    mine.update(status=AlertDelivery.Status.PENDING, next_attempt_at=next_at, last_error=message,
                claim_token=None, claimed_at=None, enqueued_at=None)
    return DeliveryOutcome("retrying", error=message, at=finished, next_attempt_at=next_at,
                           response_time_ms=elapsed_ms)


def _attempt_record(delivery, channel, *, success: bool, elapsed_ms: int, at: datetime,
                    result: SendResult | None = None, error: TransportError | None = None, message: str = "",
                    final: bool = False, is_test: bool = False) -> DeliveryAttempt:
    return DeliveryAttempt.objects.create(
        delivery=delivery, channel=channel, channel_name=channel.name, channel_kind=channel.kind, is_test=is_test,
        success=success, permanent=bool(error and error.permanent),
        error=(message or (error.message if error else ""))[:2000],
        error_code=ALERT_DELIVERY_FAILED if final else "",
        http_status=(result.http_status if result else error.http_status if error else None),
        smtp_reply=((result.smtp_reply if result else error.smtp_reply if error else "") or "")[:300],
        message_id=(result.message_id if result else "")[:300], response_time_ms=elapsed_ms, at=at)


def deliveries_enqueue(*, delivery_ids: list[int]) -> int:
    """Queue one django-q2 task per delivery (one channel never waits for another). If the queue is
    unavailable the rows stay pending and the monitor cycle queues them again."""
    if not delivery_ids:
        return 0
    from django_q.tasks import async_task

    queued = []
    for delivery_id in delivery_ids:
        try:
            async_task("alerts.tasks.deliver", delivery_id, group="alert-deliveries")
        except Exception as exc:
            logger.warning("Could not queue alert delivery %s (%s); the monitor cycle will retry it.",
                           delivery_id, exc)
            continue
        queued.append(delivery_id)
    if queued:
        AlertDelivery.objects.filter(pk__in=queued, status=AlertDelivery.Status.PENDING).update(
            enqueued_at=timezone.now())
    return len(queued)


def deliveries_due(*, now: datetime | None = None, limit: int = 500) -> list[int]:
    """Deliveries a worker should try now: pending and due (and not queued recently), or abandoned
    mid-send by a worker that died."""
    now = now or timezone.now()
    stale = now - claim_timeout()
    due = AlertDelivery.objects.filter(
        Q(status=AlertDelivery.Status.PENDING, next_attempt_at__lte=now)
        & (Q(enqueued_at__isnull=True) | Q(enqueued_at__lt=stale))
        | Q(status=AlertDelivery.Status.SENDING, claimed_at__lt=stale))
    return list(due.order_by("next_attempt_at", "id").values_list("pk", flat=True)[:limit])


def deliveries_dispatch_due(*, now: datetime | None = None) -> int:
    return deliveries_enqueue(delivery_ids=deliveries_due(now=now))


def deliveries_run_due(*, now: datetime | None = None) -> list[DeliveryOutcome]:
    """Send every due delivery in this process (the CLI and tests; workers use one task each)."""
    return [delivery_attempt(delivery_id=pk) for pk in deliveries_due(now=now)]


def send_windows_prune(*, now: datetime | None = None) -> int:
    now = now or timezone.now()
    deleted, _ = SendWindow.objects.filter(window_start__lt=int(now.timestamp()) - 3600).delete()
    return deleted


# --- Channels -----------------------------------------------------------------------------------

def _test_alert() -> BudgetAlert:
    return BudgetAlert(alert_type=BudgetAlert.AlertType.TEST, alert_level=AlertLevel.INFO,
                       message="CostMonitor test alert: this channel is configured correctly.",
                       current_cost=Decimal("0"), timestamp=timezone.now(), dedupe_key="test")


def channel_test(channel: AlertChannel) -> dict:
    """test_channels for one channel: send a test message now; {success, message|error, response_time_ms}."""
    transport = transport_for(channel)
    started = time.monotonic()
    result, error = None, None
    try:
        result = transport.notify(_test_alert(), event_id=uuid.uuid4())
    except TransportError as exc:
        error = exc
    except Exception as exc:
        logger.exception("Alert transport %s crashed during a test", channel.kind)
        error = TransportError(f"Unexpected error: {exc}", permanent=False)
    elapsed_ms = int((time.monotonic() - started) * 1000)
    now = timezone.now()
    _attempt_record(None, channel, success=error is None, result=result, error=error, elapsed_ms=elapsed_ms, at=now,
                    is_test=True)
    if error is not None:
        AlertChannel.objects.filter(pk=channel.pk).update(last_error=error.message[:1000], last_error_at=now)
        return {"success": False, "error": error.message, "response_time_ms": elapsed_ms, "channel_id": channel.pk,
                "kind": channel.kind}
    AlertChannel.objects.filter(pk=channel.pk).update(last_error="", last_sent_at=now)
    body = {"success": True, "message": transport.success_message, "response_time_ms": elapsed_ms,
            "channel_id": channel.pk, "kind": channel.kind}
    if result.http_status is not None:
        body["http_status"] = result.http_status
    return body


def channels_test(*, channel_ids: list[int] | None = None) -> dict:
    channels = AlertChannel.objects.filter(is_active=True)
    if channel_ids is not None:
        channels = AlertChannel.objects.filter(pk__in=channel_ids)
        missing = set(channel_ids) - set(channels.values_list("pk", flat=True))
        if missing:
            raise InvalidParameters(f"Unknown channel id(s): {sorted(missing)}.", field="channel_ids")
    return {channel.name: channel_test(channel) for channel in channels.order_by("name")}


def channel_save(*, channel: AlertChannel | None, actor, data: dict) -> AlertChannel:
    """Create or update a channel from validated API/admin data (config is split and checked here)."""
    from .channels import channel_config_clean, levels_clean

    creating = channel is None
    channel = channel or AlertChannel(created_by=actor if actor and actor.is_authenticated else None)
    kind = data.get("kind", channel.kind)
    if not creating and kind != channel.kind and "config" not in data:
        raise InvalidParameters("Changing the kind needs a config for the new kind.", field="config")
    same_kind = not creating and kind == channel.kind
    plain, secrets = channel_config_clean(
        kind=kind, config=data.get("config", {} if creating else {}),
        existing_config=channel.config if same_kind else None,
        existing_secrets=channel.secrets if same_kind else None)
    channel.kind, channel.config, channel.secrets = kind, plain, secrets
    for name in ("name", "is_active"):
        if name in data:
            setattr(channel, name, data[name])
    if "levels" in data:
        channel.levels = levels_clean(data["levels"])
    if not channel.name:
        raise InvalidParameters("A channel needs a name.", field="name")
    with transaction.atomic():
        if AlertChannel.objects.filter(name=channel.name).exclude(pk=channel.pk).exists():
            raise InvalidParameters("A channel with this name exists.", field="name")
        try:
            with transaction.atomic():
                channel.save()
        except IntegrityError:
            raise InvalidParameters("A channel with this name exists.", field="name") from None
        if "teams" in data:
            channel.teams.set(data["teams"])
        if "budgets" in data:
            channel.budgets.set(data["budgets"])
        # Secrets stay out of the audit trail: what changed is named, not shown.
        AuditLog.objects.create(
            actor=actor if actor is not None and actor.is_authenticated else None,
            action="alert_channel.created" if creating else "alert_channel.updated", object_type="AlertChannel",
            object_id=str(channel.pk),
            changes={"name": channel.name, "kind": channel.kind, "levels": channel.levels,
                     "is_active": channel.is_active, "fields": sorted(set(data) - {"config"})
                     + (["config"] if "config" in data else [])})
    return channel


def channel_delete(*, channel: AlertChannel, actor) -> None:
    """Delete a channel (audited). Its undelivered deliveries go with it; its past attempts stay for the
    statistics, under the channel's name."""
    with transaction.atomic():
        AuditLog.objects.create(actor=actor if actor is not None and actor.is_authenticated else None,
                                action="alert_channel.deleted", object_type="AlertChannel", object_id=str(channel.pk),
                                changes={"name": [channel.name, None], "kind": [channel.kind, None]})
        channel.delete()


# --- Forecasts ----------------------------------------------------------------------------------

def forecast_dedupe_key(budget_id: int, period_key: str) -> str:
    return f"forecast:{budget_id}:{period_key}"


def forecasts_evaluate(*, now: datetime | None = None, budgets: list[Budget] | None = None) -> list[BudgetAlert]:
    """One "forecasted" alert per budget and period when the projected end-of-period spend passes the
    limit (budgets.projections.project_period: usage pattern, or linear trend with little history).

    Only budgets with spend, still under their limit and without this period's forecast alert are
    projected, so a quiet system costs one counter query per cycle.
    """
    from budgets.projections import ACTUAL, NOT_STARTED, project_period

    now = now or timezone.now()
    if budgets is None:
        budgets = list(Budget.objects.filter(is_active=True).select_related("team"))
    states = [s for s in budget_states(budgets=budgets, at=now)
              if s.budget.limit_usd > 0 and Decimal(0) < s.spent < s.budget.limit_usd]
    keys = [forecast_dedupe_key(s.budget.pk, s.period_key) for s in states]
    existing = set(BudgetAlert.objects.filter(dedupe_key__in=keys).values_list("dedupe_key", flat=True))
    min_confidence = float(settings.ALERT_FORECAST_MIN_CONFIDENCE)
    created = []
    for state, key in zip(states, keys, strict=True):
        if key in existing:
            continue
        budget = state.budget
        projection = project_period(budget, now)
        if projection.method in (ACTUAL, NOT_STARTED) or projection.confidence < min_confidence:
            continue
        if projection.projected_cost <= budget.limit_usd:
            continue
        projected_pct = percentage(projection.projected_cost, budget.limit_usd)
        method = projection.method.replace("_", " ")
        alert = alert_create_once(
            dedupe_key=key, alert_type=BudgetAlert.AlertType.FORECAST, alert_level=AlertLevel.WARNING,
            period_type=budget.period, period_key=state.period_key, current_cost=state.spent,
            budget_limit=budget.limit_usd, percentage_used=Decimal(str(percentage(state.spent, budget.limit_usd))),
            threshold_percentage=Decimal(100), budget=budget, team_id=budget.team_id,
            message=(f"{budget.get_period_display()} budget forecast: {budget.name} is projected to reach "
                     f"${projection.projected_cost:,.2f} ({projected_pct:g}% of ${budget.limit_usd:,.2f}) by the "
                     f"end of the period (method: {method}, confidence {projection.confidence:.0%})"),
            details={"projected_cost": float(projection.projected_cost), "projected_percentage": projected_pct,
                     "method": projection.method, "confidence": projection.confidence,
                     "history_days": projection.history_days, "budget_name": budget.name})
        if alert is not None:
            created.append(alert)
    return created


# --- The monitor (RealTimeBudgetMonitor) ----------------------------------------------------------

def monitor_cycle_run(*, now: datetime | None = None) -> dict:
    """One monitoring cycle: thresholds, forecasts, anomalies, expired reservations, due deliveries.

    Every step is idempotent (alerts are deduplicated by the database), so a cycle that runs twice or
    late sends nothing twice. A failing step is logged and the others still run.
    """
    from budgets.services import reservations_expire

    from .anomalies import anomalies_detect

    now = now or timezone.now()
    budgets = list(Budget.objects.filter(is_active=True).select_related("team"))
    results: dict = {"thresholds": [], "forecasts": [], "anomalies": [], "expired": 0, "dispatched": 0}
    failed_steps = []
    steps = [
        ("thresholds", lambda: thresholds_evaluate(now=now, budgets=budgets)),
        ("forecasts", lambda: forecasts_evaluate(now=now, budgets=budgets)),
        ("anomalies", lambda: anomalies_detect(now=now)),
        ("expired", lambda: reservations_expire(now=now)),
        ("dispatched", lambda: deliveries_dispatch_due(now=now)),
    ]
    for name, step in steps:
        try:
            results[name] = step()
        except Exception:
            logger.exception("Monitor cycle step %r failed", name)
            failed_steps.append(name)
    try:
        send_windows_prune(now=now)
    except Exception:
        logger.exception("Pruning send windows failed")
    alerts = results["thresholds"] + results["forecasts"] + results["anomalies"]
    return {
        "cycle_completed": not failed_steps,
        "alerts_generated": len(alerts),
        "anomalies_detected": len(results["anomalies"]),
        "threshold_alerts": len(results["thresholds"]),
        "forecast_alerts": len(results["forecasts"]),
        "reservations_expired": results["expired"],
        "deliveries_queued": results["dispatched"],
        "budgets_checked": len(budgets),
        "failed_steps": failed_steps,
        "alert_ids": [a.pk for a in alerts],
        "timestamp": now.timestamp(),
    }
