"""The dashboards' figures: overview, 30-day cost analytics and a 30-day cost report (JSON and CSV),
p50 / p99 from one client, and the SQL statements each makes. Targets: p50 at the largest size within
1.5x of the smallest, overview p50 under 100 ms."""

from __future__ import annotations

from datetime import timedelta

OVERVIEW_TARGET_MS = 100.0
SCALING_TARGET = 1.5


def _paths() -> dict[str, str]:
    from django.utils import timezone

    from budgets.periods import local_date

    today = local_date(timezone.now())
    start = (today - timedelta(days=29)).isoformat()
    return {
        "overview": "/api/v1/dashboard/overview",
        "cost analytics 30 days": "/api/v1/analytics/costs?time_range=last_30_days&granularity=daily",
        "cost report 30 days (JSON)": f"/api/v1/reports/costs?start_date={start}&end_date={today.isoformat()}",
        "cost report 30 days (CSV)": f"/api/v1/reports/costs?start_date={start}&end_date={today.isoformat()}"
                                     "&format=csv",
    }


def _queries(ctx, path: str) -> int:
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client(HTTP_AUTHORIZATION=ctx.headers["Authorization"])
    client.get(path)
    with CaptureQueriesContext(connection) as queries:
        answer = client.get(path)
        if answer.streaming:
            b"".join(answer.streaming_content)
    assert answer.status_code == 200, answer.status_code
    return len(queries)


def run(ctx) -> list[tuple[str, str]]:
    from budgets.analytics import analytics_cache_invalidate

    lines, figures = [], {}
    for label, path in _paths().items():
        # The loader rebuilt the rollups behind the dashboards' back: drop the cached day summaries, time
        # the first (cold) answer, then the steady state.
        analytics_cache_invalidate()
        cold = ctx.measure("GET", path, n=1, concurrency=1, warmup=0, ok=(200,))
        measured = ctx.measure("GET", path, n=200, concurrency=1, warmup=20, ok=(200,))
        figures[label] = measured.p50
        failed = f"   ERRORS {measured.statuses | cold.statuses}" if measured.errors or cold.errors else ""
        lines.append((f"{label} p50 / p99", f"{measured.p50:8.2f} ms / {measured.p99:.2f} ms   "
                                             f"({ctx.ratio_latency(measured.p50)}){failed}"))
        lines.append((f"{label} first answer after a rebuild", f"{cold.p50:8.2f} ms"))
    for label, path in _paths().items():
        try:
            lines.append((f"SQL statements: {label}", f"{_queries(ctx, path):8d}"))
        except Exception as exc:  # a diagnostic: never hide the timings for it
            lines.append((f"SQL statements: {label}", f"n/a ({exc!r})"))
    ctx.store.setdefault("dashboards", {})[ctx.size] = figures
    return lines


def summary(store) -> list[tuple[str, str]]:
    figures = store.get("dashboards", {})
    if not figures:
        return []
    small, large = min(figures), max(figures)
    lines = []
    for size, by_label in sorted(figures.items()):
        p50 = by_label["overview"]
        verdict = "meets" if p50 < OVERVIEW_TARGET_MS else "MISSES"
        lines.append((f"overview p50 at {size:,} records", f"{p50:8.2f} ms   {verdict} the "
                                                            f"{OVERVIEW_TARGET_MS:.0f} ms target"))
    if small != large:
        for label in figures[small]:
            ratio = figures[large][label] / figures[small][label]
            verdict = "meets" if ratio <= SCALING_TARGET else "MISSES"
            lines.append((f"{label}: p50 {large:,} / {small:,}", f"{ratio:8.2f}x   {verdict} the "
                                                                  f"{SCALING_TARGET}x target"))
    return lines
