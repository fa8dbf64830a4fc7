from django.apps import AppConfig


class BudgetsConfig(AppConfig):
    name = "budgets"

    def ready(self):
        from . import (
            accounts,  # noqa: F401  (connects the API-key cache eviction receivers)
            analytics,  # noqa: F401  (connects the late-record cache invalidation receiver)
        )
