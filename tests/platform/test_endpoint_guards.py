"""Guards over every /api/v1/ endpoint, present and future: each one is mapped to one of the
reference's four permissions, and each one's OpenAPI answers are described inside the envelope."""

import pytest
from django.urls import URLPattern, URLResolver, get_resolver

from costmonitor.api import permissions, views

ROLE_PERMISSIONS = (permissions.CanReadBudgets, permissions.CanTrackCosts, permissions.CanModifyBudgets,
                    permissions.CanManageAlerts, permissions.ReadOrModify, permissions.ReadOrManageAlerts)


def api_view_classes(patterns=None, prefix=""):
    for entry in patterns if patterns is not None else get_resolver().url_patterns:
        route = prefix + str(entry.pattern)
        if isinstance(entry, URLResolver):
            yield from api_view_classes(entry.url_patterns, route)
        elif isinstance(entry, URLPattern) and route.startswith("api/v1/"):
            view_class = getattr(entry.callback, "cls", None)
            if view_class is not None and entry.callback is not views.api_not_found:
                yield route, view_class


def test_there_are_api_endpoints_to_guard():
    assert {view_class for _, view_class in api_view_classes()} >= {views.SystemHealthView, views.ApiKeyViewSet}


@pytest.mark.parametrize(("route", "view_class"), list(api_view_classes()))
def test_every_api_endpoint_requires_one_of_the_four_permissions(route, view_class):
    declared = view_class.permission_classes
    assert declared, f"{route}: no permission classes"
    assert all(isinstance(cls, type) and issubclass(cls, ROLE_PERMISSIONS) for cls in declared), (
        f"{route}: {view_class.__name__} must use the role permissions of costmonitor.api.permissions")


@pytest.mark.django_db
def test_every_documented_api_answer_is_wrapped_in_the_envelope(client):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    operations = [(path, method, operation) for path, methods in schema["paths"].items()
                  if path.startswith("/api/v1/") for method, operation in methods.items()]
    assert operations
    for path, method, operation in operations:
        for status, response in operation["responses"].items():
            body = response.get("content", {}).get("application/json", {}).get("schema")
            if body is None:
                continue
            if status.startswith("2"):
                assert set(body["properties"]) == {"status", "data", "meta"}, (path, method, status)
            else:
                assert body == {"$ref": "#/components/schemas/ErrorEnvelope"}, (path, method, status)
