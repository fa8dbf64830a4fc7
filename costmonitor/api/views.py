"""Platform endpoints: /healthz, system health, API keys, and the envelope's 404 for unknown API paths."""

from django.http import HttpResponse
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action, api_view, permission_classes
from rest_framework.exceptions import NotFound
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from budgets import accounts
from budgets.models import ApiKey
from costmonitor import health

from .permissions import CanReadBudgets, CanTrackCosts
from .serializers import ApiKeyCreatedSerializer, ApiKeyCreateSerializer, ApiKeySerializer, HealthSerializer
from .throttles import DashboardThrottle


def healthz(request):
    """For load balancers: no details, no database work."""
    return HttpResponse("ok", content_type="text/plain")


@extend_schema(exclude=True)
@api_view(["GET", "POST", "PUT", "PATCH", "DELETE"])
@permission_classes([AllowAny])
def api_not_found(request, unknown):
    raise NotFound(f"No API endpoint at /api/v1/{unknown}.")


class SystemHealthView(APIView):
    """get_api_health_check: each component flag is really checked."""

    permission_classes = [CanReadBudgets]
    throttle_classes = [DashboardThrottle]

    @extend_schema(responses=HealthSerializer)
    def get(self, request):
        return Response(health.system_health())


class ApiKeyViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.DestroyModelMixin,
                    viewsets.GenericViewSet):
    """The caller's own API keys. Creating one shows the key once; deleting revokes it.

    Keys exist to record costs, so every action needs track_costs (both roles hold it).
    """

    serializer_class = ApiKeySerializer
    permission_classes = [CanTrackCosts]
    queryset = ApiKey.objects.none()  # for the schema generator; requests use get_queryset()

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return ApiKey.objects.none()
        return ApiKey.objects.filter(user=self.request.user).select_related("team")

    @extend_schema(request=ApiKeyCreateSerializer, responses={201: ApiKeyCreatedSerializer})
    def create(self, request):
        params = ApiKeyCreateSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        team = None
        if params.validated_data.get("team") is not None:
            team = accounts.team_for_recording(user=request.user, team_id=params.validated_data["team"])
        api_key, raw_key = accounts.api_key_create(user=request.user, name=params.validated_data["name"], team=team)
        body = ApiKeyCreatedSerializer(api_key).data
        body["key"] = raw_key
        return Response(body, status=status.HTTP_201_CREATED)

    @extend_schema(responses=ApiKeySerializer)
    def destroy(self, request, pk=None):
        api_key = accounts.api_key_revoke(api_key=self.get_object(), actor=request.user)
        return Response(ApiKeySerializer(api_key).data)

    @extend_schema(request=None, responses=ApiKeySerializer)
    @action(detail=True, methods=["post"])
    def revoke(self, request, pk=None):
        return self.destroy(request, pk)
