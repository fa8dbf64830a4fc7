"""A process-local copy of values the shared Redis cache holds, kept true by pub/sub.

For values read on every request and changed rarely (API keys): the Redis round trip, with the
thread switches it causes under gunicorn, was the largest cost of authenticating a request.

Each process keeps what it read in a dict, and a daemon thread subscribes to the cache's eviction
channel. `evict()` deletes the Redis entries, drops the local copies and publishes the keys; every
process drops its copies when the message arrives (milliseconds). The local copies are used only
while the subscription is confirmed: while it is down (Redis restarting, a broken connection) every
read goes to Redis, and on (re)subscribing the local copies are dropped, since messages may have
been missed meanwhile. A local copy also expires after `ttl` seconds, which bounds the harm of a
message lost some other way. With any other cache backend (the embedded development set-up) there
is no local copy: the cache itself is read.
"""

from __future__ import annotations

import logging
import os
import threading
import time

from django.core.cache import caches

from .cache import ReusingRedisCache

logger = logging.getLogger("costmonitor.cache")

_MAX_ENTRIES = 10_000
_RETRY_SECONDS = 1.0


class NearCache:
    def __init__(self, name: str, ttl: float):
        self.name = name
        self.ttl = ttl
        self._channels: dict[str, _Subscription] = {}
        self._lock = threading.Lock()

    def _subscription(self) -> _Subscription | None:
        backend = caches["default"]
        if not isinstance(backend, ReusingRedisCache):
            return None
        # The key prefix is in the channel's name: deployments (and tests) sharing a Redis stay apart.
        channel = backend.make_key(f"near-cache:{self.name}")
        found = self._channels.get(channel)
        if found is None or found.pid != os.getpid():  # threads do not survive gunicorn's fork
            with self._lock:
                found = self._channels.get(channel)
                if found is None or found.pid != os.getpid():
                    found = self._channels[channel] = _Subscription(backend, channel)
        return found

    def get(self, key: str):
        subscription = self._subscription()
        if subscription is None or not subscription.listening:
            return None
        entry = subscription.entries.get(key)
        if entry is None or entry[0] < time.monotonic():
            return None
        return entry[1]

    def token(self) -> int | None:
        """Take before reading the value from Redis, give to put(): an eviction that arrives in between
        (the value read may be the evicted one) makes put() keep nothing."""
        subscription = self._subscription()
        return subscription.generation if subscription is not None and subscription.listening else None

    def put(self, key: str, value, token: int | None) -> None:
        subscription = self._subscription()
        if token is not None and subscription is not None and subscription.generation == token:
            if len(subscription.entries) >= _MAX_ENTRIES:
                subscription.entries.clear()
            subscription.entries[key] = (time.monotonic() + self.ttl, value)

    def evict(self, keys: list[str]) -> None:
        """Drop `keys` here and, through the channel, in every other process (Redis entries are the caller's)."""
        subscription = self._subscription()
        if subscription is None or not keys:
            return
        subscription.generation += 1
        for key in keys:
            subscription.entries.pop(key, None)
        subscription.publish(keys)


class _Subscription:
    def __init__(self, backend: ReusingRedisCache, channel: str):
        self.backend, self.channel, self.pid = backend, channel, os.getpid()
        self.entries: dict[str, tuple[float, object]] = {}
        self.listening = False
        self.generation = 0  # counts evictions and (re)subscriptions
        threading.Thread(target=self._listen, name=f"near-cache {channel}", daemon=True).start()

    def _client(self):
        return self.backend._cache.get_client(write=True)

    def publish(self, keys: list[str]) -> None:
        self._client().publish(self.channel, "\n".join(keys))

    def _listen(self) -> None:
        while True:
            pubsub = None
            try:
                pubsub = self._client().pubsub()
                pubsub.subscribe(self.channel)
                for message in pubsub.listen():
                    if message["type"] == "subscribe":
                        self.generation += 1
                        self.entries.clear()  # whatever was published before now may have been missed
                        self.listening = True
                    elif message["type"] == "message":
                        self.generation += 1
                        for key in message["data"].decode().split("\n"):
                            self.entries.pop(key, None)
            except Exception as exc:  # noqa: BLE001 — any failure: stop serving copies, then resubscribe
                logger.warning("Near cache %s lost its subscription (%s); reading Redis until it is back.",
                               self.channel, exc)
            finally:
                self.listening = False
                self.generation += 1
                self.entries.clear()
                if pubsub is not None:
                    try:
                        pubsub.close()
                    except Exception:  # noqa: BLE001
                        pass
            time.sleep(_RETRY_SECONDS)
