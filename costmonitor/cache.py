"""Django's Redis cache backend, reusing one client per connection pool, and shared reads.

Django's RedisCacheClient builds a new `redis.Redis` object — and its table of ~80 response
callbacks — on every cache call; on the API's hot path (key lookup, throttles) that cost more CPU
than the Redis round trips themselves. A `redis.Redis` is thread-safe, so one per pool will do.
"""

from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache, RedisCacheClient

_SHARED_MAX = 1024


class ReusingRedisCacheClient(RedisCacheClient):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._clients = {}
        self._shared = {}

    def get_client(self, key=None, *, write=False):
        index = self._get_connection_pool_index(write)
        client = self._clients.get(index)
        if client is None:
            client = self._clients[index] = self._client(connection_pool=self._get_connection_pool(write))
        return client

    def get_shared(self, key, default):
        stored = self.get_client(key).get(key)
        if stored is None:
            return default
        found = self._shared.get(stored)
        if found is None:
            if len(self._shared) >= _SHARED_MAX:
                self._shared.clear()
            found = self._shared[stored] = self._serializer.loads(stored)
        return found


class ReusingRedisCache(RedisCache):
    def __init__(self, server, params):
        super().__init__(server, params)
        self._class = ReusingRedisCacheClient

    def get_shared(self, key, default=None, version=None):
        return self._cache.get_shared(self.make_and_validate_key(key, version=version), default)


def cache_get_shared(key, default=None):
    """cache.get(key), except that with Redis each distinct stored value is unpickled once per process
    and the same object is returned to every reader: for read-only values read on every request (the
    API-key lookup), where unpickling model instances cost more than the round trip. The value in
    Redis stays the truth: a deleted or replaced entry is seen at once. Callers must not mutate it."""
    backend = caches["default"]
    if isinstance(backend, ReusingRedisCache):
        return backend.get_shared(key, default)
    return backend.get(key, default)
