"""Celery tasks: thin wrappers around services, ids as arguments, safe to run twice.

acks_late + reject_on_worker_lost (settings) mean a task whose worker dies is redelivered;
every task re-reads its row and does only the step still needed, so redelivery is harmless.
"""

from __future__ import annotations

import logging

from celery import shared_task

from . import journal, services
from .models import Upload

log = logging.getLogger(__name__)


@shared_task
def sync_flow(flow_id: int) -> None:
    services.sync_flow(flow_id)


@shared_task
def sync_batch(upload_id: int) -> None:
    services.sync_batch(upload_id)


@shared_task
def apply_payload(payload_id: int) -> None:
    # With the others waiting: under a burst of callbacks, the first task applies the
    # burst in one set-based transaction and the tasks after it find theirs settled.
    journal.apply_with_backlog(payload_id)


@shared_task
def sweep() -> dict:
    """Beat: dispatch every due flow and v1 batch once, and re-apply stored payloads whose
    task was lost. Claims are conditional UPDATEs, so overlapping sweeps do not double up."""
    # Flows are claimed in bulk (at 10k due flows, one UPDATE each was a third of the
    # sweep's queries); v1 batches are few.
    flows = services.claim_due_flows()
    batches = [pk for pk in services.due_batch_ids() if services.claim_due(Upload, pk)]
    for pk in flows:
        sync_flow.delay(pk)
    for pk in batches:
        sync_batch.delay(pk)
    pending = services.pending_payload_ids()
    for pk in pending:
        apply_payload.delay(pk)
    summary = {"flows": len(flows), "batches": len(batches), "payloads": len(pending)}
    if any(summary.values()):
        log.info("sweep dispatched %s", summary)
    return summary
