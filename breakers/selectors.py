"""Read side of the circuit breakers: lists for the API and the portal, and the reference's get_system_status."""

from __future__ import annotations

from django.db.models import Count, Prefetch, Q, QuerySet, Sum

from costmonitor.money import ZERO

from .models import BreakerEvent, BreakerOperation, CircuitBreaker, CostThresholdRule


def _epoch(value) -> float | None:
    return round(value.timestamp(), 3) if value is not None else None


def breakers_with_rules() -> QuerySet[CircuitBreaker]:
    """Every breaker with its rules prefetched (ordered by name; rules by rule_id)."""
    return CircuitBreaker.objects.prefetch_related(
        Prefetch("rules", queryset=CostThresholdRule.objects.select_related("team").order_by("rule_id")))


def breaker_detail(name: str, *, events: int = 20, operations: int = 20) -> dict | None:
    """One breaker for a detail page: the breaker (rules prefetched), its latest events and operations."""
    breaker = breakers_with_rules().filter(name=name).first()
    if breaker is None:
        return None
    return {
        "breaker": breaker,
        "rules": list(breaker.rules.all()),
        "status": breaker_status_dict(breaker),
        "events": list(BreakerEvent.objects.filter(breaker=breaker).select_related("actor")[:events]),
        "operations": list(BreakerOperation.objects.filter(breaker=breaker).select_related("user", "team")
                           [:operations]),
    }


def breaker_statistics(breaker: CircuitBreaker) -> dict:
    return {
        "total_calls": breaker.total_calls,
        "allowed_calls": breaker.allowed_calls,
        "blocked_calls": breaker.blocked_calls,
        "cost_blocked_calls": breaker.cost_blocked_calls,
        "throttled_calls": breaker.throttled_calls,
        "total_estimated_cost": float(breaker.total_estimated_cost),
        "total_actual_cost": float(breaker.total_actual_cost),
        "cost_savings": float(breaker.cost_savings),
    }


def breaker_status_dict(breaker: CircuitBreaker) -> dict:
    """One entry of get_system_status()["circuit_breakers"], field for field, plus a few of ours."""
    return {
        "name": breaker.name,
        "state": breaker.state,
        "failure_count": breaker.consecutive_failures,
        "throttle_rate": float(breaker.throttle_rate),
        "statistics": breaker_statistics(breaker),
        "last_failure_time": _epoch(breaker.last_failure_time),
        "last_success_time": _epoch(breaker.last_success_time),
        "failure_threshold": breaker.failure_threshold,
        "recovery_timeout": breaker.recovery_timeout,
        "opened_at": _epoch(breaker.opened_at),
    }


def breakers_state_counts() -> dict:
    """For the dashboard overview: circuit_breakers_healthy (closed) and circuit_breakers_open (open or half-open)."""
    counts = CircuitBreaker.objects.aggregate(
        total=Count("id"), closed=Count("id", filter=Q(state=CircuitBreaker.State.CLOSED)),
        open=Count("id", filter=Q(state=CircuitBreaker.State.OPEN)),
        half_open=Count("id", filter=Q(state=CircuitBreaker.State.HALF_OPEN)))
    return {"total": counts["total"], "healthy": counts["closed"], "open": counts["open"] + counts["half_open"],
            "half_open": counts["half_open"]}


def _system_health(breakers: list[CircuitBreaker]) -> dict:
    total = len(breakers)
    not_closed = [b for b in breakers if b.state != CircuitBreaker.State.CLOSED]
    if not total:
        return {"status": "healthy", "message": "No circuit breakers configured", "total_breakers": 0}
    if not not_closed:
        return {"status": "healthy", "message": "All circuit breakers operational", "total_breakers": total}
    names = ", ".join(f"{b.name} ({b.state})" for b in not_closed)
    status = "critical" if len(not_closed) == total else "degraded"
    return {"status": status, "message": f"{len(not_closed)} of {total} circuit breakers not closed: {names}",
            "total_breakers": total}


def breakers_system_status() -> dict:
    """get_system_status: every breaker, the manager's totals and the overall health."""
    breakers = list(CircuitBreaker.objects.all())
    totals = CircuitBreaker.objects.aggregate(operations=Sum("total_calls"), blocked=Sum("blocked_calls"),
                                              throttled=Sum("throttled_calls"), saved=Sum("cost_savings"))
    return {
        "circuit_breakers": {b.name: breaker_status_dict(b) for b in breakers},
        "manager_statistics": {
            "breakers_created": len(breakers),
            "total_operations": totals["operations"] or 0,
            # Every refused call: blocked (503/402) and throttled (429).
            "total_blocks": (totals["blocked"] or 0) + (totals["throttled"] or 0),
            "total_cost_saved": float(totals["saved"] or ZERO),
        },
        "system_health": _system_health(breakers),
    }
