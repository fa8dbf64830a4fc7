"""System checks for configuration that would silently break a multi-process deployment."""

from django.conf import settings
from django.core.checks import Error, Tags, register

_PER_PROCESS_CACHES = {
    "django.core.cache.backends.locmem.LocMemCache",
    "django.core.cache.backends.dummy.DummyCache",
}


@register(Tags.caches, deploy=False)
def shared_cache_for_rate_limits(app_configs, **kwargs):
    backend = settings.CACHES["default"]["BACKEND"]
    if settings.DEBUG or backend not in _PER_PROCESS_CACHES:
        return []
    return [Error(
        "Rate limits and API-key lookups need a cache shared by all processes.",
        hint="Set CACHE_URL (e.g. redis://127.0.0.1:6379/1 or dbcache://costmonitor_cache) or REDIS_URL.",
        id="costmonitor.E001",
    )]
