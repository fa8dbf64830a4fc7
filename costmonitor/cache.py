"""Django's Redis cache backend, reusing one client per connection pool.

Django's RedisCacheClient builds a new `redis.Redis` object — and its table of ~80 response
callbacks — on every cache call; on the API's hot path (key lookup, throttles) that cost more CPU
than the Redis round trips themselves. A `redis.Redis` is thread-safe, so one per pool will do.
"""

from django.core.cache.backends.redis import RedisCache, RedisCacheClient


class ReusingRedisCacheClient(RedisCacheClient):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._clients = {}

    def get_client(self, key=None, *, write=False):
        index = self._get_connection_pool_index(write)
        client = self._clients.get(index)
        if client is None:
            client = self._clients[index] = self._client(connection_pool=self._get_connection_pool(write))
        return client


class ReusingRedisCache(RedisCache):
    def __init__(self, server, params):
        super().__init__(server, params)
        self._class = ReusingRedisCacheClient
