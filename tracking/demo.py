"""Demo usage for `make run`: about 1,500 plausible calls over the last 30 days, so the portal and
the dashboards show something real on first start. Recorded through the normal write path, so
counters and rollups agree with the records (rebuild_counters --check finds no drift).
"""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import UTC, timedelta
from decimal import Decimal

from django.utils import timezone

from budgets.models import Team
from budgets.periods import budget_zone

from .events import UsageEvent
from .models import UsageRecord
from .services import MAX_BULK_EVENTS, usage_record_many

DEMO_MARK = "costmonitor-demo"
DAYS = 30
TARGET_RECORDS = 1650
# (model, share of calls, typical prompt tokens, typical completion tokens)
MODELS = [
    ("gpt-4o-mini", 0.60, 6000, 800),
    ("gpt-4o", 0.25, 12000, 1200),
    ("claude-3-5-sonnet-20241022", 0.15, 16000, 1500),
]
CATEGORIES = [("metabolite_identification", 0.35), ("pathway_analysis", 0.25), ("literature_search", 0.25),
              ("data_validation", 0.15)]
OPERATIONS = {"metabolite_identification": ["metabolite_analysis", "spectrum_annotation"],
              "pathway_analysis": ["pathway_enrichment", "pathway_summary"],
              "literature_search": ["literature_search", "abstract_screening"],
              "data_validation": ["schema_check", "outlier_review"]}
# Calls per local hour of the day: a working day with a lunch dip, a little overnight batch work.
HOUR_WEIGHTS = [1, 1, 1, 1, 1, 1, 2, 4, 8, 12, 13, 12, 7, 10, 12, 12, 10, 7, 4, 3, 2, 2, 1, 1]
FAILURE_RATE = 0.03


def _pick(rng: random.Random, weighted):
    return rng.choices([w[0] for w in weighted], weights=[w[1] for w in weighted])[0]


def demo_events(*, now, rng: random.Random) -> list[UsageEvent]:
    zone = budget_zone()
    today = now.astimezone(zone).replace(hour=0, minute=0, second=0, microsecond=0)
    events = []
    for days_ago in range(DAYS - 1, -1, -1):
        day = today - timedelta(days=days_ago)
        weekend = day.weekday() >= 5
        growth = 0.8 + 0.4 * (DAYS - days_ago) / DAYS  # usage grows a little over the month
        calls = int(TARGET_RECORDS / DAYS * growth * (0.3 if weekend else 1.15) * rng.uniform(0.85, 1.15))
        for _ in range(calls):
            hour = rng.choices(range(24), weights=HOUR_WEIGHTS)[0]
            at = (day + timedelta(hours=hour, seconds=rng.randrange(3600)))
            if at > now:
                continue
            model, _, prompt_mean, completion_mean = rng.choices(MODELS, weights=[m[1] for m in MODELS])[0]
            category = _pick(rng, CATEGORIES)
            failed = rng.random() < FAILURE_RATE
            prompt = max(50, int(rng.gauss(prompt_mean, prompt_mean / 3)))
            completion = 0 if failed else max(10, int(rng.gauss(completion_mean, completion_mean / 3)))
            events.append(UsageEvent(
                operation_name=rng.choice(OPERATIONS[category]), operation_type="llm_call", model_name=model,
                research_category=category, prompt_tokens=prompt, completion_tokens=completion,
                total_tokens=prompt + completion,
                response_time_ms=None if failed else Decimal(str(round(rng.lognormvariate(7, 0.4), 3))),
                request_size=prompt * 4, response_size=completion * 4, success=not failed,
                error_type="RateLimitError" if failed else "", error_message="429 Too Many Requests" if failed else "",
                experiment=f"exp-{rng.randint(1, 6)}", metadata={"source": DEMO_MARK},
                occurred_at=at.astimezone(UTC)))
    return events


def load_demo_usage(team_name: str) -> int:
    """Record the demo usage for the team (once: nothing happens if demo records exist). Returns how many."""
    team = Team.objects.filter(name=team_name).first()
    if team is None or UsageRecord.objects.filter(team=team, metadata__source=DEMO_MARK).exists():
        return 0
    members = list(team.members.order_by("id"))
    if not members:
        return 0
    rng = random.Random(20250806)
    by_member = defaultdict(list)
    for event in demo_events(now=timezone.now(), rng=rng):
        event.team_id = team.pk
        by_member[rng.choice(members)].append(event)
    created = 0
    for user, events in by_member.items():
        for start in range(0, len(events), MAX_BULK_EVENTS):
            created += len(usage_record_many(user=user, events=events[start:start + MAX_BULK_EVENTS]))
    return created
