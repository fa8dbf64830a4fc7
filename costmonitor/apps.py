from django.apps import AppConfig


class CostMonitorConfig(AppConfig):
    name = "costmonitor"
    verbose_name = "CostMonitor"

    def ready(self):
        from . import checks  # noqa: F401  (registers system checks)
        from .api import schema  # noqa: F401  (registers the OpenAPI auth extension)
