from django.core.management.base import BaseCommand, CommandError

from atlas_review.atlas.client import AtlasError
from atlas_review.flows import services

from .atlas_start_flow import parse_file_arg


class Command(BaseCommand):
    help = "Upload a v1 docstream batch to Atlas and record it for polling."

    def add_arguments(self, parser):
        parser.add_argument("--file", action="append", required=True, metavar="URL=DOCUMENT_ID")
        parser.add_argument("--product-type", default="")

    def handle(self, *args, **options):
        files = [parse_file_arg(f) for f in options["file"]]
        try:
            batch = services.create_batch(files, product_type=options["product_type"])
        except AtlasError as exc:
            raise CommandError(f"Atlas refused the upload: {exc}") from None
        self.stdout.write(f"batch {batch.batch_id} with {len(files)} file(s) recorded")
