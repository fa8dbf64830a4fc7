"""django-q2 entry points of the alerts app (thin: each calls one service).

The monitor cycle runs every minute; the digest job every hour (it sends yesterday's digest once
per subscriber, so the first run of a day sends and the others find nothing to do).
"""

from __future__ import annotations

from . import digest, services

# (schedule name, dotted function, minutes) — registered by `manage.py setup_schedules`.
SCHEDULES = [
    ("alerts.monitor_cycle", "alerts.tasks.monitor_cycle", 1),
    ("alerts.daily_digest", "alerts.tasks.daily_digest", 60),
]


def deliver(delivery_id: int) -> str:
    """Send one alert delivery (claimed first, so a duplicate task is harmless)."""
    return services.delivery_attempt(delivery_id=delivery_id).status


def monitor_cycle() -> dict:
    return services.monitor_cycle_run()


def daily_digest() -> int:
    return digest.digests_send()
