from atlas_review.audit.models import ExportJob

from ._export import ExportCommand


class Command(ExportCommand):
    help = (
        "Export flows as CSV: one row per flow with its statuses, outcome and counts of "
        "documents, flagged items and decisions (columns: docs/exports.md)."
    )
    kind = ExportJob.Kind.FLOWS
