"""Alert endpoints (the reference's AlertNotificationSystem and trigger_budget_check): parse,
authorise, call a service, shape the answer."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied
from rest_framework.pagination import PageNumberPagination
from rest_framework.response import Response
from rest_framework.views import APIView

from budgets.models import Budget
from budgets.selectors import state_dict
from budgets.services import budget_states
from costmonitor.api.permissions import CanManageAlerts, CanReadBudgets, ReadOrManageAlerts
from costmonitor.api.throttles import AlertSendingThrottle, DashboardThrottle

from . import digest, selectors, services
from .models import AlertChannel, DigestSubscription
from .serializers import (
    AlertSerializer,
    ChannelSerializer,
    ChannelTestResultSerializer,
    ChannelWriteSerializer,
    DeliveryStatsSerializer,
    DigestStateSerializer,
    DigestSubscriptionSerializer,
    SendAlertResultSerializer,
    SendAlertSerializer,
    TestChannelsSerializer,
    TriggerBudgetCheckSerializer,
)


class AlertPagination(PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500


class AlertViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Budget alerts of the caller's teams (and organisation-wide ones); admins see all."""

    pagination_class = AlertPagination
    permission_classes = [CanReadBudgets]
    serializer_class = AlertSerializer
    lookup_value_regex = r"\d+"

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return selectors.BudgetAlert.objects.none()
        filters = self.request.query_params if self.action == "list" else {}
        return selectors.alerts_for_user(self.request.user, filters)

    @extend_schema(parameters=[OpenApiParameter(name, str, required=False) for name in
                               ("level", "budget", "team", "acknowledged", "period", "alert_type", "page",
                                "page_size")])
    def list(self, request):
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response([selectors.alert_dict(a) for a in page])

    def retrieve(self, request, pk=None):
        return Response(selectors.alert_dict(self.get_object()))

    @extend_schema(request=None, responses=AlertSerializer)
    @action(detail=True, methods=["post"], permission_classes=[CanReadBudgets])
    def acknowledge(self, request, pk=None):
        alert = self.get_object()
        if not selectors.can_acknowledge(request.user, alert):
            raise PermissionDenied("Organisation-wide alerts are acknowledged by users with manage_alerts.")
        alert = services.alert_acknowledge(alert=alert, user=request.user)
        return Response(selectors.alert_dict(alert))


class SendAlertView(APIView):
    """send_alert: record an alert and deliver it now to every matching channel."""

    permission_classes = [CanManageAlerts]
    throttle_classes = [AlertSendingThrottle]

    @extend_schema(request=SendAlertSerializer, responses={201: SendAlertResultSerializer})
    def post(self, request):
        params = SendAlertSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        result = services.alert_send_now(actor=request.user, fields=dict(params.validated_data))
        return Response(result, status=status.HTTP_201_CREATED)


class TestChannelsView(APIView):
    """test_channels: send a test message through every active channel (or the ones named)."""

    permission_classes = [CanManageAlerts]
    throttle_classes = [AlertSendingThrottle]

    @extend_schema(request=TestChannelsSerializer,
                   responses=OpenApiResponse(ChannelTestResultSerializer, description="Keyed by channel name."))
    def post(self, request):
        params = TestChannelsSerializer(data=request.data or {})
        params.is_valid(raise_exception=True)
        return Response(services.channels_test(channel_ids=params.validated_data.get("channel_ids")))


class DeliveryStatsView(APIView):
    """get_delivery_stats, from the recorded delivery attempts."""

    permission_classes = [CanManageAlerts]
    throttle_classes = [DashboardThrottle]

    @extend_schema(responses=DeliveryStatsSerializer)
    def get(self, request):
        return Response(selectors.delivery_stats())


class DigestSubscriptionView(APIView):
    """The caller's daily digest email: GET shows it, PUT {"enabled": true|false} switches it."""

    permission_classes = [CanReadBudgets]

    def _body(self, request):
        subscription = DigestSubscription.objects.filter(user=request.user).first()
        return {"enabled": bool(subscription and subscription.enabled), "email": request.user.email,
                "last_sent_for": subscription.last_sent_for if subscription else None}

    @extend_schema(responses=DigestStateSerializer)
    def get(self, request):
        return Response(self._body(request))

    @extend_schema(request=DigestSubscriptionSerializer, responses=DigestStateSerializer)
    def put(self, request):
        params = DigestSubscriptionSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        if params.validated_data["enabled"] and not request.user.email:
            from costmonitor.errors import InvalidParameters

            raise InvalidParameters("Your account has no email address to send the digest to.", field="enabled")
        digest.digest_subscription_set(user=request.user, enabled=params.validated_data["enabled"])
        return Response(self._body(request))

    @extend_schema(request=DigestSubscriptionSerializer, responses=DigestStateSerializer)
    def patch(self, request):
        return self.put(request)


class AlertChannelViewSet(viewsets.GenericViewSet):
    """Alert channels (email, Slack, webhook, log). Reading needs read_budgets, changing manage_alerts;
    secrets are write-only and come back masked."""

    permission_classes = [ReadOrManageAlerts]
    serializer_class = ChannelSerializer
    lookup_value_regex = r"\d+"

    def get_queryset(self):
        channels = AlertChannel.objects.prefetch_related("teams", "budgets").order_by("name")
        if self.action == "list":
            params = self.request.query_params
            if params.get("kind"):
                channels = channels.filter(kind=params["kind"])
            if params.get("is_active") in ("true", "false"):
                channels = channels.filter(is_active=params["is_active"] == "true")
        return channels

    @extend_schema(parameters=[OpenApiParameter("kind", str, required=False),
                               OpenApiParameter("is_active", bool, required=False)])
    def list(self, request):
        return Response([selectors.channel_dict(c) for c in self.get_queryset()])

    def retrieve(self, request, pk=None):
        channel = self.get_object()
        body = selectors.channel_dict(channel)
        body["recent_attempts"] = selectors.channel_results(channel, limit=10)
        return Response(body)

    def _write(self, request, channel, partial):
        params = ChannelWriteSerializer(data=request.data, partial=partial)
        params.is_valid(raise_exception=True)
        data = dict(params.validated_data)
        for name in ("teams", "budgets"):
            if name in data:
                data[name] = [obj.pk for obj in data[name]]
        saved = services.channel_save(channel=channel, actor=request.user, data=data)
        saved = AlertChannel.objects.prefetch_related("teams", "budgets").get(pk=saved.pk)
        return selectors.channel_dict(saved)

    @extend_schema(request=ChannelWriteSerializer, responses={201: ChannelSerializer})
    def create(self, request):
        return Response(self._write(request, None, partial=False), status=status.HTTP_201_CREATED)

    @extend_schema(request=ChannelWriteSerializer, responses={200: ChannelSerializer})
    def update(self, request, pk=None):
        return Response(self._write(request, self.get_object(), partial=False))

    @extend_schema(request=ChannelWriteSerializer, responses={200: ChannelSerializer})
    def partial_update(self, request, pk=None):
        return Response(self._write(request, self.get_object(), partial=True))

    @extend_schema(responses={204: None})
    def destroy(self, request, pk=None):
        services.channel_delete(channel=self.get_object(), actor=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=None,
                   responses=OpenApiResponse(ChannelTestResultSerializer, description="Keyed by channel name."))
    @action(detail=True, methods=["post"], throttle_classes=[AlertSendingThrottle])
    def test(self, request, pk=None):
        channel = self.get_object()
        return Response({channel.name: services.channel_test(channel)})


class TriggerBudgetCheckView(APIView):
    """trigger_budget_check: run a monitoring cycle now and report the organisation's budgets."""

    permission_classes = [CanManageAlerts]
    throttle_classes = [DashboardThrottle]

    @extend_schema(request=None, responses=TriggerBudgetCheckSerializer)
    def post(self, request):
        cycle = services.monitor_cycle_run()
        globals_ = list(Budget.objects.filter(is_global_default=True))
        status_by_period = {}
        for state in budget_states(budgets=globals_):
            shaped = state_dict(state)
            status_by_period[f"{state.budget.period}_budget"] = {
                "percentage_used": shaped["percentage_used"], "over_budget": shaped["over_budget"],
                "total_cost": shaped["total_cost"], "budget_limit": shaped["budget_limit"],
                "period_key": shaped["period_key"]}
        return Response({"results": {"budget_status": status_by_period, "monitoring_cycle": cycle}})
