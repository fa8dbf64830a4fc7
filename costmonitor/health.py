"""Health probes: each component flag is a real check (database query, cache round trip, worker heartbeat)."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta

from django.core.cache import cache
from django.db import connection
from django.utils import timezone

from .api.middleware import api_requests_served
from .models import Heartbeat

PROCESS_STARTED = time.time()
HEARTBEAT_NAME = "qcluster"
HEARTBEAT_FRESH = timedelta(minutes=3)


def heartbeat_record() -> None:
    """Called by the scheduled worker task: proves the cluster and its scheduler are running."""
    Heartbeat.objects.update_or_create(name=HEARTBEAT_NAME, defaults={"beat_at": timezone.now()})


def database_ok() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            return cursor.fetchone()[0] == 1
    except Exception:
        return False


def cache_ok() -> bool:
    probe = f"health:{uuid.uuid4().hex}"
    try:
        cache.set(probe, "ok", 10)
        ok = cache.get(probe) == "ok"
        cache.delete(probe)
        return ok
    except Exception:
        return False


def worker_last_heartbeat():
    try:
        beat = Heartbeat.objects.filter(name=HEARTBEAT_NAME).values_list("beat_at", flat=True).first()
    except Exception:
        return None
    return beat


def worker_ok() -> bool:
    beat = worker_last_heartbeat()
    if beat is not None and timezone.now() - beat < HEARTBEAT_FRESH:
        return True
    try:  # with the Redis broker, django-q2's own cluster stats are visible from any process
        from django_q.status import Stat

        return any(stat.status in ("Idle", "Working") for stat in Stat.get_all())
    except Exception:
        return False


def table_ok(model) -> bool:
    try:
        model.objects.exists()
        return True
    except Exception:
        return False


def system_health() -> dict:
    from breakers.models import CircuitBreaker
    from budgets.models import Budget
    from tracking.models import UsageRecord

    db = database_ok()
    cache_alive = cache_ok()
    worker = worker_ok()
    components = {
        "budget_manager": db and table_ok(Budget),
        "api_metrics_logger": db and table_ok(UsageRecord),
        "cost_persistence": db,
        "alert_system": db and cache_alive,
        "real_time_monitor": worker,
        "circuit_breaker_manager": db and table_ok(CircuitBreaker),
    }
    if not db:
        status = "unhealthy"
    elif all(components.values()):
        status = "healthy"
    else:
        status = "degraded"
    return {
        "status": status,
        "timestamp": round(time.time(), 3),
        "uptime_seconds": round(time.time() - PROCESS_STARTED, 1),
        "request_count": api_requests_served(),
        "components": components,
        "checks": {"database": db, "cache": cache_alive, "worker_heartbeat": worker},
    }
