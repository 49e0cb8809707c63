"""Sync with Atlas: start flows, poll them, fetch and apply results.

Plain functions over models and the Atlas client, so tasks, management commands and tests
call the same code. Every state change that two workers could race on is a conditional
UPDATE with a row-count check.
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.db.models.signals import post_save
from django.urls import reverse
from django.utils import timezone

from atlas_review.atlas.client import AtlasClient, AtlasError

from . import journal
from .models import ACTIVE_SYNC_STATES, Flow, Payload, SyncState, Upload

log = logging.getLogger(__name__)

MAX_BACKOFF_SECONDS = 600
MIN_BACKOFF_SECONDS = 5
_local = threading.local()


def atlas_client() -> AtlasClient:
    """One client (one HTTP connection pool) per worker thread, reused across tasks."""
    key = (settings.ATLAS_BASE_URL, settings.ATLAS_DOCSTREAM_URL, settings.ATLAS_CLIENT_ID)
    cached = getattr(_local, "client", None)
    if cached is None or cached[0] != key:
        _local.client = cached = (key, AtlasClient.from_settings())
    return cached[1]


def callback_urls() -> tuple[str, str]:
    base = settings.PUBLIC_BASE_URL
    return base + reverse("callbacks:auth"), base + reverse("callbacks:callback")


def create_flow(
    application_id: str,
    files: list[tuple[str, str]],
    *,
    product_type: str = "",
    flow_params: dict | None = None,
) -> Flow:
    """Record a new application and queue its start at Atlas (init + upload)."""
    from .tasks import sync_flow

    if not application_id.strip():
        raise ValueError("application_id is required")
    if not files:
        raise ValueError("at least one file is required")
    for url, _doc_id in files:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"file URL must be http(s): {url!r}")
    flow = Flow.objects.create(
        application_id=application_id,
        product_type=product_type or settings.ATLAS_PRODUCT_TYPE,
        flow_params=flow_params or {},
        requested_files=[{"file_url": url, "document_id": doc_id} for url, doc_id in files],
        sync_state=SyncState.NEW,
        # Claimed for the task queued below, as the sweep claims what it dispatches: a sweep
        # in between would start the flow a second time (two flows and uploads at Atlas).
        # If the task is lost, the sweep starts the flow once this time has passed.
        next_sync_at=timezone.now() + timedelta(seconds=settings.ATLAS_POLL_INTERVAL_SECONDS),
    )
    sync_flow.delay_on_commit(flow.pk)
    return flow


def create_batch(
    files: list[tuple[str, str]], *, product_type: str = "", client: AtlasClient | None = None
) -> Upload:
    """Upload a v1 docstream batch now and record it for polling."""
    client = client or atlas_client()
    product_type = product_type or settings.ATLAS_V1_PRODUCT_TYPE
    batch_id = client.v1_upload(product_type, files)
    return Upload.objects.create(
        batch_id=batch_id,
        api=Upload.Api.V1,
        product_type=product_type,
        files=[{"file_url": url, "document_id": doc_id} for url, doc_id in files],
        sync_state=SyncState.POLLING,
        next_sync_at=timezone.now() + timedelta(seconds=settings.ATLAS_POLL_INTERVAL_SECONDS),
    )


def claim_due(model, pk: int, now=None) -> bool:
    """Take the next sync of one row: only the caller whose UPDATE matched polls it, so
    two schedulers (or a retry racing the beat) never poll the same row twice."""
    now = now or timezone.now()
    interval = timedelta(seconds=settings.ATLAS_POLL_INTERVAL_SECONDS)
    return bool(
        model.objects.filter(
            pk=pk, sync_state__in=ACTIVE_SYNC_STATES, next_sync_at__lte=now
        ).update(next_sync_at=now + interval)
    )


def sync_flow(flow_id: int, client: AtlasClient | None = None) -> Flow | None:
    """Take one flow one step further: init, upload, poll status, fetch results."""
    flow = Flow.objects.filter(pk=flow_id).first()
    if flow is None or flow.sync_state not in ACTIVE_SYNC_STATES:
        return flow
    client = client or atlas_client()
    try:
        if not flow.flow_uuid:
            if not _init(flow, client):
                return flow
            _upload(flow, client)
        elif flow.sync_state != SyncState.POLLING and not flow.uploads.exists():
            _resume_upload(flow, client)
        _poll(flow, client)
    except AtlasError as exc:
        _record_error(flow, exc)
    return flow


def _init(flow: Flow, client: AtlasClient) -> bool:
    """Start the flow at Atlas. False if another run started it meanwhile (two tasks for
    one new flow): its flow_uuid stays, and it does the upload."""
    auth_url, callback_url = callback_urls()
    flow_uuid = client.init_flow(
        application_id=flow.application_id,
        product_type=flow.product_type,
        auth_url=auth_url,
        callback_url=callback_url,
        flow_params=flow.flow_params,
    )
    not_started = Q(flow_uuid__isnull=True) | Q(flow_uuid="")
    started = Flow.objects.filter(not_started, pk=flow.pk).update(
        flow_uuid=flow_uuid, sync_state=SyncState.STARTING, updated_at=timezone.now()
    )
    if not started:
        log.warning(
            "flow %s was started by another run; Atlas flow %s is unused", flow.pk, flow_uuid
        )
        return False
    flow.flow_uuid, flow.sync_state = flow_uuid, SyncState.STARTING
    # A callback may have raced ahead of us storing the flow_uuid.
    journal.retry_unmatched_for(flow.flow_uuid)
    return True


def _resume_upload(flow: Flow, client: AtlasClient) -> None:
    """A flow started at Atlas before this run but without a recorded upload: the upload
    failed, its answer was lost (read timeout), or a worker died between Atlas accepting it
    and our commit. Ask Atlas before sending the files again: a second multiupload would
    process (and bill) the documents twice."""
    if client.status(flow.flow_uuid).upload_status in ("", "NOT_STARTED"):
        _upload(flow, client)
    else:
        _uploaded(flow, batch_ids=[])  # the batch id is lost; file URLs come from the flow


def _upload(flow: Flow, client: AtlasClient) -> None:
    files = [(f["file_url"], f["document_id"]) for f in flow.requested_files]
    _uploaded(flow, client.upload(flow.flow_uuid, files))


def _uploaded(flow: Flow, batch_ids: list[str]) -> None:
    with transaction.atomic():
        for batch_id in batch_ids:
            Upload.objects.get_or_create(
                batch_id=batch_id,
                defaults={
                    "api": Upload.Api.V3,
                    "flow": flow,
                    "product_type": flow.product_type,
                    "files": flow.requested_files,
                },
            )
        now = timezone.now()
        flow.sync_state = SyncState.POLLING
        flow.processing_started_at = now
        flow.next_sync_at = now + timedelta(seconds=settings.ATLAS_POLL_INTERVAL_SECONDS)
        flow.save(
            update_fields=["sync_state", "processing_started_at", "next_sync_at", "updated_at"]
        )


def _poll(flow: Flow, client: AtlasClient) -> None:
    status = client.status(flow.flow_uuid)
    now = timezone.now()
    values = {
        "upload_status": status.upload_status,
        "processing_status": status.processing_status,
        "crosscheck_status": status.crosscheck_status,
        "master_status": status.master_status,
        "last_synced_at": now,
        "error_count": 0,
        "last_error": "",
    }
    if status.master_status == "FAILED":
        values.update(sync_state=SyncState.FAILED, last_error="Atlas reported master_status FAILED")
    elif status.master_status != "SUCCESS" and now > flow.gave_up_deadline(
        settings.ATLAS_GIVE_UP_SECONDS
    ):
        values.update(
            sync_state=SyncState.GAVE_UP,
            last_error=(
                f"Still {status.master_status or 'unknown'} after "
                f"{settings.ATLAS_GIVE_UP_SECONDS // 60} minutes; stopped polling"
            ),
        )
    if _update_if_active(flow, values) and status.master_status == "SUCCESS":
        fetch_results(flow, client)


def _update_if_active(flow: Flow, values: dict) -> bool:
    """Write values unless the flow has finished since we read it: a callback applied
    while we were asking Atlas, or another worker, got there first. Saving our stale copy
    would put a finished flow back to processing, where no sweep ever picks it up again."""
    values = {**values, "updated_at": timezone.now()}
    if not Flow.objects.filter(pk=flow.pk, sync_state__in=ACTIVE_SYNC_STATES).update(**values):
        flow.refresh_from_db()
        return False
    for name, value in values.items():
        setattr(flow, name, value)
    # As save(update_fields=...) would: the review app queues flows whose sync failed.
    post_save.send(
        sender=Flow, instance=flow, created=False, update_fields=frozenset(values),
        raw=False, using=flow._state.db,
    )  # fmt: skip
    return True


def fetch_results(flow: Flow, client: AtlasClient) -> Payload:
    """Fetch /extracts, journal the raw body, then apply it like any delivery."""
    raw, _parsed = client.fetch_extracts(flow.flow_uuid)
    payload = journal.record(
        Payload.Source.POLL_V3, raw, flow_uuid=flow.flow_uuid, as_of=timezone.now()
    )
    return journal.apply(payload.pk)


def _backoff(error_count: int) -> int:
    base = max(settings.ATLAS_POLL_INTERVAL_SECONDS, MIN_BACKOFF_SECONDS)
    return min(base * 2 ** (error_count - 1), MAX_BACKOFF_SECONDS)


def _record_error(flow: Flow, exc: AtlasError) -> None:
    """Transient errors back off and retry on a later sweep; others stop the flow visibly."""
    error_count = flow.error_count + 1
    message = str(exc)[:2000]
    if getattr(exc, "outcome_unknown", False):
        message = f"outcome unknown: {message}"
    now = timezone.now()
    values = {"error_count": error_count, "last_error": message, "last_synced_at": now}
    if exc.transient:
        # Atlas's Retry-After, when longer than the client waits inline, sets the pace.
        delay = max(_backoff(error_count), getattr(exc, "retry_after", None) or 0)
        values["next_sync_at"] = now + timedelta(seconds=delay)
    else:
        values["sync_state"] = SyncState.ERROR
    log.warning(
        "flow %s sync error (%s): %s", flow.pk, "transient" if exc.transient else "final", exc
    )
    _update_if_active(flow, values)


def sync_batch(upload_id: int, client: AtlasClient | None = None) -> Upload | None:
    """Poll a v1 batch: read every page of extracts and apply them together."""
    from atlas_review.flows import ingest

    batch = Upload.objects.filter(pk=upload_id, api=Upload.Api.V1).first()
    if batch is None or batch.sync_state not in ACTIVE_SYNC_STATES:
        return batch
    client = client or atlas_client()
    try:
        pages = client.v1_extracts(batch.batch_id)
    except AtlasError as exc:
        batch.error_count += 1
        batch.last_error = str(exc)[:2000]
        if exc.transient or exc.status == 409:  # 409: still processing
            delay = _backoff(batch.error_count)
            batch.next_sync_at = timezone.now() + timedelta(seconds=delay)
            if exc.status == 409:
                batch.error_count, batch.last_error = 0, ""
        else:
            batch.sync_state = SyncState.ERROR
        batch.save()
        return batch
    as_of = timezone.now()
    stored = [
        journal.record(Payload.Source.POLL_V1, raw, batch_id=batch.batch_id, as_of=as_of)
        for raw, _page in pages
    ]
    result = ingest.apply_batch_pages(batch.batch_id, [page for _raw, page in pages], as_of=as_of)
    Payload.objects.filter(pk__in=[p.pk for p in stored]).update(
        outcome=result.outcome, upload=batch, applied_at=timezone.now()
    )
    return batch


def due_ids(now=None, limit: int = 5000) -> tuple[list[int], list[int]]:
    now = now or timezone.now()
    flows = list(
        Flow.objects.due(now).order_by("next_sync_at").values_list("pk", flat=True)[:limit]
    )
    batches = list(
        Upload.objects.filter(
            api=Upload.Api.V1, sync_state__in=ACTIVE_SYNC_STATES, next_sync_at__lte=now
        )
        .order_by("next_sync_at")
        .values_list("pk", flat=True)[:limit]
    )
    return flows, batches


def pending_payload_ids(older_than_seconds: int = 60) -> list[int]:
    """Payloads stored but never applied (a lost task): the journal is the source of truth."""
    cutoff = timezone.now() - timedelta(seconds=older_than_seconds)
    return list(
        Payload.objects.filter(outcome=Payload.Outcome.RECEIVED, received_at__lte=cutoff)
        .order_by("received_at")
        .values_list("pk", flat=True)[:1000]
    )


SWEEP_MAX_FLOWS = 20_000
_CLAIM_CHUNK = 1000


def claim_due_flows(now=None, limit: int = SWEEP_MAX_FLOWS) -> list[int]:
    """Take the next sync of every due flow (up to limit, most overdue first) in two
    statements per thousand instead of one UPDATE per flow: the rows are locked with SKIP
    LOCKED, so a sweep running at the same time claims the others, and a row is claimed by
    one sweep only (it is not due any more once this transaction commits)."""
    now = now or timezone.now()
    until = now + timedelta(seconds=settings.ATLAS_POLL_INTERVAL_SECONDS)
    with transaction.atomic():
        ids = list(
            Flow.objects.due(now)
            .order_by("next_sync_at")
            .select_for_update(skip_locked=True)
            .values_list("pk", flat=True)[:limit]
        )
        for start in range(0, len(ids), _CLAIM_CHUNK):
            Flow.objects.filter(pk__in=ids[start : start + _CLAIM_CHUNK]).update(next_sync_at=until)
    return ids


def due_batch_ids(now=None, limit: int = 5000) -> list[int]:
    """v1 batches whose next poll is due (uses upload_due_idx)."""
    return list(
        Upload.objects.filter(
            api=Upload.Api.V1,
            sync_state__in=ACTIVE_SYNC_STATES,
            next_sync_at__lte=now or timezone.now(),
        )
        .order_by("next_sync_at")
        .values_list("pk", flat=True)[:limit]
    )
