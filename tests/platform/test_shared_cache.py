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


def test_shared_reads_unpickle_each_stored_value_once_and_follow_redis(redis_cache):
    from django.core.cache import cache

    from costmonitor.cache import cache_get_shared

    cache.set("shared-probe", {"n": 1})
    first, again = cache_get_shared("shared-probe"), cache_get_shared("shared-probe")
    assert first == {"n": 1} and again is first
    cache.set("shared-probe", {"n": 2})  # another process writes a new value
    assert cache_get_shared("shared-probe") == {"n": 2}
    cache.delete("shared-probe")
    assert cache_get_shared("shared-probe") is None


def _wait_for(condition, seconds=5.0):
    import time

    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_each_process_keeps_a_near_copy_of_a_key_that_another_process_can_evict(redis_cache, researcher):
    """The near cache: once subscribed, a process answers from its own copy (here the Redis entry is
    removed behind its back, and the key still works); an eviction published by another process
    (another Redis client) removes that copy within moments, and the revoked key is refused."""
    from django.utils import timezone

    from budgets import accounts
    from budgets.models import ApiKey

    api_key, raw_key = accounts.api_key_create(user=researcher, name="pipeline")
    accounts.api_key_authenticate(raw_key=raw_key)
    _wait_for(lambda: accounts._near_keys.token() is not None)  # the subscription is confirmed
    assert accounts.api_key_authenticate(raw_key=raw_key) is not None  # now kept near
    other_process = redis.Redis.from_url(REDIS_TEST_URL)
    other_process.delete(*other_process.keys(f"{redis_cache}:*apikey:*"))
    assert accounts.api_key_authenticate(raw_key=raw_key)[1].pk == api_key.pk  # answered from the near copy

    ApiKey.objects.filter(pk=api_key.pk).update(revoked_at=timezone.now())
    assert other_process.publish(f"{redis_cache}:1:near-cache:api-keys", api_key.key_hash) == 1
    _wait_for(lambda: accounts.api_key_authenticate(raw_key=raw_key) is None)


def test_revoking_in_a_transaction_evicts_again_at_commit(redis_cache, researcher,
                                                          django_capture_on_commit_callbacks):
    """A lookup between the revocation and its commit reads the old row and caches it again; the
    second eviction at commit removes that copy."""
    from django.core.cache import cache

    from budgets import accounts

    api_key, raw_key = accounts.api_key_create(user=researcher, name="pipeline")
    user, cached_key = accounts.api_key_authenticate(raw_key=raw_key)
    with django_capture_on_commit_callbacks(execute=True):
        accounts.api_key_revoke(api_key=api_key, actor=researcher)
        # Another process, still seeing the row active before the commit, caches the key again.
        cache.set(accounts._cache_key(api_key.key_hash), (user, cached_key), 300)
    assert accounts.api_key_authenticate(raw_key=raw_key) is None
