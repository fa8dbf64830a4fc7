"""Dashboards and analytics (the reference's BudgetDashboardAPI and Analytics API reads).

Everything here reads the spend counters and the hourly rollups, never raw usage records, so an
answer costs the same at ten thousand or ten million records. Days are local days in
BUDGET_TIMEZONE, built from whole UTC hours. Every function takes the requesting `user` (a
researcher sees their teams, an admin everything) and an optional `team_id` to narrow the view.

Formulas (budget health score, efficiency score, trends, forecasts) are written out in the
docstrings below and in docs/dashboards.md.
"""

from __future__ import annotations

import csv
import hashlib
import math
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from statistics import fmean

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.db import connection, transaction
from django.db.models import Count, Q, Sum
from django.db.models.functions import TruncDate
from django.dispatch import receiver
from django.utils import timezone

from costmonitor.api.scoping import visible_team_ids
from costmonitor.errors import InvalidParameters
from costmonitor.money import ZERO

from .models import Budget, SpendCounter, Team
from .periods import budget_period_key, budget_zone, local_date, period_bounds, period_key
from .projections import HISTORY_DAYS, SpendHistory, local_day_start, project_spend
from .selectors import health_of, percentage, worst_health
from .services import spend_recorded

CHEAPER_MODEL = "gpt-4o-mini"
SHORT_PROMPT_TOKENS = 500  # average prompt tokens per call below which a cheaper model usually suffices
HIGH_ERROR_RATE_PERCENT = 10.0
MAX_REPORT_DAYS = 366
MAX_HOURLY_BUCKETS = 31 * 24 + 1
RECENT_ALERTS = 10


# --- Scope ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Scope:
    """The teams a view covers: None means the whole organisation (admins without ?team=)."""

    team_ids: tuple[int, ...] | None

    @property
    def is_organisation(self) -> bool:
        return self.team_ids is None

    @property
    def rollup_filters(self) -> dict:
        return {} if self.team_ids is None else {"team_id__in": list(self.team_ids)}

    def rollups(self):
        from tracking.models import HourlyRollup

        return HourlyRollup.objects.filter(**self.rollup_filters)


def scope_for(*, user, team_id: int | None = None) -> Scope:
    """A researcher sees their teams (and may narrow to one of them); an admin sees all or one team."""
    visible = visible_team_ids(user)
    if team_id is None:
        return Scope(None if visible is None else tuple(sorted(visible)))
    if visible is None:
        if not Team.objects.filter(pk=team_id).exists():
            raise InvalidParameters(f"There is no team {team_id}.", field="team")
        return Scope((team_id,))
    if team_id not in visible:
        raise PermissionDenied("You can only see the teams you belong to.")
    return Scope((team_id,))


# --- Totals -----------------------------------------------------------------------------------

TOTALS = {
    "cost": Sum("cost_usd"), "ok_cost": Sum("successful_cost_usd"), "calls": Sum("calls"),
    "ok_calls": Sum("successful_calls"), "failed_calls": Sum("failed_calls"), "prompt": Sum("prompt_tokens"),
    "completion": Sum("completion_tokens"), "tokens": Sum("total_tokens"), "rt_sum": Sum("response_time_ms_sum"),
    "rt_count": Sum("response_time_count"),
}


@dataclass
class Totals:
    cost: Decimal = ZERO
    ok_cost: Decimal = ZERO
    calls: int = 0
    ok_calls: int = 0
    failed_calls: int = 0
    prompt: int = 0
    completion: int = 0
    tokens: int = 0
    rt_sum: Decimal = ZERO
    rt_count: int = 0

    @classmethod
    def of(cls, row: dict) -> Totals:
        return cls(**{name: row.get(name) or (ZERO if name in ("cost", "ok_cost", "rt_sum") else 0)
                      for name in TOTALS})

    def add(self, other: Totals) -> None:
        for name in TOTALS:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    @property
    def failed_cost(self) -> Decimal:
        return self.cost - self.ok_cost

    @property
    def avg_cost_per_call(self) -> float:
        return round(float(self.cost) / self.calls, 6) if self.calls else 0.0

    @property
    def avg_response_time_ms(self) -> float:
        return round(float(self.rt_sum) / self.rt_count, 1) if self.rt_count else 0.0

    @property
    def error_rate_percent(self) -> float:
        return round(self.failed_calls / self.calls * 100, 2) if self.calls else 0.0

    @property
    def success_rate_percent(self) -> float:
        return round(self.ok_calls / self.calls * 100, 2) if self.calls else 0.0


def _usd(value) -> float:
    return round(float(value or 0), 6)


def _totals(queryset) -> Totals:
    return Totals.of(queryset.aggregate(**TOTALS))


# --- Trends and forecasts ---------------------------------------------------------------------

# Two-sided 95% critical values of Student's t by degrees of freedom (larger df use 1.96).
_T_CRITICAL = {1: 12.71, 2: 4.30, 3: 3.18, 4: 2.78, 5: 2.57, 6: 2.45, 7: 2.36, 8: 2.31, 9: 2.26, 10: 2.23,
               12: 2.18, 15: 2.13, 20: 2.09, 25: 2.06, 30: 2.04, 60: 2.00, 120: 1.98}
MATERIAL_TREND_PERCENT = 5.0


def _t_critical(df: int) -> float:
    for limit in sorted(_T_CRITICAL):
        if df <= limit:
            return _T_CRITICAL[limit]
    return 1.96


@dataclass(frozen=True)
class LineFit:
    """Least-squares line y = intercept + slope·x over x = 0 … n−1."""

    slope: float
    intercept: float
    r_squared: float
    significant: bool
    n: int
    mean: float

    def at(self, x: float) -> float:
        return self.intercept + self.slope * x


def fit_line(values: list[float]) -> LineFit | None:
    n = len(values)
    if n < 2:
        return None
    x_mean, y_mean = (n - 1) / 2, fmean(values)
    sxx = sum((x - x_mean) ** 2 for x in range(n))
    sxy = sum((x - x_mean) * (y - y_mean) for x, y in enumerate(values))
    slope = sxy / sxx
    intercept = y_mean - slope * x_mean
    sst = sum((y - y_mean) ** 2 for y in values)
    ssr = sum((y - intercept - slope * x) ** 2 for x, y in enumerate(values))
    r_squared = 1 - ssr / sst if sst > 0 else 0.0
    significant = False
    if n >= 3 and slope != 0:
        standard_error = math.sqrt(ssr / (n - 2) / sxx)
        significant = standard_error == 0 or abs(slope / standard_error) >= _t_critical(n - 2)
    return LineFit(slope, intercept, max(0.0, r_squared), significant, n, y_mean)


def trend_analysis(values: list[float]) -> dict:
    """trend_percentage = 100 × slope × n ÷ mean (the fitted change over the window relative to its mean);
    the direction is increasing/decreasing only if the slope is significant (t-test, 95%) and the change
    is at least 5%; confidence is the fit's R²."""
    fit = fit_line(values)
    if fit is None or fit.mean == 0:
        return {"trend_percentage": 0.0, "trend_direction": "stable", "confidence": 0.0}
    change = 100 * fit.slope * fit.n / fit.mean
    direction = "stable"
    if fit.significant and abs(change) >= MATERIAL_TREND_PERCENT:
        direction = "increasing" if change > 0 else "decreasing"
    return {"trend_percentage": round(change, 2), "trend_direction": direction,
            "confidence": round(fit.r_squared, 2)}


def forecast(values: list[float], labels: list[str], periods: int = 3) -> list[dict]:
    """The next `periods` values on the fitted line (never below 0); confidence R² × n ÷ (n + k) for the
    k-th period ahead: bounded by how well the line fits and falling with distance."""
    fit = fit_line(values)
    if fit is None:
        return []
    return [{"period": k, "period_start": labels[k - 1] if k - 1 < len(labels) else None,
             "projected_value": _usd(max(0.0, fit.at(fit.n - 1 + k))),
             "confidence": round(fit.r_squared * fit.n / (fit.n + k), 2)}
            for k in range(1, periods + 1)]


def direction_of(values: list[float]) -> str:
    return trend_analysis(values)["trend_direction"]


# --- Time buckets -----------------------------------------------------------------------------

TIME_RANGES = ("last_hour", "last_6_hours", "last_24_hours", "last_7_days", "last_30_days", "current_month",
               "current_year")
GRANULARITIES = ("hourly", "daily")
_HOUR_RANGES = {"last_hour": 1, "last_6_hours": 6, "last_24_hours": 24}
_DAY_RANGES = {"last_7_days": 7, "last_30_days": 30}


def _hour_floor(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def _days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def range_start(time_range: str, now: datetime) -> datetime:
    """UTC start of a time range; it always ends now. Hour ranges are the last N clock hours counting the
    current one; day ranges are whole local days counting today."""
    if time_range in _HOUR_RANGES:
        return _hour_floor(now) - timedelta(hours=_HOUR_RANGES[time_range] - 1)
    today = local_date(now)
    if time_range in _DAY_RANGES:
        return local_day_start(today - timedelta(days=_DAY_RANGES[time_range] - 1))
    if time_range == "current_month":
        return local_day_start(today.replace(day=1))
    if time_range == "current_year":
        return local_day_start(today.replace(month=1, day=1))
    raise InvalidParameters(f"Use one of: {', '.join(TIME_RANGES)}.", field="time_range")


def _hour_key(hour: datetime) -> str:
    return hour.astimezone(UTC).strftime("%Y-%m-%dT%H:00:00Z")


# --- Day summaries: closed days come from the cache -------------------------------------------

DAY_CACHE_SECONDS = 3600
_GENERATION_KEY = "dashboards:generation"


@dataclass
class DaySummary:
    """A local day (or the part of it in range): cost per UTC hour, and totals per team × model × category."""

    hours: dict[datetime, Decimal] = field(default_factory=dict)
    groups: dict[tuple[int, str, str], Totals] = field(default_factory=dict)

    def total(self) -> Totals:
        total = Totals()
        for group in self.groups.values():
            total.add(group)
        return total


@dataclass
class Window:
    """Every local day of a range, hour-grained (see `window`)."""

    days: dict[date, DaySummary]

    def hours(self) -> dict[datetime, Decimal]:
        return {hour: cost for summary in self.days.values() for hour, cost in summary.hours.items()}

    def groups(self) -> list[tuple[str, str, Totals]]:
        """Totals per (model, category) over the whole window."""
        merged: dict[tuple[str, str], Totals] = {}
        for summary in self.days.values():
            for (_, model, category), totals in summary.groups.items():
                merged.setdefault((model, category), Totals()).add(totals)
        return [(model, category, totals) for (model, category), totals in merged.items()]

    def total(self) -> Totals:
        total = Totals()
        for summary in self.days.values():
            total.add(summary.total())
        return total


def analytics_cache_invalidate() -> None:
    """Forget every cached day summary (they are keyed by this generation), e.g. after rebuilding rollups."""
    cache.add(_GENERATION_KEY, 1, timeout=None)
    try:
        cache.incr(_GENERATION_KEY)
    except ValueError:
        cache.set(_GENERATION_KEY, 2, timeout=None)


@receiver(spend_recorded, dispatch_uid="dashboards-late-spend")
def _late_spend_invalidates_closed_days(sender, changes, **kwargs):
    """A record for a day that is already over changes a cached day: start a new generation (now, and
    again after commit, so a summary read in between is not kept)."""
    today = local_date(timezone.now()).isoformat()
    if any(change.budget.period == Budget.Period.DAILY and change.period_key < today for change in changes):
        analytics_cache_invalidate()
        transaction.on_commit(analytics_cache_invalidate)


def _day_key(scope: Scope, day: date, generation: int) -> str:
    teams = "all" if scope.team_ids is None else ",".join(map(str, scope.team_ids))
    # The database's name too: two deployments (or benchmarks) sharing one cache must not mix their days.
    database = settings.DATABASES["default"]["NAME"]
    digest = hashlib.sha1(f"{database}|{settings.BUDGET_TIMEZONE}|{teams}".encode()).hexdigest()[:16]
    return f"dashboards:day:{generation}:{digest}:{day.isoformat()}"


def _runs(days: list[date]) -> list[list[date]]:
    runs: list[list[date]] = []
    for day in days:
        if runs and (day - runs[-1][-1]).days == 1:
            runs[-1].append(day)
        else:
            runs.append([day])
    return runs


def window(scope: Scope, start: datetime, end: datetime) -> Window:
    """The rollups of the hours from `start`'s hour to `end`, summarised per local day.

    A day that is over and wholly inside the range never changes again (but for late records, which
    start a new cache generation), so its summary is cached for DAY_CACHE_SECONDS; the rest — today, a
    range's partial first or last day, days not cached yet — is read from the rollups, one query per
    run of consecutive days. Warm, a 30-day range reads today's hours only.
    """
    first_hour = _hour_floor(start)
    days = _days(local_date(first_hour), local_date(end))
    now = timezone.now()
    generation = cache.get(_GENERATION_KEY) or 1
    keys = {}
    for day in days:
        day_start, day_end = local_day_start(day), local_day_start(day + timedelta(days=1))
        if day_start >= first_hour and day_end - timedelta(hours=1) <= end and day_end <= now:
            keys[day] = _day_key(scope, day, generation)
    found = cache.get_many(list(keys.values())) if keys else {}
    summaries = {day: found[key] for day, key in keys.items() if key in found}
    for run in _runs([day for day in days if day not in summaries]):
        computed = {day: DaySummary() for day in run}
        rollups = scope.rollups().filter(hour__gte=max(first_hour, local_day_start(run[0])),
                                         hour__lt=local_day_start(run[-1] + timedelta(days=1)), hour__lte=end)
        # Two small answers rather than one per hour × team × model × category: far fewer rows to read.
        for row in rollups.values("hour").annotate(cost=TOTALS["cost"]).order_by():
            computed[local_date(row["hour"])].hours[row["hour"]] = row["cost"] or ZERO
        for row in (rollups.annotate(day=TruncDate("hour", tzinfo=budget_zone()))
                    .values("day", "team_id", "model_name", "research_category").annotate(**TOTALS).order_by()):
            computed[row["day"]].groups[(row["team_id"], row["model_name"], row["research_category"])] = \
                Totals.of(row)
        summaries.update(computed)
        cacheable = {keys[day]: computed[day] for day in run if day in keys}
        if cacheable:
            cache.set_many(cacheable, DAY_CACHE_SECONDS)
    return Window({day: summaries[day] for day in days})


def _series(w: Window, *, start: datetime, end: datetime, granularity: str) -> dict[str, Decimal]:
    """Zero-filled cost per hour (UTC, "2025-08-06T14:00:00Z") or per local day ("2025-08-06")."""
    if granularity == "daily":
        return {day.isoformat(): summary.total().cost for day, summary in w.days.items()}
    found = {_hour_key(hour): cost for hour, cost in w.hours().items()}
    first, last = _hour_floor(start), _hour_floor(end)
    count = int((last - first).total_seconds() // 3600) + 1
    keys = [_hour_key(first + timedelta(hours=i)) for i in range(count)]
    return {key: found.get(key, ZERO) for key in keys}


def _history(w: Window, today: date) -> SpendHistory:
    """The projections' hourly history (complete days before today, local hours) from a window."""
    zone = budget_zone()
    history = SpendHistory(today=today)
    days: dict[date, dict[int, Decimal]] = defaultdict(lambda: defaultdict(lambda: ZERO))
    for day, summary in w.days.items():
        for hour, cost in summary.hours.items():
            if history.first_seen is None or hour < history.first_seen:
                history.first_seen = hour
            if day < today:
                days[day][hour.astimezone(zone).hour] += cost
    history.days = {day: dict(hours) for day, hours in days.items()}
    return history


def _history_window(scope: Scope, now: datetime) -> Window:
    return window(scope, local_day_start(local_date(now) - timedelta(days=HISTORY_DAYS)), now)


def _next_labels(keys: list[str], granularity: str, count: int = 3) -> list[str]:
    if not keys:
        return []
    if granularity == "hourly":
        last = datetime.strptime(keys[-1], "%Y-%m-%dT%H:00:00Z").replace(tzinfo=UTC)
        return [_hour_key(last + timedelta(hours=k)) for k in range(1, count + 1)]
    last = date.fromisoformat(keys[-1])
    return [(last + timedelta(days=k)).isoformat() for k in range(1, count + 1)]


# --- Budgets of a view ------------------------------------------------------------------------

@dataclass
class PeriodView:
    """Spend against the limit that speaks for a scope in one period (daily or monthly)."""

    period: str
    cost: Decimal
    limit: Decimal
    thresholds: Budget  # unsaved when several team budgets are summed: carries limit and thresholds
    start: datetime
    end: datetime

    @property
    def percentage(self) -> float:
        return percentage(self.cost, self.limit)

    @property
    def health(self) -> str:
        return health_of(self.thresholds, self.cost)


def period_view(scope: Scope, period: str, now: datetime) -> PeriodView:
    """The organisation's budget for the whole organisation. For teams: their team budgets of the period
    (the tightest per team, summed) when every team has one, otherwise the organisation's limit, which is
    what binds them; the cost is then the teams' own spend in the period."""
    start, end = period_bounds(period, now)
    organisation = Budget.objects.filter(is_global_default=True, period=period).first() or Budget(
        period=period, limit_usd=ZERO)
    if scope.is_organisation:
        spent = (SpendCounter.objects.filter(budget=organisation, period_key=period_key(period, now))
                 .aggregate(s=Sum("spent"))["s"]) if organisation.pk else None
        return PeriodView(period, spent or ZERO, organisation.limit_usd, organisation, start, end)
    tightest: dict[int, Budget] = {}
    for budget in Budget.objects.filter(scope=Budget.Scope.TEAM, team_id__in=scope.team_ids, period=period,
                                        is_active=True).order_by("limit_usd", "id"):
        tightest.setdefault(budget.team_id, budget)
    if scope.team_ids and len(tightest) == len(scope.team_ids):
        budgets = list(tightest.values())
        spent = SpendCounter.objects.filter(
            budget__in=budgets, period_key=budget_period_key(budgets[0], now)).aggregate(s=Sum("spent"))["s"]
        combined = Budget(period=period, limit_usd=sum((b.limit_usd for b in budgets), ZERO),
                          warning_percentage=min(b.warning_percentage for b in budgets),
                          critical_percentage=min(b.critical_percentage for b in budgets),
                          exceeded_percentage=min(b.exceeded_percentage for b in budgets))
        return PeriodView(period, spent or ZERO, combined.limit_usd, combined, start, end)
    spent = window(scope, start, min(now, end - timedelta(microseconds=1))).total().cost
    return PeriodView(period, spent, organisation.limit_usd, organisation, start, end)


def _projection(view: PeriodView, now: datetime, history: SpendHistory):
    return project_spend(spent=view.cost, start=view.start, end=view.end, at=now, daily=view.period == "daily",
                         history=history)


def _projection_dict(projection) -> dict:
    return {"projected_cost": _usd(projection.projected_cost), "confidence": projection.confidence,
            "projection_method": projection.method}


# --- Budget health score ----------------------------------------------------------------------

def budget_health_score(*, views: list[tuple[PeriodView, object]], error_rate_percent: float) -> float:
    """100 minus penalties, clipped to [0, 100], for the daily and the monthly budget each:

    - utilisation: 15 × min(used %, 100) ÷ 100;
    - thresholds: +10 at the budget's warning %, +10 more at critical %, +15 more at exceeded %;
    - projected overshoot: 20 × min(projected ÷ limit − 1, 1) × projection confidence (0 if within);

    and once: 0.5 × error rate % of today's calls, at most 15.
    """
    penalty = min(15.0, 0.5 * error_rate_percent)
    for view, projection in views:
        used = view.percentage
        penalty += 15 * min(used, 100.0) / 100
        budget = view.thresholds
        for threshold, points in ((budget.warning_percentage, 10), (budget.critical_percentage, 10),
                                  (budget.exceeded_percentage, 15)):
            if used >= float(threshold):
                penalty += points
        if projection is not None:
            if view.limit > 0:
                overshoot = float(projection.projected_cost / view.limit) - 1
            else:
                overshoot = 1.0 if projection.projected_cost > 0 else 0.0
            penalty += 20 * min(max(overshoot, 0.0), 1.0) * projection.confidence
    return round(min(100.0, max(0.0, 100.0 - penalty)), 1)


# --- Alerts and breakers (their apps own the models) ------------------------------------------

def _alerts(scope: Scope):
    """Budget alerts visible in the scope: organisation-wide ones and those of the scope's teams."""
    try:
        from alerts.models import BudgetAlert
    except ImportError:
        return None
    alerts = BudgetAlert.objects.all()
    if scope.is_organisation:
        return alerts
    names = {f.name for f in BudgetAlert._meta.get_fields()}
    if "team" in names:
        return alerts.filter(Q(team_id__in=scope.team_ids) | Q(team__isnull=True))
    if "budget" in names:
        return alerts.filter(Q(budget__team_id__in=scope.team_ids) | Q(budget__scope=Budget.Scope.ORGANIZATION))
    return alerts


def _safely(read, default):
    """Read another app's table; answer `default` if it is not there yet (its migration not applied)."""
    try:
        with transaction.atomic():
            return read()
    except Exception:  # a missing table must not break the dashboard
        return default


def alert_summary(scope: Scope) -> dict:
    alerts = _alerts(scope)
    if alerts is None:
        return {"active": 0, "critical": 0, "recent": []}

    def read():
        active = alerts.filter(acknowledged_at__isnull=True)
        recent = [{"timestamp": round(a.timestamp.timestamp(), 3), "type": a.alert_type, "severity": a.alert_level,
                   "message": a.message}
                  for a in alerts.order_by("-timestamp")[:RECENT_ALERTS]]
        return {"active": active.count(), "critical": active.filter(alert_level__in=("critical", "exceeded")).count(),
                "recent": recent}

    return _safely(read, {"active": 0, "critical": 0, "recent": []})


def breaker_counts() -> dict:
    """Closed breakers are healthy; open and half-open ones (still blocking all but a trial call) are open."""
    try:
        from breakers.models import CircuitBreaker
    except ImportError:
        return {"healthy": 0, "open": 0}

    def read():
        states = dict(CircuitBreaker.objects.values_list("state").annotate(n=Count("id")).order_by())
        return {"healthy": states.get("closed", 0), "open": states.get("open", 0) + states.get("half_open", 0)}

    return _safely(read, {"healthy": 0, "open": 0})


# --- Overview ---------------------------------------------------------------------------------

def _history_daily_totals(history: SpendHistory) -> list[float]:
    return [float(history.day_total(day)) for day in history.observed_days]


def system_health(*, breakers: dict, monitoring_active: bool, organisation_budgets: bool) -> dict:
    """Component statuses; overall is unhealthy only if the budget manager is, degraded if anything else is."""
    components = {
        "budget_manager": {"status": "healthy" if organisation_budgets else "degraded"},
        "real_time_monitor": {"status": "healthy" if monitoring_active else "unhealthy"},
        "circuit_breakers": {"status": "degraded" if breakers["open"] else "healthy"},
        "alert_system": {"status": "healthy" if monitoring_active else "degraded"},
    }
    statuses = [c["status"] for c in components.values()]
    if components["budget_manager"]["status"] == "unhealthy":
        overall = "unhealthy"
    elif all(s == "healthy" for s in statuses):
        overall = "healthy"
    else:
        overall = "degraded"
    return {"overall_status": overall, "components": components}


def get_dashboard_overview(*, user, team_id: int | None = None, now: datetime | None = None) -> dict:
    """The reference's get_dashboard_overview: today's and this month's spend against budget with
    projections, trends, alerts, breakers, today's activity and the health of the system."""
    from costmonitor.health import PROCESS_STARTED, worker_ok

    now = now or timezone.now()
    scope = scope_for(user=user, team_id=team_id)
    daily, monthly = period_view(scope, "daily", now), period_view(scope, "monthly", now)
    recent = _history_window(scope, now)
    history = _history(recent, local_date(now))
    daily_projection, monthly_projection = _projection(daily, now, history), _projection(monthly, now, history)
    today = recent.days[local_date(now)].total()
    totals = _history_daily_totals(history)
    last_week = trend_analysis(totals[-7:])
    alerts = alert_summary(scope)
    breakers = breaker_counts()
    monitoring_active = worker_ok()
    daily_average = fmean(totals) if totals else 0.0
    health = system_health(breakers=breakers, monitoring_active=monitoring_active,
                           organisation_budgets=bool(daily.thresholds.pk or not scope.is_organisation))
    return {
        "metrics": {
            "budget_health_score": budget_health_score(
                views=[(daily, daily_projection), (monthly, monthly_projection)],
                error_rate_percent=today.error_rate_percent),
            "budget_health_status": worst_health([daily.health, monthly.health]),
            "daily_cost": _usd(daily.cost),
            "daily_budget": _usd(daily.limit),
            "daily_percentage": daily.percentage,
            "monthly_cost": _usd(monthly.cost),
            "monthly_budget": _usd(monthly.limit),
            "monthly_percentage": monthly.percentage,
            "daily_projected_cost": _usd(daily_projection.projected_cost),
            "monthly_projected_cost": _usd(monthly_projection.projected_cost),
            "cost_trend_percentage": last_week["trend_percentage"],
            "cost_trend_direction": last_week["trend_direction"],
            "active_alerts": alerts["active"],
            "critical_alerts": alerts["critical"],
            "circuit_breakers_healthy": breakers["healthy"],
            "circuit_breakers_open": breakers["open"],
            "total_api_calls": today.calls,
            "average_response_time": today.avg_response_time_ms,
            "error_rate_percentage": today.error_rate_percent,
            "tokens_consumed": today.tokens,
            "system_uptime": round(time.time() - PROCESS_STARTED, 1),
            "monitoring_active": monitoring_active,
            "last_update_time": round(now.timestamp(), 3),
        },
        "system_health": health,
        "recent_alerts": alerts["recent"],
        "trends": {
            "spending_trends": {
                "daily_average": _usd(daily_average),
                "weekly_average": _usd(daily_average * 7),
                "trend_direction": direction_of(totals),
            },
        },
    }


# --- Budget status ----------------------------------------------------------------------------

def get_budget_status(*, user, team_id: int | None = None, include_projections: bool = True,
                      now: datetime | None = None) -> dict:
    """The reference's get_budget_status: today's and this month's spend against budget, with
    end-of-period projections (projected_cost, confidence, projection_method) when asked."""
    now = now or timezone.now()
    scope = scope_for(user=user, team_id=team_id)
    daily, monthly = period_view(scope, "daily", now), period_view(scope, "monthly", now)

    def summary(view: PeriodView) -> dict:
        return {"total_cost": _usd(view.cost), "budget_limit": _usd(view.limit), "percentage_used": view.percentage,
                "over_budget": view.cost > view.limit, "remaining_budget": _usd(max(view.limit - view.cost, ZERO))}

    answer = {"budget_summary": {
        "daily_budget": summary(daily), "monthly_budget": summary(monthly),
        "budget_health": worst_health([daily.health, monthly.health]),
        # Flat fields the reference's TypeScript client reads.
        "daily_cost": _usd(daily.cost), "daily_percentage": daily.percentage,
        "monthly_cost": _usd(monthly.cost), "monthly_percentage": monthly.percentage,
    }}
    if include_projections:
        history = _history(_history_window(scope, now), local_date(now))
        daily_projection, monthly_projection = _projection(daily, now, history), _projection(monthly, now, history)
        answer["budget_summary"]["daily_budget"]["projected_end_of_day"] = _usd(daily_projection.projected_cost)
        answer["budget_summary"]["monthly_budget"]["projected_end_of_month"] = _usd(
            monthly_projection.projected_cost)
        answer["projections"] = {"daily": _projection_dict(daily_projection),
                                 "monthly": _projection_dict(monthly_projection)}
    return answer


# --- Cost analytics ---------------------------------------------------------------------------

def _cheaper_price_ratio(model: str, prompt: int, completion: int, at: datetime) -> float | None:
    """Price of the same tokens on CHEAPER_MODEL ÷ on `model` (from the price table), or None if unknown."""
    from tracking.pricing import price_tokens

    if model == CHEAPER_MODEL:
        return None
    current = price_tokens(model_name=model, prompt_tokens=prompt, completion_tokens=completion, at=at)
    cheaper = price_tokens(model_name=CHEAPER_MODEL, prompt_tokens=prompt, completion_tokens=completion, at=at)
    if current is None or cheaper is None or current.cost_usd <= 0:
        return None
    ratio = float(cheaper.cost_usd / current.cost_usd)
    return ratio if ratio < 1 else None


@dataclass
class Efficiency:
    analysis: dict
    score: float


def efficiency_analysis(groups: list[tuple[str, str, Totals]], *, at: datetime) -> Efficiency:
    """Cost per token and per successful operation, optimisation opportunities and the efficiency score.

    Opportunities: (1) model_optimization — a (model, category) whose calls average fewer than
    SHORT_PROMPT_TOKENS prompt tokens on a model dearer than CHEAPER_MODEL: the saving is its cost ×
    (1 − price of its tokens on CHEAPER_MODEL ÷ price on its model), both from the price table;
    (2) error_reduction — a (model, category) failing at least HIGH_ERROR_RATE_PERCENT of its calls:
    the saving is what its failed calls cost.

    overall_efficiency_score = 100 × (1 − avoidable ÷ total cost), where avoidable = the cost of failed
    calls + for each model_optimization group, its successful cost × (1 − price ratio): the share of
    spend that bought successful results at the cheapest suitable price.
    """
    total = Totals()
    opportunities, avoidable = [], ZERO
    for model, category, group in groups:
        total.add(group)
        avoidable += group.failed_cost
        if group.calls and group.prompt and group.prompt / group.calls < SHORT_PROMPT_TOKENS:
            ratio = _cheaper_price_ratio(model, group.prompt, group.completion, at)
            if ratio is not None and group.cost > 0:
                saving = group.cost * Decimal(str(1 - ratio))
                avoidable += group.ok_cost * Decimal(str(1 - ratio))
                opportunities.append({
                    "type": "model_optimization", "potential_savings": _usd(saving), "model": model,
                    "research_category": category or "uncategorised",
                    "recommendation": (f"Consider using {CHEAPER_MODEL} for {category or 'uncategorised'} queries on "
                                       f"{model}: {group.calls} calls averaged {group.prompt // group.calls} prompt "
                                       f"tokens."),
                })
        if group.calls and group.error_rate_percent >= HIGH_ERROR_RATE_PERCENT and group.failed_cost > 0:
            opportunities.append({
                "type": "error_reduction", "potential_savings": _usd(group.failed_cost), "model": model,
                "research_category": category or "uncategorised",
                "recommendation": (f"{group.error_rate_percent}% of {model or 'unnamed model'} calls for "
                                   f"{category or 'uncategorised'} failed; fix their inputs or retries."),
            })
    opportunities.sort(key=lambda o: -o["potential_savings"])
    score = 100.0 if total.cost <= 0 else round(max(0.0, 100 * (1 - float(avoidable / total.cost))), 1)
    analysis = {
        "cost_per_token": round(float(total.cost) / total.tokens, 8) if total.tokens else 0.0,
        "cost_per_successful_operation": round(float(total.cost) / total.ok_calls, 6) if total.ok_calls else 0.0,
        "overall_efficiency_score": score,
        "optimization_opportunities": opportunities[:5],
    }
    return Efficiency(analysis, score)


def category_totals(groups: list[tuple[str, str, Totals]]) -> dict[str, Totals]:
    by_category: dict[str, Totals] = {}
    for _, category, group in groups:
        by_category.setdefault(category or "uncategorised", Totals()).add(group)
    return dict(sorted(by_category.items(), key=lambda item: -item[1].cost))


def _top_categories(by_category: dict[str, Totals], total_cost: Decimal, limit: int = 10) -> list[dict]:
    return [{"category": name, "total_cost": _usd(t.cost), "total_calls": t.calls,
             "average_cost_per_call": t.avg_cost_per_call, "percentage": percentage(t.cost, total_cost)}
            for name, t in list(by_category.items())[:limit]]


def get_cost_analytics(*, user, team_id: int | None = None, time_range: str = "last_7_days",
                       granularity: str | None = None, include_categories: bool = True,
                       now: datetime | None = None) -> dict:
    """The reference's get_cost_analytics over one of TIME_RANGES, per hour or per local day.

    The trend and the forecast are fitted over the complete periods only (the current hour or day is
    still filling up and would bend the line down); the series shows it.
    """
    now = now or timezone.now()
    if time_range not in TIME_RANGES:
        raise InvalidParameters(f"Use one of: {', '.join(TIME_RANGES)}.", field="time_range")
    granularity = granularity or ("hourly" if time_range in _HOUR_RANGES else "daily")
    if granularity not in GRANULARITIES:
        raise InvalidParameters("Use hourly or daily.", field="granularity")
    start = range_start(time_range, now)
    if granularity == "hourly" and (now - start) > timedelta(hours=MAX_HOURLY_BUCKETS):
        raise InvalidParameters("Hourly granularity covers at most 31 days; use daily.", field="granularity")
    scope = scope_for(user=user, team_id=team_id)
    w = window(scope, start, now)
    series = _series(w, start=start, end=now, granularity=granularity)
    keys, values = list(series), [float(v) for v in series.values()]
    complete = values[:-1] if len(values) > 2 else values
    total_cost = sum(series.values(), ZERO)
    groups = w.groups()
    answer = {
        "trends": {
            "time_range": time_range,
            "granularity": granularity,
            "time_series": {key: _usd(value) for key, value in series.items()},
            "total_cost": _usd(total_cost),
            "average_cost": _usd(fmean(values)) if values else 0.0,
            "min_cost": _usd(min(values, default=0)),
            "max_cost": _usd(max(values, default=0)),
            "trend_analysis": trend_analysis(complete),
            "forecast": forecast(complete, _next_labels(keys[: len(complete)], granularity)),
        },
        "efficiency_analysis": efficiency_analysis(groups, at=now).analysis,
    }
    if include_categories:
        by_category = category_totals(groups)
        answer["category_analysis"] = {
            "category_breakdown": {name: _usd(t.cost) for name, t in by_category.items()},
            "top_categories": _top_categories(by_category, total_cost),
        }
    return answer


# --- Cost report ------------------------------------------------------------------------------

@dataclass(frozen=True)
class ReportRange:
    start: datetime
    end: datetime


def report_range(start_date: str | None, end_date: str | None, *, now: datetime | None = None) -> ReportRange:
    """Parse the report's dates: ISO datetimes ("2025-08-01T00:00:00Z"; naive means UTC) or local dates
    ("2025-08-01": from its local midnight; as end date: to its end). Default: the last 30 local days."""
    from django.utils.dateparse import parse_date, parse_datetime

    now = now or timezone.now()

    def parse(raw: str | None, field: str, is_end: bool) -> datetime | None:
        if raw in (None, ""):
            return None
        raw = raw.strip()
        try:  # a bare date first: parse_datetime would also take it, as midnight
            day = parse_date(raw)
            moment = None if day else parse_datetime(raw)
        except ValueError:
            moment = day = None
        try:  # at the ends of the calendar the next day, the UTC instant or the local day may not exist
            if day is not None:
                moment = local_day_start(day + timedelta(days=1)) - timedelta(microseconds=1) if is_end else \
                    local_day_start(day)
            elif moment is not None and not timezone.is_aware(moment):
                moment = moment.replace(tzinfo=UTC)
            if moment is not None:
                local_date(moment)
                return moment.astimezone(UTC)
        except OverflowError:
            raise InvalidParameters("The date is out of range.", field=field) from None
        raise InvalidParameters("Use an ISO 8601 date (2025-08-01) or datetime (2025-08-01T00:00:00Z).",
                                field=field)

    start, end = parse(start_date, "start_date", False), parse(end_date, "end_date", True)
    end = end or now
    try:
        start = start or local_day_start(local_date(end) - timedelta(days=29))
    except OverflowError:
        raise InvalidParameters("The date is out of range.", field="end_date") from None
    if end < start:
        raise InvalidParameters("end_date is before start_date.", field="end_date")
    if (local_date(end) - local_date(start)).days + 1 > MAX_REPORT_DAYS:
        raise InvalidParameters(f"A report covers at most {MAX_REPORT_DAYS} days.", field="end_date")
    return ReportRange(start.astimezone(UTC), end.astimezone(UTC))


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def get_cost_report(*, user, team_id: int | None = None, start_date: str | None = None,
                    end_date: str | None = None, now: datetime | None = None) -> dict:
    """The reference's get_cost_report (JSON): summary, daily costs (local days, zero-filled), category and
    model breakdowns, and the cost per local hour of day ("00" … "23")."""
    period = report_range(start_date, end_date, now=now)
    scope = scope_for(user=user, team_id=team_id)
    # Reports are hourly-grained: a range starting at 10:30 includes the whole 10:00 hour.
    w = window(scope, period.start, period.end)
    groups = w.groups()
    total = Totals()
    by_model: dict[str, Totals] = {}
    for model, _, group in groups:
        total.add(group)
        by_model.setdefault(model or "unspecified", Totals()).add(group)
    by_category = category_totals(groups)
    daily = _series(w, start=period.start, end=period.end, granularity="daily")
    zone = budget_zone()
    by_hour_of_day = [ZERO] * 24
    for hour, cost in w.hours().items():
        by_hour_of_day[hour.astimezone(zone).hour] += cost
    hourly = {f"{h:02d}": _usd(cost) for h, cost in enumerate(by_hour_of_day)}
    return {"cost_report": {
        "summary": {
            "total_cost": _usd(total.cost), "total_calls": total.calls, "success_rate": total.success_rate_percent,
            "avg_cost_per_call": total.avg_cost_per_call,
            "date_range": {"start": _iso(period.start), "end": _iso(period.end)},
        },
        "daily_costs": {day: _usd(cost) for day, cost in daily.items()},
        "category_breakdown": {name: {"cost": _usd(t.cost), "calls": t.calls,
                                      "percentage": percentage(t.cost, total.cost)}
                               for name, t in by_category.items()},
        "model_breakdown": {name: {"cost": _usd(t.cost), "calls": t.calls, "avg_cost": t.avg_cost_per_call}
                            for name, t in sorted(by_model.items(), key=lambda item: -item[1].cost)},
        "hourly_distribution": hourly,
    }}


CSV_COLUMNS = ["date", "team", "model", "research_category", "calls", "successful_calls", "failed_calls",
               "prompt_tokens", "completion_tokens", "total_tokens", "cost_usd"]


class _Echo:
    def write(self, value):
        return value


def _cell(value):
    """Text a spreadsheet would run as a formula (=, +, -, @ first) is prefixed with an apostrophe."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def cost_report_csv_rows(*, user, team_id: int | None = None, start_date: str | None = None,
                         end_date: str | None = None, now: datetime | None = None):
    """(filename, iterator of CSV lines): one row per local day × team × model × category, with a header.

    Parameters are checked before the first line is produced, so errors answer INVALID_PARAMETERS."""
    period = report_range(start_date, end_date, now=now)
    scope = scope_for(user=user, team_id=team_id)
    w = window(scope, period.start, period.end)
    team_ids = {team for summary in w.days.values() for team, _, _ in summary.groups}
    names = dict(Team.objects.filter(pk__in=team_ids).values_list("pk", "name"))
    writer = csv.writer(_Echo())
    filename = f"costmonitor-report-{local_date(period.start).isoformat()}-{local_date(period.end).isoformat()}.csv"

    def lines():
        yield "\ufeff" + writer.writerow(CSV_COLUMNS)  # the BOM makes spreadsheets read UTF-8
        block = []
        for day, summary in w.days.items():
            for (team, model, category), t in sorted(summary.groups.items(),
                                                     key=lambda item: (names.get(item[0][0], ""), *item[0][1:])):
                block.append(writer.writerow([
                    day.isoformat(), _cell(names.get(team, "")), _cell(model), _cell(category), t.calls,
                    t.ok_calls, t.failed_calls, t.prompt, t.completion, t.tokens, f"{t.cost:.6f}"]))
                if len(block) == 500:  # a few large writes, not one per row
                    yield "".join(block)
                    block = []
        if block:
            yield "".join(block)

    return filename, lines()


# --- Research analysis ------------------------------------------------------------------------

def get_research_analysis(*, user, team_id: int | None = None, days: int = 30, now: datetime | None = None) -> dict:
    """The reference's get_research_analysis over the last `days` local days (today included).

    Efficiency of a category = its cost per successful call (lower is better). Trends: cost and calls by
    least squares over the complete days (see trend_analysis); efficiency improves when the daily cost per
    successful call falls significantly, declines when it rises.
    """
    now = now or timezone.now()
    if not 1 <= days <= MAX_REPORT_DAYS:
        raise InvalidParameters(f"Between 1 and {MAX_REPORT_DAYS}.", field="days")
    scope = scope_for(user=user, team_id=team_id)
    today = local_date(now)
    first = today - timedelta(days=days - 1)
    w = window(scope, local_day_start(first), now)
    groups = w.groups()
    by_category = category_totals(groups)
    total = w.total()
    complete_days = _days(first, today - timedelta(days=1)) or [today]
    daily = [w.days[day].total() for day in complete_days]
    per_success = [float(t.cost) / t.ok_calls for t in daily if t.ok_calls]
    efficiency_direction = direction_of(per_success)
    ranked = sorted(((float(t.cost) / t.ok_calls if t.ok_calls else math.inf, name)
                     for name, t in by_category.items() if t.calls), key=lambda item: item)
    return {
        "analysis_period": {"days": days, "start_date": first.isoformat(), "end_date": today.isoformat()},
        "total_cost": _usd(total.cost),
        "total_calls": total.calls,
        "category_breakdown": {name: _usd(t.cost) for name, t in by_category.items()},
        "top_categories": [{"category": c["category"], "total_cost": c["total_cost"], "total_calls": c["total_calls"],
                            "percentage": c["percentage"], "avg_cost_per_call": c["average_cost_per_call"]}
                           for c in _top_categories(by_category, total.cost)],
        "efficiency_metrics": {
            "most_efficient_category": ranked[0][1] if ranked else None,
            "least_efficient_category": ranked[-1][1] if ranked else None,
            "overall_efficiency_score": efficiency_analysis(groups, at=now).score,
        },
        "trends": {
            "cost_trend": direction_of([float(t.cost) for t in daily]),
            "usage_trend": direction_of([float(t.calls) for t in daily]),
            "efficiency_trend": {"decreasing": "improving", "increasing": "declining"}.get(efficiency_direction,
                                                                                          "stable"),
        },
    }


# --- Performance ------------------------------------------------------------------------------

def _this_hour(scope: Scope, now: datetime):
    # A range, not equality: on SQLite the rollups' raw upsert stores hours as "…+00:00" text.
    return scope.rollups().filter(hour__gte=_hour_floor(now), hour__lt=_hour_floor(now) + timedelta(hours=1))


def _activity(totals: Totals, *, with_tokens_per_call: bool) -> dict:
    answer = {
        "total_calls": totals.calls, "successful_calls": totals.ok_calls, "failed_calls": totals.failed_calls,
        "total_cost": _usd(totals.cost), "avg_cost_per_call": totals.avg_cost_per_call,
        "total_tokens": totals.tokens,
    }
    if with_tokens_per_call:
        answer["avg_tokens_per_call"] = round(totals.tokens / totals.calls, 1) if totals.calls else 0.0
    answer["avg_response_time_ms"] = totals.avg_response_time_ms
    answer["error_rate_percent"] = totals.error_rate_percent
    return answer


def get_performance_summary(*, user, team_id: int | None = None, now: datetime | None = None) -> dict:
    """The reference's get_performance_summary: the current UTC hour, the current local day, and today's
    calls per model and per category."""
    now = now or timezone.now()
    scope = scope_for(user=user, team_id=team_id)
    hour = _totals(_this_hour(scope, now))
    groups = window(scope, period_bounds("daily", now)[0], now).groups()
    day, by_model = Totals(), {}
    for model, _, group in groups:
        day.add(group)
        by_model.setdefault(model or "unspecified", Totals()).add(group)
    return {
        "current_hour": _activity(hour, with_tokens_per_call=True),
        "current_day": _activity(day, with_tokens_per_call=False),
        "model_breakdown": {name: {"total_calls": t.calls, "total_cost": _usd(t.cost),
                                   "success_rate": t.success_rate_percent}
                            for name, t in sorted(by_model.items(), key=lambda item: -item[1].cost)},
        "category_breakdown": {name: {"total_calls": t.calls, "total_cost": _usd(t.cost),
                                      "avg_cost_per_call": t.avg_cost_per_call}
                               for name, t in category_totals(groups).items()},
    }


def _database_performance() -> dict:
    """Average time of a few small real queries, and connection counts (pg_stat_activity on PostgreSQL)."""
    probes = [
        lambda: Budget.objects.filter(is_global_default=True).count(),
        lambda: SpendCounter.objects.order_by("-id").values_list("id", flat=True).first(),
        lambda: Team.objects.exists(),
    ]
    started = time.perf_counter()
    for probe in probes:
        probe()
    avg_ms = (time.perf_counter() - started) * 1000 / len(probes)
    active = total = 1
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FILTER (WHERE state = 'active'), count(*) FROM pg_stat_activity "
                           "WHERE datname = current_database()")
            active, total = cursor.fetchone()
    return {"avg_query_time_ms": round(avg_ms, 2), "connection_pool_usage": active, "total_connections": total}


_cpu_sampled = False


def _system_resources() -> dict:
    """This process's memory (RSS), the machine's CPU use since the last sample, and disk used where we run."""
    global _cpu_sampled
    import psutil
    from django.conf import settings

    process = psutil.Process()
    # cpu_percent compares with the previous call; the very first call in a process has nothing to compare.
    cpu = psutil.cpu_percent(interval=None if _cpu_sampled else 0.1)
    _cpu_sampled = True
    return {
        "memory_usage_mb": round(process.memory_info().rss / 2**20, 1),
        "cpu_usage_percent": cpu,
        "disk_usage_mb": round(psutil.disk_usage(str(settings.BASE_DIR)).used / 2**20, 1),
    }


def get_performance_metrics(*, user, team_id: int | None = None, now: datetime | None = None) -> dict:
    """The reference's get_performance_metrics: the current hour's calls (throughput per minute over the
    minutes elapsed in it), this process's resources (psutil) and database timings."""
    now = now or timezone.now()
    scope = scope_for(user=user, team_id=team_id)
    hour = _totals(_this_hour(scope, now))
    minutes = max(1.0, (now - _hour_floor(now)).total_seconds() / 60)
    return {"performance_summary": {
        "current_hour": {"total_calls": hour.calls, "avg_response_time_ms": hour.avg_response_time_ms,
                         "error_rate_percent": hour.error_rate_percent,
                         "throughput_per_minute": round(hour.calls / minutes, 2)},
        "system_resources": _system_resources(),
        "database_performance": _database_performance(),
    }}
