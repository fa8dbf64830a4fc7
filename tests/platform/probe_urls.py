"""A test URLconf: the project's routes and error handlers, plus a few probe endpoints that exercise
the platform's plumbing (permissions, validation, crashes, decimals, logging) the way a real app
endpoint would. Used with `@pytest.mark.urls("tests.platform.probe_urls")`."""

import logging
from decimal import Decimal

from django.urls import path
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from costmonitor.api.permissions import CanModifyBudgets, CanReadBudgets
from costmonitor.urls import handler400, handler403, handler404, handler500  # noqa: F401  (used by Django)
from costmonitor.urls import urlpatterns as project_urlpatterns

logger = logging.getLogger("costmonitor.probe")
LEAKY_MESSAGE = 'SELECT secret FROM "budgets_apikey" WHERE key_hash = \'deadbeef\''


class LimitsProbe(APIView):
    """Stands for an admin-only endpoint such as PATCH /api/v1/budget/limits."""

    permission_classes = [CanModifyBudgets]

    def patch(self, request):
        return Response({"changed": True})


class LimitsInput(serializers.Serializer):
    daily_limit = serializers.DecimalField(max_digits=12, decimal_places=2, min_value=Decimal("0"))
    monthly_limit = serializers.DecimalField(max_digits=12, decimal_places=2, min_value=Decimal("0"))


class ValidationProbe(APIView):
    permission_classes = [CanReadBudgets]

    def post(self, request):
        params = LimitsInput(data=request.data)
        params.is_valid(raise_exception=True)
        return Response(params.validated_data)


class DecimalProbe(APIView):
    permission_classes = [CanReadBudgets]

    def get(self, request):
        return Response({"total_cost": Decimal("12.345678"), "budget_limit": Decimal("50.00")})


class CrashingApiView(APIView):
    permission_classes = [CanReadBudgets]

    def get(self, request):
        raise RuntimeError(LEAKY_MESSAGE)


def crashing_plain_view(request):
    """Non-DRF code under /api/: only Django's handler500 stands between it and the client."""
    raise RuntimeError(LEAKY_MESSAGE)


class LoggingProbe(APIView):
    permission_classes = [CanReadBudgets]

    def get(self, request):
        logger.warning("probe log line")
        return Response({"logged": True})


urlpatterns = [
    path("api/v1/probe/limits", LimitsProbe.as_view()),
    path("api/v1/probe/validate", ValidationProbe.as_view()),
    path("api/v1/probe/decimal", DecimalProbe.as_view()),
    path("api/v1/probe/crash", CrashingApiView.as_view()),
    path("api/v1/probe/crash-plain", crashing_plain_view),
    path("api/v1/probe/log", LoggingProbe.as_view()),
    *project_urlpatterns,
]
