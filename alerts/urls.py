"""Alert API routes (mounted under /api/v1/); the reference's paths, with or without a trailing slash."""

from django.urls import re_path

from costmonitor.api.routers import OptionalSlashRouter

from . import views

router = OptionalSlashRouter()
router.register("alerts", views.AlertViewSet, basename="alert")
router.register("alert-channels", views.AlertChannelViewSet, basename="alert-channel")

urlpatterns = [
    re_path(r"^alerts/send/?$", views.SendAlertView.as_view(), name="alerts-send"),
    re_path(r"^alerts/test-channels/?$", views.TestChannelsView.as_view(), name="alerts-test-channels"),
    re_path(r"^alerts/delivery-stats/?$", views.DeliveryStatsView.as_view(), name="alerts-delivery-stats"),
    re_path(r"^alerts/digest/?$", views.DigestSubscriptionView.as_view(), name="alerts-digest"),
    re_path(r"^system/budget-check/?$", views.TriggerBudgetCheckView.as_view(), name="system-budget-check"),
    *router.urls,
]
