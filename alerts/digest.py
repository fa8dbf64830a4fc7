"""The daily digest: yesterday's spend per team against its daily budget, emailed to users who opted in.

Each subscription remembers the last day it covered; a run claims "yesterday" with a conditional
UPDATE before sending, so a run repeated or late sends each day's digest once. A failed send gives
the day back to be tried on the next run.
"""

from __future__ import annotations

import logging
from datetime import date, datetime, time, timedelta
from decimal import Decimal

from django.conf import settings
from django.core.mail import EmailMessage
from django.db.models import Q, Sum
from django.utils import timezone

from budgets.models import Budget, Team
from budgets.periods import budget_zone, local_date, period_bounds
from budgets.selectors import percentage
from costmonitor.api.scoping import visible_team_ids
from costmonitor.money import ZERO

from .models import DigestSubscription

logger = logging.getLogger("costmonitor.alerts")


def digest_for(*, user, day: date) -> dict:
    """Spend of `day` (BUDGET_TIMEZONE) for the organisation and each team the user can see."""
    from tracking.models import HourlyRollup

    start, end = period_bounds("daily", datetime.combine(day, time(12), tzinfo=budget_zone()))
    rollups = HourlyRollup.objects.filter(hour__gte=start, hour__lt=end)
    team_ids = visible_team_ids(user)
    teams = Team.objects.all() if team_ids is None else Team.objects.filter(pk__in=team_ids)
    spend = dict(rollups.values("team_id").annotate(total=Sum("cost_usd")).values_list("team_id", "total"))
    limits = {}
    for budget in Budget.objects.filter(scope=Budget.Scope.TEAM, period=Budget.Period.DAILY, is_active=True,
                                        team__in=teams).order_by("limit_usd"):
        limits.setdefault(budget.team_id, budget.limit_usd)  # the tightest daily budget speaks for the team
    rows = []
    for team in teams.order_by("name"):
        spent = spend.get(team.pk) or ZERO
        limit = limits.get(team.pk)
        rows.append({"team": team.name, "spent": spent, "budget": limit,
                     "percentage_used": percentage(spent, limit) if limit else None})
    organisation = Budget.objects.filter(is_global_default=True, period=Budget.Period.DAILY).first()
    total = rollups.aggregate(total=Sum("cost_usd"))["total"] or ZERO
    return {"day": day, "teams": rows, "organisation_spent": total if team_ids is None else None,
            "organisation_budget": organisation.limit_usd if organisation and team_ids is None else None}


def _money(value: Decimal | None) -> str:
    return "—" if value is None else f"${value:,.2f}"


def digest_text(digest: dict) -> str:
    lines = [f"CostMonitor spend for {digest['day']:%A %d %B %Y} ({settings.BUDGET_TIMEZONE})", ""]
    if digest["organisation_spent"] is not None:
        used = ""
        if digest["organisation_budget"]:
            used = f" of {_money(digest['organisation_budget'])} " \
                   f"({percentage(digest['organisation_spent'], digest['organisation_budget']):g}%)"
        lines += [f"Organisation: {_money(digest['organisation_spent'])}{used}", ""]
    width = max([len(r["team"]) for r in digest["teams"]] + [4])
    lines.append(f"{'Team':<{width}}  {'Spent':>12}  {'Daily budget':>12}  Used")
    for row in digest["teams"]:
        used = f"{row['percentage_used']:g}%" if row["percentage_used"] is not None else "—"
        lines.append(f"{row['team']:<{width}}  {_money(row['spent']):>12}  {_money(row['budget']):>12}  {used}")
    lines += ["", "You receive this because the daily digest is switched on for your account."]
    return "\n".join(lines) + "\n"


def digest_subscription_set(*, user, enabled: bool) -> DigestSubscription:
    subscription, _ = DigestSubscription.objects.update_or_create(user=user, defaults={"enabled": enabled})
    return subscription


def digests_send(*, now: datetime | None = None) -> int:
    """Email yesterday's digest to every subscriber who has not had it; returns how many were sent."""
    now = now or timezone.now()
    yesterday = local_date(now) - timedelta(days=1)
    not_yet = Q(last_sent_for__isnull=True) | Q(last_sent_for__lt=yesterday)
    sent = 0
    for subscription in (DigestSubscription.objects.filter(not_yet, enabled=True, user__is_active=True)
                         .exclude(user__email="").select_related("user")):
        if not DigestSubscription.objects.filter(not_yet, pk=subscription.pk).update(last_sent_for=yesterday):
            continue  # another run took it
        user = subscription.user
        try:
            EmailMessage(f"CostMonitor daily digest for {yesterday.isoformat()}",
                         digest_text(digest_for(user=user, day=yesterday)),
                         from_email=settings.DEFAULT_FROM_EMAIL, to=[user.email]).send()
        except Exception as exc:
            logger.warning("Daily digest to %s not sent (%s); the next run retries.", user.email, exc)
            DigestSubscription.objects.filter(pk=subscription.pk, last_sent_for=yesterday).update(
                last_sent_for=subscription.last_sent_for)
            continue
        sent += 1
    return sent
