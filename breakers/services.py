"""Cost circuit breakers (the reference's CostCircuitBreakerManager writes): create and change breakers,
execute with protection, settle an operation's result, reset.

Every decision is taken inside a transaction holding the breaker's row lock (`SELECT … FOR UPDATE`):
the state machine, the throttle counter and the statistics move together, so any number of web
processes see one breaker. Lock order is always breaker row → ledger rows (reservation, counters),
in execute and in settle alike, so the two never deadlock each other.

State machine: closed --(failure_threshold consecutive failures)--> open --(recovery_timeout passed,
the next call is the one trial)--> half_open --(trial succeeds)--> closed / --(trial fails)--> open.
A trial that never reports back within recovery_timeout is replaced by the next caller.

Threshold rules are evaluated per call (they do not change the state): a firing `block` rule refuses
the call (503), a firing `throttle` rule admits its fraction of calls evenly (429 for the others),
an `alert_only` rule lets the call through; every firing rule raises at most one alert per cooldown.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Sum
from django.utils import timezone

from alerts.services import system_alert_raise
from budgets import accounts
from budgets.models import AuditLog, Budget, Reservation
from budgets.periods import period_bounds
from budgets.services import (
    SpendTarget,
    budget_states,
    budgets_applicable,
    reservation_create,
)
from costmonitor.api.scoping import is_admin
from costmonitor.errors import (
    BudgetExceeded,
    CircuitBreakerOpen,
    CircuitBreakerThrottled,
    CostMonitorError,
    InvalidParameters,
)
from costmonitor.money import MAX_SINGLE_COST, MONEY_QUANTUM, ZERO
from tracking.events import MAX_TOKENS, UsageEvent, storable_json
from tracking.models import UsageRecord
from tracking.pricing import price_tokens
from tracking.services import usage_record

from .models import BreakerEvent, BreakerOperation, CircuitBreaker, CostThresholdRule

State = CircuitBreaker.State
Rule = CostThresholdRule
ThresholdType = CostThresholdRule.ThresholdType
Action = CostThresholdRule.Action

BREAKER_FIELDS = ("name", "description", "failure_threshold", "recovery_timeout", "throttle_rate")
RULE_FIELDS = ("rule_id", "threshold_type", "threshold_value", "action", "throttle_factor", "cooldown_seconds",
               "window_minutes", "team", "team_id", "model_name", "research_category", "is_active")
ALERT_LEVELS = {State.OPEN: "critical", State.HALF_OPEN: "warning", State.CLOSED: "info"}
_HUNDRED = Decimal(100)


class BreakerNotFound(CostMonitorError):
    code = "NOT_FOUND"
    http_status = 404
    default_message = "No circuit breaker has this name."


# --- Configuration ----------------------------------------------------------------------------

def _invalid(error: ValidationError, prefix: str = "") -> InvalidParameters:
    details = {f"{prefix}{name}": [str(m) for m in messages] for name, messages in error.message_dict.items()}
    return InvalidParameters("Invalid circuit breaker configuration.", details=details)


def _rules_build(breaker: CircuitBreaker, rules: list[dict]) -> list[CostThresholdRule]:
    built, seen = [], set()
    for index, spec in enumerate(rules):
        prefix = f"rules[{index}]."
        unknown = set(spec) - set(RULE_FIELDS)
        if unknown:
            raise InvalidParameters("Unknown rule field.",
                                    details={f"{prefix}{name}": ["Unknown field."] for name in unknown})
        rule = CostThresholdRule(breaker=breaker, **spec)
        try:
            rule.full_clean(exclude=["breaker"], validate_unique=False)
        except ValidationError as exc:
            raise _invalid(exc, prefix) from None
        if rule.rule_id in seen:
            raise InvalidParameters("Each rule_id may appear once per breaker.", field=f"{prefix}rule_id")
        seen.add(rule.rule_id)
        built.append(rule)
    return built


def _audit(actor, action: str, breaker: CircuitBreaker, changes: dict) -> None:
    AuditLog.objects.create(actor=actor if actor is not None and actor.is_authenticated else None, action=action,
                            object_type="CircuitBreaker", object_id=str(breaker.pk), changes=changes)


def _plain(value):
    if isinstance(value, Decimal):
        return str(value)
    return value.pk if hasattr(value, "pk") else value


def _rules_snapshot(rules) -> list[dict]:
    return [{"rule_id": r.rule_id, "threshold_type": r.threshold_type, "threshold_value": str(r.threshold_value),
             "action": r.action} for r in rules]


def breaker_create(*, name: str, rules: list[dict] | None = None, failure_threshold: int = 5,
                   recovery_timeout: float = 60.0, throttle_rate: Decimal = Decimal("1"), description: str = "",
                   actor=None) -> CircuitBreaker:
    """create_circuit_breaker: a breaker and its threshold rules (audited)."""
    breaker = CircuitBreaker(name=name, description=description, failure_threshold=failure_threshold,
                             recovery_timeout=recovery_timeout, throttle_rate=throttle_rate)
    try:
        breaker.full_clean(validate_unique=False)
    except ValidationError as exc:
        raise _invalid(exc) from None
    built = _rules_build(breaker, rules or [])
    with transaction.atomic():
        try:
            with transaction.atomic():
                breaker.save(force_insert=True)
        except IntegrityError:
            raise InvalidParameters(f"A circuit breaker named {name!r} already exists.", field="name") from None
        for rule in built:
            rule.breaker = breaker
        CostThresholdRule.objects.bulk_create(built)
        _audit(actor, "breaker.created", breaker, {
            **{f: [None, _plain(getattr(breaker, f))] for f in BREAKER_FIELDS},
            "rules": [None, _rules_snapshot(built)]})
    return breaker


def breaker_update(*, breaker: CircuitBreaker, actor, rules: list[dict] | None = None, **fields) -> CircuitBreaker:
    """Change a breaker's settings; `rules`, when given, replaces its rules (audited, old and new)."""
    unknown = set(fields) - set(BREAKER_FIELDS)
    if unknown:
        raise InvalidParameters("Unknown breaker field.", details={n: ["Unknown field."] for n in unknown})
    with transaction.atomic():
        breaker = CircuitBreaker.objects.select_for_update().get(pk=breaker.pk)
        changes = {}
        for name, value in fields.items():
            old = getattr(breaker, name)
            if old != value:
                changes[name] = [_plain(old), _plain(value)]
                setattr(breaker, name, value)
        try:
            breaker.full_clean(validate_unique=False)
        except ValidationError as exc:
            raise _invalid(exc) from None
        if "name" in changes and CircuitBreaker.objects.filter(name=breaker.name).exclude(pk=breaker.pk).exists():
            raise InvalidParameters(f"A circuit breaker named {breaker.name!r} already exists.", field="name")
        if rules is not None:
            old_rules = list(breaker.rules.all())
            built = _rules_build(breaker, rules)
            kept = {r.rule_id: r for r in old_rules}
            for rule in built:  # keep cooldown memory of rules that stay
                if rule.rule_id in kept:
                    rule.last_fired_at = kept[rule.rule_id].last_fired_at
            breaker.rules.all().delete()
            CostThresholdRule.objects.bulk_create(built)
            if _rules_snapshot(old_rules) != _rules_snapshot(built):
                changes["rules"] = [_rules_snapshot(old_rules), _rules_snapshot(built)]
        breaker.save()
        if changes:
            _audit(actor, "breaker.updated", breaker, changes)
    return breaker


def breaker_delete(*, breaker: CircuitBreaker, actor) -> None:
    with transaction.atomic():
        _audit(actor, "breaker.deleted", breaker, {"name": [breaker.name, None]})
        breaker.delete()


def breaker_named(name: str) -> CircuitBreaker:
    breaker = CircuitBreaker.objects.filter(name=name).first()
    if breaker is None:
        raise BreakerNotFound(f"No circuit breaker is named {name!r}.", details={"breaker": name})
    return breaker


# --- Events and alerts ------------------------------------------------------------------------

def _alert_after_commit(breaker: CircuitBreaker, event: BreakerEvent, level: str) -> None:
    """Raise the alert once the event is committed; an alert failure never undoes a decision."""
    message = f"Circuit breaker {breaker.name!r}: {event.reason}"
    details = {"breaker": breaker.name, "event_id": event.pk, "kind": event.kind, "from_state": event.from_state,
               "to_state": event.to_state, "rule_id": event.rule_id, "reason": event.reason, **event.details}

    def send():
        system_alert_raise(alert_type="breaker", level=level, message=message,
                           dedupe_key=f"breaker:{breaker.name}:{event.pk}", details=details)

    transaction.on_commit(send, robust=True)


def _event(breaker: CircuitBreaker, *, kind: str, to_state: str, reason: str, at: datetime, from_state: str = "",
           rule_id: str = "", operation_id=None, actor=None, details: dict | None = None,
           level: str | None = None) -> BreakerEvent:
    event = BreakerEvent.objects.create(
        breaker=breaker, kind=kind, from_state=from_state or breaker.state, to_state=to_state, reason=reason[:300],
        rule_id=rule_id, operation_id=operation_id, actor=actor if actor is not None and actor.is_authenticated
        else None, details=details or {}, at=at)
    _alert_after_commit(breaker, event, level or ALERT_LEVELS[to_state])
    return event


def _transition(breaker: CircuitBreaker, to_state: str, *, reason: str, at: datetime, rule_id: str = "",
                operation_id=None, actor=None, kind: str = BreakerEvent.Kind.STATE_CHANGE) -> None:
    """Change state (the caller holds the row lock and saves the breaker), with its audit row and alert."""
    from_state = breaker.state
    _event(breaker, kind=kind, from_state=from_state, to_state=to_state, reason=reason, at=at, rule_id=rule_id,
           operation_id=operation_id, actor=actor,
           details={"consecutive_failures": breaker.consecutive_failures,
                    "failure_threshold": breaker.failure_threshold})
    breaker.state = to_state
    breaker.last_state_change_at = at
    if to_state == State.OPEN:
        breaker.opened_at = at
    if to_state != State.HALF_OPEN:
        breaker.half_open_trial_operation = None
        breaker.trial_started_at = None
    if to_state == State.CLOSED:
        breaker.opened_at = None


# --- Estimates and rule readings ----------------------------------------------------------------

@dataclass(frozen=True)
class Estimate:
    cost: Decimal
    input_tokens: int = 0
    output_tokens: int = 0

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens


def operation_estimate(*, model_name: str, estimated_tokens: dict | None, estimated_cost, at: datetime) -> Estimate:
    """The call's estimated cost: as sent, or its tokens priced with the ledger's price table."""
    tokens = estimated_tokens or {}
    if not isinstance(tokens, dict):
        raise InvalidParameters("Must be an object {\"input\": n, \"output\": n}.", field="estimated_tokens")
    counts = []
    for key in ("input", "output"):
        value = tokens.get(key, 0)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_TOKENS:
            raise InvalidParameters(f"A whole number from 0 to {MAX_TOKENS}.", field=f"estimated_tokens.{key}")
        counts.append(value)
    if estimated_cost is not None:
        cost = Decimal(str(estimated_cost))
        if not cost.is_finite() or cost < 0 or cost > MAX_SINGLE_COST:
            raise InvalidParameters(f"A cost from 0 to {MAX_SINGLE_COST} USD.", field="estimated_cost")
        return Estimate(cost.quantize(MONEY_QUANTUM, ROUND_HALF_UP), *counts)
    if not model_name or not estimated_tokens:
        raise InvalidParameters("Send estimated_cost, or model_name with estimated_tokens.", field="estimated_cost")
    quote = price_tokens(model_name=model_name, prompt_tokens=counts[0], completion_tokens=counts[1], at=at)
    if quote is None:
        raise InvalidParameters(f"Unknown model {model_name!r}: no price is known, so send estimated_cost.",
                                field="model_name")
    return Estimate(quote.cost_usd, *counts)


@dataclass
class RuleReading:
    rule: CostThresholdRule
    current_value: Decimal

    @property
    def fired(self) -> bool:
        return self.current_value >= self.rule.threshold_value

    def details(self) -> dict:
        return {"rule_id": self.rule.rule_id, "threshold_type": self.rule.threshold_type,
                "threshold_value": float(self.rule.threshold_value), "current_value": float(self.current_value),
                "action": self.rule.action}


def _rule_matches(rule: CostThresholdRule, target: SpendTarget) -> bool:
    return ((not rule.team_id or rule.team_id == target.team_id)
            and (not rule.model_name or rule.model_name == target.model_name)
            and (not rule.research_category or rule.research_category == target.research_category))


def _scoped(queryset, rule: CostThresholdRule):
    if rule.team_id:
        queryset = queryset.filter(team_id=rule.team_id)
    if rule.model_name:
        queryset = queryset.filter(model_name=rule.model_name)
    if rule.research_category:
        queryset = queryset.filter(research_category=rule.research_category)
    return queryset


def _committed_since(rule: CostThresholdRule, start: datetime, end: datetime | None = None) -> Decimal:
    """Recorded spend from `start` (to `end`) plus the reservations held since then, within the rule's scope."""
    records = UsageRecord.objects.filter(occurred_at__gte=start)
    holds = Reservation.objects.filter(status=Reservation.Status.HELD, created_at__gte=start)
    if end is not None:
        records, holds = records.filter(occurred_at__lt=end), holds.filter(created_at__lt=end)
    spent = _scoped(records, rule).aggregate(total=Sum("cost_usd"))["total"] or ZERO
    held = _scoped(holds, rule).aggregate(total=Sum("estimated_cost"))["total"] or ZERO
    return spent + held


def _percentage_of_tightest(target: SpendTarget, period: str, estimate: Decimal, now: datetime) -> Decimal:
    budgets = [b for b in budgets_applicable(target=target) if b.period == period]
    worst = ZERO
    for state in budget_states(budgets=budgets, at=now):
        projected = state.committed + estimate
        limit = state.budget.limit_usd
        pct = projected / limit * _HUNDRED if limit > 0 else (_HUNDRED if projected > 0 else ZERO)
        worst = max(worst, pct)
    return worst.quantize(Decimal("0.01"), ROUND_HALF_UP)


def _absolute(rule: CostThresholdRule, period: str, estimate: Decimal, now: datetime) -> Decimal:
    if not rule.is_scoped:
        organisation = Budget.objects.filter(is_global_default=True, period=period, is_active=True).first()
        if organisation is not None:  # the organisation's counter: O(1)
            (state,) = budget_states(budgets=[organisation], at=now)
            return state.committed + estimate
    start, end = period_bounds(period, now)
    return _committed_since(rule, start, end) + estimate


def rule_reading(rule: CostThresholdRule, *, target: SpendTarget, estimate: Estimate,
                 now: datetime) -> RuleReading | None:
    """The rule's current value for this call, or None when the rule does not apply to it."""
    if not rule.is_active or not _rule_matches(rule, target):
        return None
    kind = rule.threshold_type
    if kind == ThresholdType.OPERATION_COST:
        value = estimate.cost
    elif kind == ThresholdType.OPERATION_TOKENS:
        value = Decimal(estimate.tokens)
    elif kind == ThresholdType.PERCENTAGE_DAILY:
        value = _percentage_of_tightest(target, Budget.Period.DAILY, estimate.cost, now)
    elif kind == ThresholdType.PERCENTAGE_MONTHLY:
        value = _percentage_of_tightest(target, Budget.Period.MONTHLY, estimate.cost, now)
    elif kind == ThresholdType.ABSOLUTE_DAILY:
        value = _absolute(rule, Budget.Period.DAILY, estimate.cost, now)
    elif kind == ThresholdType.ABSOLUTE_MONTHLY:
        value = _absolute(rule, Budget.Period.MONTHLY, estimate.cost, now)
    elif kind == ThresholdType.RATE_PER_MINUTE:
        spent = _committed_since(rule, now - timedelta(minutes=rule.window_minutes))
        value = ((spent + estimate.cost) / rule.window_minutes).quantize(MONEY_QUANTUM, ROUND_HALF_UP)
    else:  # a type added to the model but not here is a bug, not a silent pass
        raise ValueError(f"Unknown threshold type {kind!r}")
    return RuleReading(rule, value)


# --- Execute with protection --------------------------------------------------------------------

def _throttle_admits(n: int, factor: Decimal) -> bool:
    """Admit call n (1-based) iff ceil(n·f) > ceil((n-1)·f): exactly ceil(N·f) of the first N calls, evenly
    spaced, the first one included (so a throttled breaker lets its trickle through at once)."""
    return math.ceil(n * factor) > math.ceil((n - 1) * factor)


def _seconds(delta: timedelta) -> float:
    return max(round(delta.total_seconds(), 3), 0.001)


def _refusal_open(breaker: CircuitBreaker, now: datetime) -> CircuitBreakerOpen | None:
    """Refuse while open (until recovery_timeout passed) or while a half-open trial is in flight."""
    recovery = timedelta(seconds=breaker.recovery_timeout)
    details = {"breaker": breaker.name, "state": breaker.state, "rule_id": "failure_threshold",
               "threshold_type": "consecutive_failures", "threshold_value": breaker.failure_threshold,
               "current_value": breaker.consecutive_failures}
    if breaker.state == State.OPEN and breaker.opened_at and now < breaker.opened_at + recovery:
        wait = _seconds(breaker.opened_at + recovery - now)
        return CircuitBreakerOpen(
            f"Circuit breaker {breaker.name!r} is open after {breaker.consecutive_failures} consecutive failures; "
            f"one trial call is admitted in {wait:.0f} s.", details=details, retry_after=wait)
    if breaker.state == State.HALF_OPEN and breaker.trial_started_at and now < breaker.trial_started_at + recovery:
        wait = _seconds(breaker.trial_started_at + recovery - now)
        return CircuitBreakerOpen(
            f"Circuit breaker {breaker.name!r} is half-open: a trial call is in flight and decides whether it closes.",
            details={**details, "trial_operation_id": str(breaker.half_open_trial_operation)}, retry_after=wait)
    return None


def _refusal_rule(breaker: CircuitBreaker, reading: RuleReading, *, throttled: bool = False,
                  factor: Decimal | None = None) -> CircuitBreakerOpen:
    rule = reading.rule
    details = {"breaker": breaker.name, "state": breaker.state, **reading.details()}
    if throttled:
        details["throttle_factor"] = float(factor)
        retry_after = float(rule.cooldown_seconds) if factor == 0 else 1.0
        return CircuitBreakerThrottled(
            f"Circuit breaker {breaker.name!r} is throttling: rule {rule.rule_id!r} admits {float(factor):.0%} "
            f"of calls.", details=details, retry_after=retry_after)
    return CircuitBreakerOpen(
        f"Circuit breaker {breaker.name!r} blocked the call: rule {rule.rule_id!r} ({rule.threshold_type}) is at "
        f"{reading.current_value} (threshold {rule.threshold_value}).", details=details,
        retry_after=float(rule.cooldown_seconds) or None)


def _refusal_throttle_rate(breaker: CircuitBreaker) -> CircuitBreakerThrottled:
    rate = breaker.throttle_rate
    return CircuitBreakerThrottled(
        f"Circuit breaker {breaker.name!r} admits {float(rate):.0%} of calls.",
        details={"breaker": breaker.name, "state": breaker.state, "rule_id": "throttle_rate",
                 "threshold_type": "throttle_rate", "threshold_value": float(rate), "current_value": float(rate),
                 "action": "throttle", "throttle_factor": float(rate)},
        retry_after=1.0 if rate > 0 else breaker.recovery_timeout)


def _rules_fire(breaker: CircuitBreaker, readings: list[RuleReading], now: datetime) -> None:
    """Alert for each firing rule whose cooldown has passed (under the breaker lock: one alert per cooldown)."""
    fired = [r for r in readings if r.fired]
    if not fired:
        return
    last = dict(CostThresholdRule.objects.filter(pk__in=[r.rule.pk for r in fired]).values_list("pk", "last_fired_at"))
    for reading in fired:
        rule = reading.rule
        previous = last.get(rule.pk)
        if previous is not None and now < previous + timedelta(seconds=rule.cooldown_seconds):
            continue
        CostThresholdRule.objects.filter(pk=rule.pk).update(last_fired_at=now)
        verb = {Action.BLOCK: "is blocking calls", Action.THROTTLE: "is throttling calls",
                Action.ALERT_ONLY: "fired"}[rule.action]
        _event(breaker, kind=BreakerEvent.Kind.RULE_FIRED, to_state=breaker.state, at=now, rule_id=rule.rule_id,
               reason=f"rule {rule.rule_id!r} {verb}: {rule.threshold_type} at {reading.current_value} "
                      f"(threshold {rule.threshold_value})",
               details=reading.details(), level="critical" if rule.action == Action.BLOCK else "warning")


def _decide(breaker: CircuitBreaker, readings: list[RuleReading]) -> tuple[CircuitBreakerOpen | None, bool]:
    """The rules' verdict for one call: (refusal or None, cost_based). Moves the throttle counter."""
    fired = [r for r in readings if r.fired]
    blocking = next((r for r in fired if r.rule.action == Action.BLOCK), None)
    if blocking is not None:
        return _refusal_rule(breaker, blocking), True
    throttles = [r for r in fired if r.rule.action == Action.THROTTLE]
    tightest = min(throttles, key=lambda r: r.rule.throttle_factor, default=None)
    factor = min([breaker.throttle_rate, *(r.rule.throttle_factor for r in throttles)])
    if factor >= 1:
        return None, False
    breaker.throttle_counter += 1
    if _throttle_admits(breaker.throttle_counter, factor):
        return None, False
    if tightest is not None and tightest.rule.throttle_factor <= breaker.throttle_rate:
        return _refusal_rule(breaker, tightest, throttled=True, factor=factor), True
    return _refusal_throttle_rate(breaker), False


def breaker_execute(*, breaker_name: str, user, api_key=None, operation_type: str = "llm_call",
                    model_name: str = "", estimated_tokens: dict | None = None, estimated_cost=None,
                    research_category: str = "", team_id: int | None = None, ttl_seconds: int | None = None,
                    now: datetime | None = None) -> dict:
    """execute_with_protection: admit the call (with a ledger reservation and an operation_id) or refuse it.

    Raises CircuitBreakerOpen (503), CircuitBreakerThrottled (429) or the ledger's BudgetExceeded (402);
    every outcome is counted in the breaker's statistics.
    """
    now = now or timezone.now()
    breaker = breaker_named(breaker_name)
    team = accounts.team_for_recording(user=user, api_key=api_key, team_id=team_id)
    target = SpendTarget(team_id=team.pk, user_id=user.pk, research_category=research_category or "general",
                         model_name=model_name)
    estimate = operation_estimate(model_name=model_name, estimated_tokens=estimated_tokens,
                                  estimated_cost=estimated_cost, at=now)
    # Rule readings are reads of the ledger: taken before the lock so the lock is held briefly.
    readings = [r for r in (rule_reading(rule, target=target, estimate=estimate, now=now)
                            for rule in breaker.rules.filter(is_active=True)) if r is not None]

    refusal: CostMonitorError | None = None
    with transaction.atomic():
        breaker = CircuitBreaker.objects.select_for_update().get(pk=breaker.pk)
        breaker.total_calls += 1
        refusal = _refusal_open(breaker, now)
        cost_based = False
        trial = refusal is None and breaker.state != State.CLOSED
        if refusal is None:
            _rules_fire(breaker, readings, now)
            refusal, cost_based = _decide(breaker, readings)
        reservation = None
        if refusal is None:
            try:
                reservation = reservation_create(target=target, amount=estimate.cost, operation_type=operation_type,
                                                 ttl_seconds=ttl_seconds)
            except BudgetExceeded as exc:
                exc.details["breaker"] = breaker.name
                refusal, cost_based = exc, True
        if refusal is None:
            breaker.allowed_calls += 1
            breaker.total_estimated_cost += estimate.cost
            BreakerOperation.objects.create(
                operation_id=reservation.operation_id, breaker=breaker, user=user, team=team,
                operation_type=operation_type, model_name=model_name, research_category=target.research_category,
                estimated_cost=estimate.cost, estimated_input_tokens=estimate.input_tokens,
                estimated_output_tokens=estimate.output_tokens, is_trial=trial, created_at=now)
            if trial:
                if breaker.state == State.OPEN:
                    _transition(breaker, State.HALF_OPEN, at=now, operation_id=reservation.operation_id,
                                reason=f"recovery timeout of {breaker.recovery_timeout:g} s passed; one trial call "
                                       f"admitted")
                breaker.half_open_trial_operation = reservation.operation_id
                breaker.trial_started_at = now
        elif isinstance(refusal, CircuitBreakerThrottled):
            breaker.throttled_calls += 1
            if cost_based:
                breaker.cost_savings += estimate.cost
        else:
            breaker.blocked_calls += 1
            if cost_based:
                breaker.cost_blocked_calls += 1
                breaker.cost_savings += estimate.cost
        breaker.save()
    if refusal is not None:
        raise refusal
    return {"allowed": True, "operation_id": str(reservation.operation_id), "breaker": breaker.name,
            "state": breaker.state, "trial": trial, "estimated_cost": float(estimate.cost),
            "expires_at": reservation.expires_at}


# --- Settle (update_operation_cost) -----------------------------------------------------------

def _actual_cost(operation: BreakerOperation, *, actual_cost, prompt_tokens, completion_tokens, success,
                 at: datetime) -> Decimal:
    if actual_cost is not None:
        cost = Decimal(str(actual_cost))
        if not cost.is_finite() or cost < 0 or cost > MAX_SINGLE_COST:
            raise InvalidParameters(f"A cost from 0 to {MAX_SINGLE_COST} USD.", field="actual_cost")
        return cost.quantize(MONEY_QUANTUM, ROUND_HALF_UP)
    if prompt_tokens or completion_tokens:
        quote = price_tokens(model_name=operation.model_name, prompt_tokens=prompt_tokens or 0,
                             completion_tokens=completion_tokens or 0, at=at) if operation.model_name else None
        if quote is None:
            raise InvalidParameters("No price is known for this operation's model: send actual_cost.",
                                    field="actual_cost")
        return quote.cost_usd
    if not success:
        return ZERO  # a failed call that reports no cost cost nothing
    raise InvalidParameters("Send actual_cost, or the tokens the call used.", field="actual_cost")


def breaker_settle(*, breaker_name: str, operation_id, user, api_key=None, success: bool = True, actual_cost=None,
                   prompt_tokens: int | None = None, completion_tokens: int | None = None, error_type: str = "",
                   error_message: str = "", response_time_ms=None, metadata: dict | None = None,
                   now: datetime | None = None) -> dict:
    """update_operation_cost: record the call's outcome and cost, settle its reservation, move the state machine."""
    now = now or timezone.now()
    breaker = breaker_named(breaker_name)
    try:
        operation_id = uuid.UUID(str(operation_id))
    except ValueError:
        raise InvalidParameters("Unknown operation_id.", field="operation_id") from None
    if metadata and not storable_json(metadata):
        raise InvalidParameters("Must not contain NUL characters or unpaired surrogates.", field="metadata")
    with transaction.atomic():
        breaker = CircuitBreaker.objects.select_for_update().get(pk=breaker.pk)
        operation = (BreakerOperation.objects.select_for_update()
                     .filter(breaker=breaker, operation_id=operation_id).first())
        if operation is None or (operation.user_id != user.pk and not is_admin(user)):
            raise InvalidParameters("Unknown operation_id for this breaker.", field="operation_id")
        if operation.status != BreakerOperation.Status.ALLOWED:
            raise InvalidParameters(f"This operation is already {operation.status}.", field="operation_id")
        reservation_status = (Reservation.objects.select_for_update().filter(operation_id=operation_id)
                              .values_list("status", flat=True).first())
        # A hold that is no longer held was settled by a record, or expired or was released — after
        # which a record naming the operation_id is still stored (without a hold to settle).
        recorded_elsewhere = (UsageRecord.objects.filter(operation_id=operation_id).first()
                              if reservation_status != Reservation.Status.HELD else None)
        if recorded_elsewhere is not None:
            # The pipeline already tracked this call with the operation_id (POST /costs/track): don't count it twice.
            record, cost = recorded_elsewhere, recorded_elsewhere.cost_usd
        else:
            cost = _actual_cost(operation, actual_cost=actual_cost, prompt_tokens=prompt_tokens,
                                completion_tokens=completion_tokens, success=success, at=now)
            owner = operation.user
            record = usage_record(user=owner, api_key=api_key if owner.pk == user.pk else None, event=UsageEvent(
                operation_name=f"breaker:{breaker.name}", operation_type=operation.operation_type,
                model_name=operation.model_name, research_category=operation.research_category or "general",
                prompt_tokens=prompt_tokens or 0, completion_tokens=completion_tokens or 0,
                total_tokens=(prompt_tokens or 0) + (completion_tokens or 0), cost_usd=cost,
                response_time_ms=response_time_ms, success=success, error_type=error_type,
                error_message=error_message, metadata=metadata or {}, occurred_at=now, team_id=operation.team_id,
                # A reservation that expired meanwhile was released already: the cost is still recorded.
                operation_id=operation_id if reservation_status == Reservation.Status.HELD else None))

        is_trial = breaker.state == State.HALF_OPEN and breaker.half_open_trial_operation == operation_id
        breaker.total_actual_cost += cost
        if success:
            breaker.consecutive_failures = 0
            breaker.last_success_time = now
            if is_trial:
                _transition(breaker, State.CLOSED, at=now, operation_id=operation_id,
                            reason="the half-open trial call succeeded")
        else:
            breaker.consecutive_failures += 1
            breaker.last_failure_time = now
            if is_trial:
                _transition(breaker, State.OPEN, at=now, operation_id=operation_id,
                            reason=f"the half-open trial call failed ({error_type or 'error'})")
            elif breaker.state == State.CLOSED and breaker.consecutive_failures >= breaker.failure_threshold:
                _transition(breaker, State.OPEN, at=now, operation_id=operation_id, rule_id="failure_threshold",
                            reason=f"{breaker.consecutive_failures} consecutive failures (threshold "
                                   f"{breaker.failure_threshold}); last error: {error_type or 'error'}")
        breaker.save()
        operation.status = BreakerOperation.Status.SETTLED
        operation.actual_cost, operation.success, operation.error_type = cost, success, error_type[:100]
        operation.settled_at = now
        operation.save(update_fields=["status", "actual_cost", "success", "error_type", "settled_at"])
    return {"operation_id": str(operation_id), "settled": True, "success": success, "actual_cost": float(cost),
            "breaker": breaker.name, "state": breaker.state, "consecutive_failures": breaker.consecutive_failures,
            "usage_record_id": record.pk}


# --- Reset and housekeeping ------------------------------------------------------------------

def breaker_reset(*, breaker_name: str, actor, clear_statistics: bool = False,
                  now: datetime | None = None) -> CircuitBreaker:
    """Close the breaker by hand: failure and throttle counters cleared (statistics too, if asked); audited."""
    now = now or timezone.now()
    breaker = breaker_named(breaker_name)
    with transaction.atomic():
        breaker = CircuitBreaker.objects.select_for_update().get(pk=breaker.pk)
        reason = f"reset by {getattr(actor, 'username', None) or 'the system'}"
        if clear_statistics:
            reason += " (statistics cleared)"
        _transition(breaker, State.CLOSED, at=now, actor=actor, reason=reason, kind=BreakerEvent.Kind.RESET)
        breaker.consecutive_failures = 0
        breaker.throttle_counter = 0
        if clear_statistics:
            for name in ("total_calls", "allowed_calls", "blocked_calls", "cost_blocked_calls", "throttled_calls"):
                setattr(breaker, name, 0)
            breaker.total_estimated_cost = breaker.total_actual_cost = breaker.cost_savings = ZERO
        breaker.save()
    return breaker


def operations_expire(*, now: datetime | None = None) -> int:
    """Mark admitted operations whose reservation expired or was released (never settled) as expired."""
    now = now or timezone.now()
    closed = Reservation.objects.filter(status__in=[Reservation.Status.EXPIRED, Reservation.Status.RELEASED])
    return BreakerOperation.objects.filter(status=BreakerOperation.Status.ALLOWED,
                                           operation_id__in=closed.values("operation_id")).update(
        status=BreakerOperation.Status.EXPIRED, settled_at=now)
