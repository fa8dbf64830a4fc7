"""Platform API routes (mounted under /api/v1/)."""

from django.urls import path
from rest_framework.routers import SimpleRouter

from . import views

router = SimpleRouter(trailing_slash="/?")
router.register("api-keys", views.ApiKeyViewSet, basename="api-key")

urlpatterns = [
    path("system/health", views.SystemHealthView.as_view(), name="system-health"),
    *router.urls,
]
