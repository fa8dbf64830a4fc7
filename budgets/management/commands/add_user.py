"""add_user USERNAME --role researcher|admin [--team NAME] [--password PASSWORD] [--email EMAIL]"""

import getpass

from django.core.management.base import BaseCommand, CommandError

from budgets import accounts
from costmonitor.errors import InvalidParameters


class Command(BaseCommand):
    help = "Create or update a user with a role and a team (prompts for a password unless given)."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--role", required=True, choices=accounts.ROLES)
        parser.add_argument("--team")
        parser.add_argument("--password")
        parser.add_argument("--email", default="")

    def handle(self, *args, username, role, team, password, email, **options):
        if password is None:
            password = getpass.getpass(f"Password for {username}: ")
            if password != getpass.getpass("Again: "):
                raise CommandError("The passwords differ.")
        try:
            user = accounts.user_provision(username=username, role=role, team_name=team, password=password,
                                           email=email)
        except InvalidParameters as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(f"User {user.username}: role {role}" + (f", team {team}" if team else ""))
