"""Portal test helpers: session clients for the personas and usage recorded through the real service."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from tracking.events import parse_event
from tracking.services import usage_record


def session_for(user, *, enforce_csrf: bool = False) -> Client:
    client = Client(enforce_csrf_checks=enforce_csrf)
    client.force_login(user)
    return client


@pytest.fixture
def admin_web(admin_user):
    return session_for(admin_user)


@pytest.fixture
def researcher_web(researcher):
    return session_for(researcher)


def record(user, *, cost="0.10", model="gpt-4o-mini", category="literature_search", success=True, hours_ago=0,
           **extra):
    """Store one usage record exactly as POST /costs/track would (events parsed, counters, rollups)."""
    body = {"operation_type": "llm_call", "model_name": model, "research_category": category, "cost_usd": cost,
            "prompt_tokens": 100, "completion_tokens": 50, "success": success,
            "occurred_at": (timezone.now() - timedelta(hours=hours_ago)).isoformat(), **extra}
    return usage_record(user=user, event=parse_event(body))
