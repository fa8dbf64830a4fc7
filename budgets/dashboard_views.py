"""Dashboard and analytics endpoints (the reference's BudgetDashboardAPI): parse the query, call
budgets.analytics, answer. Read-only; every one needs read_budgets and counts as a dashboard request.
(/budget/status is budgets.views.BudgetStatusView, which answers with analytics.get_budget_status.)"""

from __future__ import annotations

from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from costmonitor.api.permissions import CanReadBudgets
from costmonitor.api.throttles import DashboardThrottle
from costmonitor.errors import InvalidParameters

from . import analytics

_TRUE, _FALSE = {"true", "1", "yes", "on"}, {"false", "0", "no", "off"}
TEAM = OpenApiParameter("team", int, description="Narrow to one team (admins: any team; researchers: their own).")


def flag(request, name: str, default: bool) -> bool:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    if raw.strip().lower() in _TRUE:
        return True
    if raw.strip().lower() in _FALSE:
        return False
    raise InvalidParameters("Use true or false.", field=name)


def integer(request, name: str, default: int | None = None) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise InvalidParameters("Must be a whole number.", field=name) from None


class DashboardView(APIView):
    permission_classes = [CanReadBudgets]
    throttle_classes = [DashboardThrottle]

    def scope_args(self, request) -> dict:
        return {"user": request.user, "team_id": integer(request, "team")}


class OverviewView(DashboardView):
    """get_dashboard_overview: spend against budget with projections, trends, alerts, breakers, health."""

    @extend_schema(parameters=[TEAM], responses=OpenApiTypes.OBJECT)
    def get(self, request):
        return Response(analytics.get_dashboard_overview(**self.scope_args(request)))


class CostAnalyticsView(DashboardView):
    """get_cost_analytics: series, trend, forecast, categories and efficiency over a time range."""

    @extend_schema(parameters=[
        TEAM, OpenApiParameter("time_range", str, enum=analytics.TIME_RANGES, default="last_7_days"),
        OpenApiParameter("granularity", str, enum=analytics.GRANULARITIES,
                         description="Default: hourly for hour ranges, daily otherwise."),
        OpenApiParameter("include_categories", bool, default=True)], responses=OpenApiTypes.OBJECT)
    def get(self, request):
        return Response(analytics.get_cost_analytics(
            **self.scope_args(request), time_range=request.query_params.get("time_range") or "last_7_days",
            granularity=request.query_params.get("granularity") or None,
            include_categories=flag(request, "include_categories", True)))


class _FormatIsOurs:
    """DRF settings with the `?format=` override turned off: the report reads `format` itself."""

    URL_FORMAT_OVERRIDE = None

    def __getattr__(self, name):
        return getattr(api_settings, name)


class ReportNegotiation(DefaultContentNegotiation):
    settings = _FormatIsOurs()


class CostReportView(DashboardView):
    """get_cost_report: JSON in the envelope, or a CSV file (one row per day × team × model × category)."""

    content_negotiation_class = ReportNegotiation

    @extend_schema(parameters=[
        TEAM, OpenApiParameter("start_date", str, description="ISO date or datetime; default 30 days ago."),
        OpenApiParameter("end_date", str, description="ISO date (inclusive) or datetime; default now."),
        OpenApiParameter("format", str, enum=["json", "csv"], default="json")], responses=OpenApiTypes.OBJECT)
    def get(self, request):
        output = (request.query_params.get("format") or "json").lower()
        dates = {"start_date": request.query_params.get("start_date"),
                 "end_date": request.query_params.get("end_date")}
        if output == "json":
            return Response(analytics.get_cost_report(**self.scope_args(request), **dates))
        if output != "csv":
            raise InvalidParameters("Use json or csv.", field="format")
        filename, lines = analytics.cost_report_csv_rows(**self.scope_args(request), **dates)
        response = StreamingHttpResponse(lines, content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
        return response


class ResearchAnalysisView(DashboardView):
    """get_research_analysis: spend per research category, efficiency and trends over N days."""

    @extend_schema(parameters=[TEAM, OpenApiParameter("days", int, default=30)], responses=OpenApiTypes.OBJECT)
    def get(self, request):
        return Response(analytics.get_research_analysis(**self.scope_args(request), days=integer(request, "days", 30)))


class PerformanceSummaryView(DashboardView):
    """get_performance_summary: this hour and today, per model and per category."""

    @extend_schema(parameters=[TEAM], responses=OpenApiTypes.OBJECT)
    def get(self, request):
        return Response(analytics.get_performance_summary(**self.scope_args(request)))


class SystemPerformanceView(DashboardView):
    """get_performance_metrics: this hour's calls, process resources and database timings."""

    @extend_schema(parameters=[TEAM], responses=OpenApiTypes.OBJECT)
    def get(self, request):
        return Response(analytics.get_performance_metrics(**self.scope_args(request)))
