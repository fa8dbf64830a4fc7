"""Recording usage the way the API does (through tracking.services), for arranging test data."""

from __future__ import annotations

from decimal import Decimal

from django.utils import timezone

from tracking import services
from tracking.events import UsageEvent


def record(user, *, cost, occurred_at=None, **fields):
    event = UsageEvent(cost_usd=Decimal(cost), occurred_at=occurred_at or timezone.now(), **fields)
    return services.usage_record(user=user, event=event)
