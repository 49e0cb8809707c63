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
        next_sync_at=timezone.now(),
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
            _init(flow, client)
        if not flow.uploads.exists() and not _upload_already_received(flow, client):
            _upload(flow, client)
        _poll(flow, client)
    except AtlasError as exc:
        _record_error(flow, exc)
    return flow


def _init(flow: Flow, client: AtlasClient) -> None:
    auth_url, callback_url = callback_urls()
    flow.flow_uuid = client.init_flow(
        application_id=flow.application_id,
        product_type=flow.product_type,
        auth_url=auth_url,
        callback_url=callback_url,
        flow_params=flow.flow_params,
    )
    flow.sync_state = SyncState.STARTING
    flow.save(update_fields=["flow_uuid", "sync_state", "updated_at"])
    # A callback may have raced ahead of us storing the flow_uuid.
    journal.retry_unmatched_for(flow.flow_uuid)


def _upload_already_received(flow: Flow, client: AtlasClient) -> bool:
    """After an upload whose outcome was unknown (read timeout), ask Atlas before sending
    the files again: a second multiupload would process the documents twice."""
    if "outcome unknown" not in flow.last_error:
        return False
    return client.status(flow.flow_uuid).upload_status not in ("", "NOT_STARTED")


def _upload(flow: Flow, client: AtlasClient) -> None:
    files = [(f["file_url"], f["document_id"]) for f in flow.requested_files]
    batch_ids = client.upload(flow.flow_uuid, files)
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
    flow.upload_status = status.upload_status
    flow.processing_status = status.processing_status
    flow.crosscheck_status = status.crosscheck_status
    flow.master_status = status.master_status
    flow.last_synced_at = now
    flow.error_count = 0
    flow.last_error = ""
    update = [
        "upload_status",
        "processing_status",
        "crosscheck_status",
        "master_status",
        "last_synced_at",
        "error_count",
        "last_error",
        "sync_state",
        "updated_at",
    ]
    if status.master_status == "SUCCESS":
        flow.save(update_fields=update)
        fetch_results(flow, client)
        return
    if status.master_status == "FAILED":
        flow.sync_state = SyncState.FAILED
        flow.last_error = "Atlas reported master_status FAILED"
    elif now > flow.gave_up_deadline(settings.ATLAS_GIVE_UP_SECONDS):
        flow.sync_state = SyncState.GAVE_UP
        flow.last_error = (
            f"Still {status.master_status or 'unknown'} after "
            f"{settings.ATLAS_GIVE_UP_SECONDS // 60} minutes; stopped polling"
        )
    flow.save(update_fields=update)


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
    flow.error_count += 1
    flow.last_error = str(exc)[:2000]
    if getattr(exc, "outcome_unknown", False):
        flow.last_error = f"outcome unknown: {flow.last_error}"
    flow.last_synced_at = timezone.now()
    if exc.transient:
        delay = _backoff(flow.error_count)
        flow.next_sync_at = timezone.now() + timedelta(seconds=delay)
    else:
        flow.sync_state = SyncState.ERROR
    log.warning(
        "flow %s sync error (%s): %s", flow.pk, "transient" if exc.transient else "final", exc
    )
    flow.save(
        update_fields=[
            "error_count",
            "last_error",
            "last_synced_at",
            "next_sync_at",
            "sync_state",
            "updated_at",
        ]
    )


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
