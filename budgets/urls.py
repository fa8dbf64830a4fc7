"""Budget API routes (mounted under /api/v1/)."""

from django.urls import include, path
from rest_framework.routers import SimpleRouter

from . import views

router = SimpleRouter()
router.trailing_slash = "/?"  # the reference's paths have no slash, Django's habit adds one: take both
router.register("budgets", views.BudgetViewSet, basename="budget")

urlpatterns = [
    path("budget/check", views.BudgetCheckView.as_view(), name="budget-check"),
    path("budget/reserve", views.ReserveView.as_view(), name="budget-reserve"),
    path("budget/reserve/<uuid:operation_id>", views.ReleaseReservationView.as_view(), name="budget-release"),
    path("budget/limits", views.BudgetLimitsView.as_view(), name="budget-limits"),
    path("budget/summary", views.BudgetSummaryView.as_view(), name="budget-summary"),
    path("budget/trends", views.SpendingTrendsView.as_view(), name="budget-trends"),
    path("budget/status", views.BudgetStatusView.as_view(), name="budget-status"),
    *router.urls,
    path("", include("budgets.dashboard_urls")),
]
