"""django-q2 entry points of the platform itself (thin: they call services)."""

from . import health

# (schedule name, dotted function, minutes) — registered by `manage.py setup_schedules`.
SCHEDULES = [
    ("costmonitor.heartbeat", "costmonitor.tasks.heartbeat", 1),
]


def heartbeat() -> None:
    health.heartbeat_record()
