"""Cost tracking endpoints: parse, authorise, call tracking.services, shape the answer."""

import json

from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.generics import ListAPIView
from rest_framework.pagination import CursorPagination
from rest_framework.utils.encoders import JSONEncoder
from rest_framework.views import APIView

from costmonitor.api.envelope import success_response
from costmonitor.api.permissions import CanReadBudgets, CanTrackCosts
from costmonitor.api.scoping import scope_to_teams
from costmonitor.api.throttles import DashboardThrottle, TrackingThrottle
from costmonitor.errors import InvalidParameters

from . import services
from .events import parse_event
from .filters import UsageRecordFilter
from .models import UsageRecord
from .serializers import (
    BatchOperationRequestSerializer,
    BulkTrackRequestSerializer,
    BulkTrackResponseSerializer,
    TrackCostRequestSerializer,
    UsageRecordSerializer,
    usage_record_dict,
)


def _idempotency_key(request, body) -> str | None:
    header = request.headers.get("Idempotency-Key")
    if header:
        return header
    return body.get("request_id") if isinstance(body, dict) and isinstance(body.get("request_id"), str) else None


class _RecordingView(APIView):
    permission_classes = [CanTrackCosts]
    throttle_classes = [TrackingThrottle]

    def record(self, request, produce):
        def produce_json():
            # Stored answers are replayed byte-for-byte alike: normalise to JSON types first.
            code, answer = produce()
            return code, json.loads(json.dumps(answer, cls=JSONEncoder))

        body = request.data
        key = _idempotency_key(request, body)
        # The path is part of what a key stands for: one key sent to /track and then /bulk is a conflict.
        code, answer, replayed = services.idempotent_call(
            user=request.user, key=key, body={"path": request.path, "body": body},
            produce=produce_json if key else produce)
        headers = {"Idempotent-Replayed": "true"} if replayed else None
        return success_response(request, answer, code, headers)


class TrackCostView(_RecordingView):
    """log_api_call / track_cost: record one API call."""

    @extend_schema(request=TrackCostRequestSerializer, responses={201: UsageRecordSerializer})
    def post(self, request):
        def produce():
            event = parse_event(request.data)
            record = services.usage_record(user=request.user, api_key=request.auth, event=event)
            return status.HTTP_201_CREATED, usage_record_dict(record)

        return self.record(request, produce)


class BatchOperationView(_RecordingView):
    """log_batch_operation: record a batch of calls as one record."""

    @extend_schema(request=BatchOperationRequestSerializer, responses={201: UsageRecordSerializer})
    def post(self, request):
        def produce():
            event = parse_event(request.data, batch=True)
            record = services.usage_record(user=request.user, api_key=request.auth, event=event)
            return status.HTTP_201_CREATED, usage_record_dict(record)

        return self.record(request, produce)


class BulkTrackView(_RecordingView):
    """Record up to 1,000 events in one request, all or nothing."""

    @extend_schema(request=BulkTrackRequestSerializer, responses={201: BulkTrackResponseSerializer})
    def post(self, request):
        def produce():
            body = request.data
            events = body.get("events") if isinstance(body, dict) else None
            if not isinstance(events, list) or not events:
                raise InvalidParameters("Send {\"events\": [ …track bodies… ]}.", field="events")
            if len(events) > services.MAX_BULK_EVENTS:
                raise InvalidParameters(f"At most {services.MAX_BULK_EVENTS} events per request.", field="events")
            errors, parsed = {}, []
            for index, raw in enumerate(events):
                try:
                    parsed.append(parse_event(raw, prefix=f"events[{index}]."))
                except InvalidParameters as exc:
                    errors.update(exc.details)
            if errors:
                raise InvalidParameters("Invalid events; nothing was recorded.", details=errors)
            records = services.usage_record_many(user=request.user, api_key=request.auth, events=parsed)
            return status.HTTP_201_CREATED, {
                "recorded": len(records),
                "total_cost_usd": float(sum(r.cost_usd for r in records)),
                "ids": [r.pk for r in records],
            }

        return self.record(request, produce)


class UsageRecordPagination(CursorPagination):
    ordering = ("-occurred_at", "-id")
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500


class UsageRecordListView(ListAPIView):
    """The caller's teams' usage records (all for admins), newest first, filtered, cursor-paginated."""

    serializer_class = UsageRecordSerializer
    permission_classes = [CanReadBudgets]
    throttle_classes = [DashboardThrottle]
    filter_backends = [DjangoFilterBackend]
    filterset_class = UsageRecordFilter
    pagination_class = UsageRecordPagination
    queryset = UsageRecord.objects.none()  # for the schema generator; requests use get_queryset()

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return UsageRecord.objects.none()
        records = UsageRecord.objects.select_related("user", "team")
        return scope_to_teams(records, self.request.user)

    def list(self, request, *args, **kwargs):
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response([usage_record_dict(record) for record in page])
