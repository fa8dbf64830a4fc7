from django.apps import AppConfig


class AlertsConfig(AppConfig):
    name = "alerts"
    verbose_name = "Alerts"

    def ready(self):
        from budgets.services import spend_recorded

        from .services import on_spend_recorded

        spend_recorded.connect(on_spend_recorded, dispatch_uid="alerts.on_spend_recorded")
