"""Budget API routes (mounted under /api/v1/)."""

from django.urls import path

from . import views

urlpatterns = [
    path("budget/check", views.BudgetCheckView.as_view(), name="budget-check"),
    path("budget/reserve", views.ReserveView.as_view(), name="budget-reserve"),
    path("budget/reserve/<uuid:operation_id>", views.ReleaseReservationView.as_view(), name="budget-release"),
    path("budget/limits", views.BudgetLimitsView.as_view(), name="budget-limits"),
]
