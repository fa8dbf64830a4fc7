"""A router whose routes answer with and without the trailing slash (`/api-keys` and `/api-keys/`).

The reference's paths have no trailing slash, Django's habit is to add one; clients use both.
DRF's `trailing_slash` argument only takes on/off, so the optional slash is set after init.
"""

from rest_framework.routers import SimpleRouter


class OptionalSlashRouter(SimpleRouter):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.trailing_slash = "/?"
