"""Project-wide money constants: every amount is a Decimal in USD."""

from decimal import Decimal

MONEY_DIGITS = 18
MONEY_PLACES = 6  # per-call costs are fractions of a cent
ZERO = Decimal("0")
MONEY_QUANTUM = Decimal("0.000001")
MAX_SINGLE_COST = Decimal("1000000")  # anything above is a client bug, not an API call
MAX_RESERVATION = MAX_SINGLE_COST * 1000  # an experiment's hold; far below what a counter column holds


def money_field_kwargs(**extra):
    return {"max_digits": MONEY_DIGITS, "decimal_places": MONEY_PLACES, "default": ZERO, **extra}


def to_money(value) -> Decimal:
    """A Decimal of whole micro-dollars from a sum, a float or None (SQLite sums decimals as floats)."""
    if value is None:
        return ZERO
    if not isinstance(value, Decimal):
        value = Decimal(str(value))
    return value.quantize(MONEY_QUANTUM)
