"""Circuit breaker API routes (mounted under /api/v1/)."""

from django.urls import re_path

from costmonitor.api.routers import OptionalSlashRouter

from . import views

router = OptionalSlashRouter()
router.register("breakers", views.BreakerViewSet, basename="breaker")

_NAME = rf"(?P<name>{views.NAME_REGEX})"

urlpatterns = [
    # Before the router: "status" is not a breaker name.
    re_path(r"^breakers/status/?$", views.BreakerStatusView.as_view(), name="breaker-status"),
    re_path(rf"^breakers/{_NAME}/execute/?$", views.BreakerExecuteView.as_view(), name="breaker-execute"),
    re_path(rf"^breakers/{_NAME}/operations/(?P<operation_id>[0-9a-fA-F-]{{32,36}})/result/?$",
            views.BreakerResultView.as_view(), name="breaker-result"),
    re_path(rf"^breakers/{_NAME}/reset/?$", views.BreakerResetView.as_view(), name="breaker-reset"),
    *router.urls,
]
