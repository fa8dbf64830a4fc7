"""API-key authentication: `Authorization: Bearer <key>` or `X-API-Key: <key>`.

Keys are looked up by their SHA-256 hash through the shared cache (revocation deletes the entry,
so a revoked key is refused at once); repeated failures from one address are throttled.
"""

from rest_framework import authentication, exceptions

from budgets import accounts

from .throttles import AuthFailureThrottle


def _presented_key(request) -> str | None:
    header = request.headers.get("Authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip() or None
    return request.headers.get("X-API-Key", "").strip() or None


class ApiKeyAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request):
        raw_key = _presented_key(request)
        if raw_key is None:
            return None
        failures = AuthFailureThrottle()
        if not failures.allow_request(request, None):
            raise exceptions.Throttled(wait=failures.wait())
        found = accounts.api_key_authenticate(raw_key=raw_key)
        if found is None:
            failures.record_failure(request)
            raise exceptions.AuthenticationFailed("Invalid or revoked API key.")
        user, api_key = found
        if not user.is_active:
            raise exceptions.AuthenticationFailed("The key's owner is inactive.")
        return user, api_key

    def authenticate_header(self, request):
        return 'Bearer realm="api"'

