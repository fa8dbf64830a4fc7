"""Rate limits and key lookups live in the shared cache (Redis in production), so every web
process counts against the same limit. Needs Redis: REDIS_TEST_URL (CI sets it)."""

import os
import uuid

import pytest
import redis

from ..conftest import client_for

pytestmark = pytest.mark.django_db
HEALTH = "/api/v1/system/health"
REDIS_TEST_URL = os.environ.get("REDIS_TEST_URL", "redis://127.0.0.1:6379/15")


@pytest.fixture
def redis_cache(settings):
    try:
        redis.Redis.from_url(REDIS_TEST_URL, socket_connect_timeout=1).ping()
    except redis.RedisError:
        if os.environ.get("REDIS_TEST_URL"):
            pytest.fail(f"REDIS_TEST_URL={REDIS_TEST_URL} does not answer")
        pytest.skip("needs Redis: set REDIS_TEST_URL=redis://…")
    prefix = f"test-{uuid.uuid4().hex}"
    settings.CACHES = {"default": {"BACKEND": "costmonitor.cache.ReusingRedisCache",
                                   "LOCATION": REDIS_TEST_URL, "KEY_PREFIX": prefix}}
    yield prefix
    raw = redis.Redis.from_url(REDIS_TEST_URL)
    for key in raw.scan_iter(f"{prefix}:*"):
        raw.delete(key)


def test_throttle_counts_in_redis_where_every_process_sees_it(redis_cache, settings, researcher):
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "dashboard": "2/min"}
    client = client_for(researcher)
    assert [client.get(HEALTH).status_code for _ in range(2)] == [200, 200]
    raw = redis.Redis.from_url(REDIS_TEST_URL)
    counters = raw.keys(f"*{redis_cache}*throttle:dashboard:user:{researcher.pk}:*")
    assert len(counters) == 1
    assert int(raw.get(counters[0])) == 2
    assert 0 < raw.ttl(counters[0]) <= 61  # the window cleans up after itself
    response = client.get(HEALTH)
    assert response.status_code == 429
    assert int(response["Retry-After"]) >= 1


def test_revocation_reaches_every_process_through_redis(redis_cache, researcher_client):
    from budgets.models import ApiKey

    assert researcher_client.get(HEALTH).status_code == 200  # the key is now cached in Redis
    assert redis.Redis.from_url(REDIS_TEST_URL).keys(f"*{redis_cache}*apikey:*")
    ApiKey.objects.get(prefix=researcher_client.raw_key[:11]).delete()
    assert researcher_client.get(HEALTH).status_code == 401


def test_key_lookup_shares_one_object_per_stored_value_and_follows_redis(redis_cache, researcher):
    """Each process unpickles a cached key once and reuses it while Redis holds the same value; a
    change made elsewhere (another process revoking the key) is seen on the next lookup."""
    from django.utils import timezone

    from budgets import accounts
    from budgets.models import ApiKey

    api_key, raw_key = accounts.api_key_create(user=researcher, name="pipeline")
    accounts.api_key_authenticate(raw_key=raw_key)  # read from the database, now cached in Redis
    first_user, first_key = accounts.api_key_authenticate(raw_key=raw_key)
    again_user, again_key = accounts.api_key_authenticate(raw_key=raw_key)
    assert again_user is first_user and again_key is first_key and first_key.pk == api_key.pk
    # Another process revokes it: the database row changes and its eviction deletes the Redis entry
    # (no signal reaches this process).
    ApiKey.objects.filter(pk=api_key.pk).update(revoked_at=timezone.now())
    redis.Redis.from_url(REDIS_TEST_URL).delete(*redis.Redis.from_url(REDIS_TEST_URL).keys(f"{redis_cache}:*apikey:*"))
    assert accounts.api_key_authenticate(raw_key=raw_key) is None
