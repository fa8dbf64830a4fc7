"""Registers every app's periodic django-q2 tasks; idempotent, so deployments can run it on every start.

Each app lists its schedules in `<app>.tasks.SCHEDULES` as (name, dotted function, minutes).
"""

from importlib import import_module

from django.apps import apps
from django.core.management.base import BaseCommand
from django_q.models import Schedule


def collect_schedules():
    for app_config in apps.get_app_configs():
        try:
            module = import_module(f"{app_config.name}.tasks")
        except ModuleNotFoundError as exc:
            if exc.name != f"{app_config.name}.tasks":
                raise
            continue
        yield from getattr(module, "SCHEDULES", [])


class Command(BaseCommand):
    help = "Create or update the periodic tasks (monitor cycle, heartbeat, expiry, digests)."

    def handle(self, *args, **options):
        names = []
        for name, func, minutes in collect_schedules():
            Schedule.objects.update_or_create(
                name=name,
                defaults={"func": func, "schedule_type": Schedule.MINUTES, "minutes": minutes, "repeats": -1},
            )
            names.append(name)
        self.stdout.write(f"{len(names)} schedules registered: {', '.join(names)}")
