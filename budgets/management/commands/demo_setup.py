"""Creates the demo team, an admin and a researcher (idempotent) and prints their logins."""

from django.core.management.base import BaseCommand

from budgets import accounts

DEMO_TEAM = "Demo Lab"
DEMO_USERS = [("admin", "admin", "costmonitor-admin"), ("researcher", "researcher", "costmonitor-research")]


class Command(BaseCommand):
    help = "Create the demo team and users, and some demo usage (run by `make run`)."

    def add_arguments(self, parser):
        parser.add_argument("--no-usage", action="store_true", help="Skip the demo usage records.")

    def handle(self, *args, no_usage=False, **options):
        for username, role, password in DEMO_USERS:
            accounts.user_provision(username=username, role=role, team_name=DEMO_TEAM, password=password,
                                    email=f"{username}@example.org")
        if not no_usage:
            self._load_demo_usage()
        self.stdout.write("Demo logins:")
        for username, role, password in DEMO_USERS:
            self.stdout.write(f"  {role:<10} user {username!r}, password {password!r}")

    def _load_demo_usage(self):
        try:
            from tracking.demo import load_demo_usage
        except ImportError:
            return
        created = load_demo_usage(team_name=DEMO_TEAM)
        if created:
            self.stdout.write(f"Loaded {created} demo usage records.")
