from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _sync_roles(sender, **kwargs):
    from .roles import sync_roles

    sync_roles()


class ReviewConfig(AppConfig):
    name = "atlas_review.review"
    label = "review"

    def ready(self) -> None:
        # Groups follow roles.ROLE_PERMISSIONS after every migrate (permissions for new
        # models only exist after post_migrate, so a one-off data migration would miss them).
        post_migrate.connect(_sync_roles, dispatch_uid="review.sync_roles")
