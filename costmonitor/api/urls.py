"""Platform API routes (mounted under /api/v1/)."""

from django.urls import path

from . import views
from .routers import OptionalSlashRouter

router = OptionalSlashRouter()
router.register("api-keys", views.ApiKeyViewSet, basename="api-key")

urlpatterns = [
    path("system/health", views.SystemHealthView.as_view(), name="system-health"),
    *router.urls,
]
