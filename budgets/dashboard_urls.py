"""Dashboard and analytics routes (mounted under /api/v1/ by budgets.urls)."""

from django.urls import path

from . import dashboard_views as views

urlpatterns = [
    path("dashboard/overview", views.OverviewView.as_view(), name="dashboard-overview"),
    path("analytics/costs", views.CostAnalyticsView.as_view(), name="analytics-costs"),
    path("analytics/research", views.ResearchAnalysisView.as_view(), name="analytics-research"),
    path("reports/costs", views.CostReportView.as_view(), name="reports-costs"),
    path("metrics/performance-summary", views.PerformanceSummaryView.as_view(), name="performance-summary"),
    path("system/performance", views.SystemPerformanceView.as_view(), name="system-performance"),
]
