from django.apps import AppConfig
from django.db.models.signals import post_migrate, post_save


def _sync_roles(sender, **kwargs):
    from .roles import sync_roles

    sync_roles()


class ReviewConfig(AppConfig):
    name = "atlas_review.review"
    label = "review"

    def ready(self) -> None:
        from atlas_review.flows.ingest import results_applied, results_created
        from atlas_review.flows.models import Flow

        from . import flagging

        # Groups are created by migration 0002 and follow roles.ROLE_PERMISSIONS after every
        # migrate (permissions of models added later only exist after post_migrate).
        post_migrate.connect(_sync_roles, dispatch_uid="review.sync_roles")
        # The queue follows Atlas's data inside the ingest transaction.
        results_applied.connect(flagging.on_results_applied, dispatch_uid="review.flag_flow")
        results_created.connect(flagging.on_results_created, dispatch_uid="review.flag_first")
        post_save.connect(flagging.on_flow_saved, sender=Flow, dispatch_uid="review.sync_failed")
