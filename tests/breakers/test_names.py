"""Breaker names that would shadow a route can't be taken."""

import pytest

from breakers.models import CircuitBreaker

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("name", ["status", "new"])
def test_a_breaker_cannot_take_a_name_that_shadows_a_route(admin_client, name):
    response = admin_client.post("/api/v1/breakers/", {"name": name, "failure_threshold": 3, "recovery_timeout": 30},
                                 format="json")
    assert response.status_code == 400
    assert "name" in response.json()["error"]["details"]
    assert not CircuitBreaker.objects.exists()
