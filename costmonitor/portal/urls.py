"""Portal routes."""

from django.urls import path

from . import views

app_name = "portal"

urlpatterns = [
    path("", views.overview, name="overview"),
    path("budgets/", views.budget_list, name="budgets"),
    path("budgets/new/", views.budget_create, name="budget-create"),
    path("budgets/<int:pk>/edit/", views.budget_edit, name="budget-edit"),
    path("budgets/<int:pk>/delete/", views.budget_delete, name="budget-delete"),
    path("usage/", views.usage, name="usage"),
    path("usage/export.csv", views.usage_export, name="usage-export"),
    path("keys/", views.api_keys, name="api-keys"),
    path("keys/<int:pk>/revoke/", views.api_key_revoke, name="api-key-revoke"),
    path("alerts/", views.alerts, name="alerts"),
    path("alerts/<int:pk>/acknowledge/", views.alert_acknowledge, name="alert-acknowledge"),
    path("alerts/channels/", views.channels, name="channels"),
    path("alerts/channels/new/", views.channel_edit, name="channel-create"),
    path("alerts/channels/<int:pk>/edit/", views.channel_edit, name="channel-edit"),
    path("alerts/channels/<int:pk>/test/", views.channel_test, name="channel-test"),
    path("alerts/channels/<int:pk>/delete/", views.channel_delete, name="channel-delete"),
    path("breakers/", views.breakers, name="breakers"),
    path("breakers/new/", views.breaker_create, name="breaker-create"),
    path("breakers/<str:name>/", views.breaker_detail, name="breaker-detail"),
    path("breakers/<str:name>/edit/", views.breaker_edit, name="breaker-edit"),
    path("breakers/<str:name>/reset/", views.breaker_reset, name="breaker-reset"),
    path("reports/", views.reports, name="reports"),
    path("reports/download.csv", views.report_download, {"fmt": "csv"}, name="report-csv"),
    path("reports/download.json", views.report_download, {"fmt": "json"}, name="report-json"),
]
