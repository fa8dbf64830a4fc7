"""Circuit breaker endpoints: parse, authorise, call breakers.services, shape the answer."""

import json

from drf_spectacular.utils import extend_schema
from rest_framework import status, viewsets
from rest_framework.response import Response
from rest_framework.utils.encoders import JSONEncoder
from rest_framework.views import APIView

from costmonitor.api.permissions import CanModifyBudgets, CanReadBudgets, CanTrackCosts, ReadOrModify
from costmonitor.api.throttles import BudgetCheckThrottle, DashboardThrottle
from tracking.services import idempotent_call

from . import selectors, services
from .models import NAME_PATTERN
from .serializers import (
    BreakerSerializer,
    ExecuteRequestSerializer,
    ExecuteResponseSerializer,
    ResetRequestSerializer,
    ResultRequestSerializer,
    ResultResponseSerializer,
    SystemStatusSerializer,
)

NAME_REGEX = NAME_PATTERN.strip("^$")


class BreakerViewSet(viewsets.ModelViewSet):
    """Circuit breakers with their threshold rules: read with read_budgets, write with modify_budgets."""

    serializer_class = BreakerSerializer
    permission_classes = [ReadOrModify]
    lookup_field = "name"
    lookup_value_regex = NAME_REGEX
    queryset = selectors.breakers_with_rules()

    def get_queryset(self):
        return selectors.breakers_with_rules()

    def create(self, request):
        params = BreakerSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        breaker = services.breaker_create(actor=request.user, **params.validated_data)
        return Response(BreakerSerializer(self.get_queryset().get(pk=breaker.pk)).data, status=status.HTTP_201_CREATED)

    def update(self, request, name=None, partial=False):
        breaker = self.get_object()
        params = BreakerSerializer(breaker, data=request.data, partial=partial)
        params.is_valid(raise_exception=True)
        breaker = services.breaker_update(breaker=breaker, actor=request.user, **params.validated_data)
        return Response(BreakerSerializer(self.get_queryset().get(pk=breaker.pk)).data)

    def partial_update(self, request, name=None):
        return self.update(request, name, partial=True)

    def destroy(self, request, name=None):
        services.breaker_delete(breaker=self.get_object(), actor=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class BreakerStatusView(APIView):
    """get_system_status: every breaker's state and statistics, the manager's totals, the overall health."""

    permission_classes = [CanReadBudgets]
    throttle_classes = [DashboardThrottle]

    @extend_schema(responses=SystemStatusSerializer)
    def get(self, request):
        return Response(selectors.breakers_system_status())


class BreakerExecuteView(APIView):
    """execute_with_protection: allowed (with an operation_id and a budget hold), 503 blocked or 429 throttled."""

    permission_classes = [CanTrackCosts]
    throttle_classes = [BudgetCheckThrottle]

    @extend_schema(request=ExecuteRequestSerializer, responses={201: ExecuteResponseSerializer})
    def post(self, request, name):
        params = ExecuteRequestSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        data = params.validated_data
        result = services.breaker_execute(
            breaker_name=name, user=request.user, api_key=request.auth, operation_type=data["operation_type"],
            model_name=data["model_name"], estimated_tokens=data.get("estimated_tokens"),
            estimated_cost=data.get("estimated_cost"), research_category=data["research_category"],
            team_id=data.get("team"), ttl_seconds=data.get("ttl_seconds"))
        return Response(result, status=status.HTTP_201_CREATED)


class BreakerResultView(APIView):
    """update_operation_cost: settle the call's reservation, record its usage, count its success or failure."""

    permission_classes = [CanTrackCosts]

    @extend_schema(request=ResultRequestSerializer, responses=ResultResponseSerializer)
    def post(self, request, name, operation_id):
        def produce():
            params = ResultRequestSerializer(data=request.data)
            params.is_valid(raise_exception=True)
            data = dict(params.validated_data)
            data.pop("operation_type", None)
            result = services.breaker_settle(breaker_name=name, operation_id=operation_id, user=request.user,
                                             api_key=request.auth, **data)
            return status.HTTP_200_OK, json.loads(json.dumps(result, cls=JSONEncoder))

        # The SDK reports through an outbox that may resend: the same Idempotency-Key replays the first answer.
        key = request.headers.get("Idempotency-Key")
        code, answer, replayed = idempotent_call(user=request.user, key=key,
                                                 body={"path": request.path, "body": request.data}, produce=produce)
        return Response(answer, status=code, headers={"Idempotent-Replayed": "true"} if replayed else {})


class BreakerResetView(APIView):
    """Close a breaker by hand (admins): failure and throttle counters cleared; audited and alerted."""

    permission_classes = [CanModifyBudgets]

    @extend_schema(request=ResetRequestSerializer, responses=BreakerSerializer)
    def post(self, request, name):
        params = ResetRequestSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        breaker = services.breaker_reset(breaker_name=name, actor=request.user, **params.validated_data)
        return Response(BreakerSerializer(selectors.breakers_with_rules().get(pk=breaker.pk)).data)
