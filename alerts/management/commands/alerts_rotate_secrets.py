"""Re-encrypts every channel's secrets with the first FIELD_ENCRYPTION_KEY (after adding a new key
in front of the old ones); then the old keys can be removed from the list."""

from django.core.management.base import BaseCommand
from django.db import transaction

from alerts.models import AlertChannel


class Command(BaseCommand):
    help = "Re-encrypt alert channel secrets with the current (first) FIELD_ENCRYPTION_KEY."

    def handle(self, *args, **options):
        count = 0
        with transaction.atomic():
            for channel in AlertChannel.objects.select_for_update():
                channel.save(update_fields=["secrets"])  # decrypted with any key, encrypted with the first
                count += 1
        self.stdout.write(f"{count} channel(s) re-encrypted.")
