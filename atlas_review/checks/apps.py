from django.apps import AppConfig


class ChecksConfig(AppConfig):
    name = "atlas_review.checks"
    label = "checks"
    verbose_name = "Checks and reuse alerts"

    def ready(self) -> None:
        from atlas_review.flows.ingest import results_applied, results_created

        from .services import on_results_applied, on_results_created

        # Listed before atlas_review.review in INSTALLED_APPS, so this runs before the
        # review flagging reads the stored results.
        results_applied.connect(on_results_applied, dispatch_uid="checks.on_results_applied")
        results_created.connect(on_results_created, dispatch_uid="checks.on_results_created")
