from django.core.management.base import BaseCommand

from atlas_review.flows import journal, services
from atlas_review.flows.models import Flow, Upload


class Command(BaseCommand):
    help = "Run one sync sweep synchronously: every due flow and v1 batch, and stored payloads."

    def add_arguments(self, parser):
        parser.add_argument("--all", action="store_true", help="also flows not yet due")

    def handle(self, *args, **options):
        flow_ids, batch_ids = services.due_ids()
        if options["all"]:
            flow_ids = list(Flow.objects.unfinished().values_list("pk", flat=True))
        for pk in flow_ids:
            services.sync_flow(pk)
        for pk in batch_ids:
            services.sync_batch(pk)
        pending = services.pending_payload_ids(older_than_seconds=0)
        for pk in pending:
            journal.apply(pk)
        done = Flow.objects.filter(pk__in=flow_ids).exclude(
            sync_state__in=["NEW", "STARTING", "POLLING"]
        )
        self.stdout.write(
            f"synced {len(flow_ids)} flow(s) ({done.count()} finished), "
            f"{len(batch_ids)} batch(es), re-applied {len(pending)} payload(s); "
            f"{Flow.objects.unfinished().count()} flow(s) and "
            f"{Upload.objects.filter(api='v1', sync_state='POLLING').count()} batch(es) still processing"
        )
