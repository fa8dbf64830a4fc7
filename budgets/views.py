"""Budget endpoints (the reference's BudgetManager): parse, authorise, call services, shape answers."""

from decimal import Decimal

from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import status, viewsets
from rest_framework.response import Response
from rest_framework.views import APIView

from budgets import accounts
from costmonitor.api.permissions import CanModifyBudgets, CanReadBudgets, CanTrackCosts, ReadOrModify
from costmonitor.api.scoping import visible_team_ids
from costmonitor.api.throttles import BudgetCheckThrottle, DashboardThrottle
from costmonitor.errors import InvalidParameters
from tracking.pricing import price_tokens

from . import selectors, services
from .serializers import (
    BudgetCheckRequestSerializer,
    BudgetCheckResponseSerializer,
    BudgetLimitsSerializer,
    BudgetSerializer,
    BudgetStatusQuerySerializer,
    BudgetStatusSerializer,
    BudgetSummarySerializer,
    ReservationSerializer,
    ReserveRequestSerializer,
    SpendingTrendsSerializer,
    TrendsQuerySerializer,
)


def _target(request, params) -> services.SpendTarget:
    team = accounts.team_for_recording(user=request.user, api_key=request.auth, team_id=params.get("team"))
    return services.SpendTarget(team_id=team.pk, user_id=request.user.pk,
                                research_category=params.get("research_category", ""),
                                model_name=params.get("model_name", ""))


class BudgetCheckView(APIView):
    """check_budget_status: would this cost fit every applicable budget? 402 BUDGET_EXCEEDED if not."""

    permission_classes = [CanTrackCosts]
    throttle_classes = [BudgetCheckThrottle]

    @extend_schema(request=BudgetCheckRequestSerializer, responses=BudgetCheckResponseSerializer)
    def post(self, request):
        params = BudgetCheckRequestSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        result = services.budget_check(target=_target(request, params.validated_data),
                                       amount=params.validated_data["cost_amount"])
        if not result.allowed:
            raise services.budget_exceeded_error(result)
        return Response(selectors.check_result_dict(result, team_ids=visible_team_ids(request.user)))


class ReserveView(APIView):
    """Hold an estimated cost against every applicable budget; settle by tracking with its operation_id."""

    permission_classes = [CanTrackCosts]
    throttle_classes = [BudgetCheckThrottle]

    @extend_schema(request=ReserveRequestSerializer, responses={201: ReservationSerializer})
    def post(self, request):
        params = ReserveRequestSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        data = params.validated_data
        amount = data.get("estimated_cost")
        if amount is None:
            amount = reservation_estimate(data)
        reservation = services.reservation_create(target=_target(request, data), amount=amount,
                                                  operation_type=data["operation_type"],
                                                  ttl_seconds=data.get("ttl_seconds"))
        return Response(reservation_dict(reservation), status=status.HTTP_201_CREATED)


def reservation_estimate(data) -> Decimal:
    tokens = data["estimated_tokens"]
    quote = price_tokens(model_name=data["model_name"], prompt_tokens=tokens["input"],
                         completion_tokens=tokens.get("output", 0), at=timezone.now())
    if quote is None:
        raise InvalidParameters(f"Unknown model {data['model_name']!r}: send estimated_cost.", field="model_name")
    return quote.cost_usd * data.get("calls", 1)


def reservation_dict(reservation) -> dict:
    return {"allowed": True, "operation_id": str(reservation.operation_id),
            "estimated_cost": float(reservation.estimated_cost), "expires_at": reservation.expires_at,
            "status": reservation.status}


class ReleaseReservationView(APIView):
    """Release a reservation that will not be used."""

    permission_classes = [CanTrackCosts]

    @extend_schema(responses=ReservationSerializer)
    def delete(self, request, operation_id):
        reservation = services.reservation_release(operation_id=operation_id, user=request.user)
        body = reservation_dict(reservation)
        body["allowed"] = False
        return Response(body)


class BudgetLimitsView(APIView):
    """update_budget_limits: the organisation's daily and monthly limits (audited)."""

    permission_classes = [CanModifyBudgets]

    @extend_schema(request=BudgetLimitsSerializer, responses=BudgetSerializer(many=True))
    def patch(self, request):
        params = BudgetLimitsSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        changed = services.budget_limits_update(actor=request.user, **params.validated_data)
        return Response({
            "daily_budget": float(services.global_budget("daily").limit_usd),
            "monthly_budget": float(services.global_budget("monthly").limit_usd),
            "updated": {period: BudgetSerializer(budget).data for period, budget in changed.items()},
        })


class BudgetViewSet(viewsets.ModelViewSet):
    """Budgets: everyone with read_budgets lists the ones they may see; modify_budgets creates,
    changes and deletes them (each change audited)."""

    serializer_class = BudgetSerializer
    permission_classes = [ReadOrModify]
    queryset = selectors.Budget.objects.none()  # for the schema generator; requests use get_queryset()

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return selectors.Budget.objects.none()
        return selectors.budgets_visible(user=self.request.user)

    def perform_create(self, serializer):
        serializer.instance = services.budget_create(actor=self.request.user, **serializer.validated_data)

    def perform_update(self, serializer):
        serializer.instance = services.budget_update(budget=serializer.instance, actor=self.request.user,
                                                     **serializer.validated_data)

    def perform_destroy(self, instance):
        services.budget_delete(budget=instance, actor=self.request.user)


class BudgetSummaryView(APIView):
    """get_budget_summary: the organisation's daily and monthly budgets, read from counters."""

    permission_classes = [CanReadBudgets]
    throttle_classes = [DashboardThrottle]

    @extend_schema(responses=BudgetSummarySerializer)
    def get(self, request):
        return Response(selectors.budget_summary(user=request.user))


class SpendingTrendsView(APIView):
    """get_spending_trends?days=: daily costs, trend, weekday/weekend split, peak hours."""

    permission_classes = [CanReadBudgets]
    throttle_classes = [DashboardThrottle]

    @extend_schema(parameters=[TrendsQuerySerializer], responses=SpendingTrendsSerializer)
    def get(self, request):
        params = TrendsQuerySerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        return Response(selectors.spending_trends(user=request.user, days=params.validated_data["days"]))


class BudgetStatusView(APIView):
    """get_budget_status?include_projections=: budget summary with end-of-period projections."""

    permission_classes = [CanReadBudgets]
    throttle_classes = [DashboardThrottle]

    @extend_schema(parameters=[BudgetStatusQuerySerializer], responses=BudgetStatusSerializer)
    def get(self, request):
        from . import analytics  # the dashboards' projections (budgets.projections), scoped by team
        from .dashboard_views import integer

        params = BudgetStatusQuerySerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        return Response(analytics.get_budget_status(user=request.user, team_id=integer(request, "team"),
                                                    include_projections=params.validated_data["include_projections"]))
