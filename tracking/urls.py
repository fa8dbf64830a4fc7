"""Cost tracking API routes (mounted under /api/v1/)."""

from django.urls import path, re_path

from . import views

urlpatterns = [
    re_path(r"^costs/?$", views.UsageRecordListView.as_view(), name="costs-list"),
    path("costs/track", views.TrackCostView.as_view(), name="costs-track"),
    path("costs/batch", views.BatchOperationView.as_view(), name="costs-batch"),
    path("costs/bulk", views.BulkTrackView.as_view(), name="costs-bulk"),
]
