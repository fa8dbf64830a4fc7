"""django-q2 entry points of the circuit breakers (thin: they call services)."""

from . import services

# (schedule name, dotted function, minutes) — registered by `manage.py setup_schedules`.
SCHEDULES = [
    ("breakers.operations_expire", "breakers.tasks.operations_expire", 5),
]


def operations_expire() -> int:
    return services.operations_expire()
