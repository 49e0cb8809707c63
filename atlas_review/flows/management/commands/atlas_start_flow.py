from django.core.management.base import BaseCommand, CommandError

from atlas_review.flows import services


def parse_file_arg(value: str) -> tuple[str, str]:
    url, sep, document_id = value.rpartition("=")
    if not sep or not url or not document_id:
        raise CommandError(f"--file must look like URL=DOCUMENT_ID, got {value!r}")
    return url, document_id


class Command(BaseCommand):
    help = "Create a flow at Atlas (flow/init + multiupload) for one loan application."

    def add_arguments(self, parser):
        parser.add_argument("--application-id", required=True)
        parser.add_argument("--file", action="append", required=True, metavar="URL=DOCUMENT_ID")
        parser.add_argument("--product-type", default="")

    def handle(self, *args, **options):
        files = [parse_file_arg(f) for f in options["file"]]
        try:
            flow = services.create_flow(
                options["application_id"], files, product_type=options["product_type"]
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        flow.refresh_from_db()
        self.stdout.write(
            f"flow {flow.pk} application {flow.application_id}: {flow.get_sync_state_display()}"
            f" {flow.flow_uuid or ''} {flow.last_error}".rstrip()
        )
