"""Content negotiation with a shortcut for what API clients send."""

from rest_framework.negotiation import DefaultContentNegotiation

_PLAIN_ACCEPTS = frozenset(("", "*/*", "application/json"))


class ApiContentNegotiation(DefaultContentNegotiation):
    """Pipelines and SDKs send no Accept header, `*/*` or `application/json`, and no `?format=`: they
    get the first renderer (the JSON envelope) without parsing anything, which DRF's negotiation
    spent a few percent of a track request on. Everything else (a browser) is negotiated as usual."""

    def select_renderer(self, request, renderers, format_suffix=None):
        if (not format_suffix and request.META.get("HTTP_ACCEPT", "") in _PLAIN_ACCEPTS
                and self.settings.URL_FORMAT_OVERRIDE not in request.query_params):
            return renderers[0], renderers[0].media_type
        return super().select_renderer(request, renderers, format_suffix)
