from atlas_review.audit.models import ExportJob

from ._export import ExportCommand


class Command(ExportCommand):
    help = (
        "Export the decision trail as CSV: one row per decision, change of decision, "
        "supersession, flow outcome, claim release and reopen (columns: docs/exports.md)."
    )
    kind = ExportJob.Kind.DECISIONS
