from django.core.management.base import BaseCommand

from atlas_review.checks.services import recheck_all


class Command(BaseCommand):
    help = "Re-run the configured field checks on every current field (after editing them)."

    def handle(self, *args, **options):
        seen = recheck_all()
        self.stdout.write(f"Checked {seen} fields.")
