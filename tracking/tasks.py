"""django-q2 entry points of the ledger (thin: they call services)."""

from budgets import services

# (schedule name, dotted function, minutes) — registered by `manage.py setup_schedules`.
# The alerts monitor cycle also expires holds; this schedule keeps holds from leaking even where the
# monitor is not deployed, and running both is safe (expiry claims rows with SKIP LOCKED).
SCHEDULES = [
    ("tracking.reservations_expire", "tracking.tasks.reservations_expire", 1),
]


def reservations_expire() -> int:
    return services.reservations_expire()
