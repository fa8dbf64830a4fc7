"""System checks for configuration that would silently break a multi-process deployment."""

from django.conf import settings
from django.core.checks import Error, Tags, register

_PER_PROCESS_CACHES = {
    "django.core.cache.backends.locmem.LocMemCache",
    "django.core.cache.backends.dummy.DummyCache",
}


@register(Tags.caches)
def shared_cache_for_rate_limits(app_configs, **kwargs):
    """Outside DEBUG, throttles and key lookups counted per process would multiply every limit."""
    backend = settings.CACHES["default"]["BACKEND"]
    if settings.DEBUG or backend not in _PER_PROCESS_CACHES:
        return []
    return [Error(
        "Rate limits and API-key lookups need a cache shared by all processes.",
        hint="Set CACHE_URL (e.g. redis://127.0.0.1:6379/1 or dbcache://costmonitor_cache) or REDIS_URL.",
        id="costmonitor.E001",
    )]


@register()
def rate_limits_are_rates(app_configs, **kwargs):
    """A mistyped RATE_LIMIT_* value is refused at start-up, not on the first throttled request."""
    from costmonitor.api.throttles import parse_rate

    errors = []
    for scope, rate in settings.RATE_LIMITS.items():
        try:
            parse_rate(rate)
        except ValueError as exc:
            errors.append(Error(
                f"RATE_LIMITS[{scope!r}]: {exc}",
                hint=f"Set RATE_LIMIT_{scope.upper()} to a value like '100/min' or 'none'.",
                id="costmonitor.E002",
            ))
    return errors
