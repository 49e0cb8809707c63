"""Background exports: a thin wrapper, the job id as argument, safe to run twice (run_job
claims the queued job with a conditional UPDATE)."""

from celery import shared_task

from . import exports


@shared_task
def run_export(job_id: int) -> None:
    exports.run_job(job_id)
