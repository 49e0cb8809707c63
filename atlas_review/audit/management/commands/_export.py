"""What export_decisions and export_flows share: the filter options (parsed by the same
parse_filters as the web page), the output, and the record of the export."""

from __future__ import annotations

import getpass

from django.core.management.base import BaseCommand, CommandError

from atlas_review.audit import exports
from atlas_review.audit.filters import InvalidFilters, parse_filters

# The form's keys as the command's options spell them, for error messages.
OPTION_OF = {
    "date_from": "--from",
    "date_to": "--to",
    "product_type": "--product-type",
    "reviewer": "--reviewer",
    "outcome": "--outcome",
}


class _TextSink:
    """A binary writer onto a text stream (call_command(stdout=StringIO()) in tests)."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, data: bytes) -> None:
        self.stream.write(data.decode())


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no passwd entry (containers)
        return "unknown"


class ExportCommand(BaseCommand):
    kind: str

    def add_arguments(self, parser):
        parser.add_argument("--from", dest="date_from", metavar="YYYY-MM-DD", default="")
        parser.add_argument(
            "--to", dest="date_to", metavar="YYYY-MM-DD", default="", help="inclusive"
        )
        parser.add_argument("--product-type", default="")
        parser.add_argument("--reviewer", default="", metavar="USERNAME")
        parser.add_argument("--outcome", default="", help="approved, rejected or needs_info")
        parser.add_argument("--output", "-o", default="-", metavar="FILE", help="- for stdout")
        parser.add_argument("--bom", action="store_true", help="start with a BOM (for Excel)")

    def handle(self, *args, **options):
        try:
            filters = parse_filters({key: options[key] for key in OPTION_OF})
        except InvalidFilters as exc:
            raise CommandError(
                "; ".join(
                    f"{OPTION_OF.get(k, k)}: {' '.join(msgs)}" for k, msgs in exc.errors.items()
                )
            ) from None
        output = options["output"]
        who = f"command ({_os_user()})"
        if output == "-":
            stream = self.stdout._out
            sink = getattr(stream, "buffer", None) or _TextSink(stream)
            job = exports.export_to(sink, self.kind, filters, bom=options["bom"], requested_by=who)
            stream.flush()
        else:
            try:
                with open(output, "wb") as f:
                    job = exports.export_to(
                        f, self.kind, filters, bom=options["bom"], requested_by=who
                    )
            except OSError as exc:
                raise CommandError(f"Cannot write {output}: {exc.strerror}") from None
        # On stderr, so that stdout stays pure CSV.
        self.stderr.write(
            f"Exported {job.rows_written} {self.kind} row(s) "
            f"({filters.describe()}) to {'stdout' if output == '-' else output}; "
            f"recorded as export #{job.pk}.",
            style_func=str,
        )
