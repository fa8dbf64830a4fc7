"""create_api_key USERNAME [--name NAME]: prints the new key as the last line of its output."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from budgets import accounts


class Command(BaseCommand):
    help = "Create an API key for a user; the key is printed once, as the last line."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--name", default="CLI key")

    def handle(self, *args, username, name, **options):
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No user named {username!r}.")
        api_key, raw_key = accounts.api_key_create(user=user, name=name)
        self.stdout.write(f"Created API key {api_key.name!r} ({api_key.prefix}…) for {username}. Store it now:")
        self.stdout.write(raw_key)
