"""The payload journal: store every raw body first, then apply it through the ingest service.

`record` never parses: it must succeed for any bytes, so nothing Atlas sent is ever lost.
`apply` parses and applies a stored payload and records the outcome; it is safe to call
again for the same payload (re-apply from the admin, the sweeper after a broker loss).
"""

from __future__ import annotations

import hashlib
import logging
from datetime import datetime

from django.db import DatabaseError, DataError, transaction
from django.db.models import Q
from django.utils import timezone

from atlas_review.atlas import payloads

from . import bulk, ingest
from .models import Payload

log = logging.getLogger(__name__)

MAX_APPLY_ATTEMPTS = 5
V3_SOURCES = (Payload.Source.POLL_V3, Payload.Source.CALLBACK_V3)
# Outcomes that say the payload took effect (or had nothing to change): final.
SETTLED = (Payload.Outcome.APPLIED, Payload.Outcome.DUPLICATE, Payload.Outcome.STALE)


def record(
    source: str,
    body: bytes,
    *,
    headers: dict | None = None,
    flow_uuid: str = "",
    batch_id: str = "",
    as_of: datetime | None = None,
    outcome: str = Payload.Outcome.RECEIVED,
    error: str = "",
) -> Payload:
    return Payload.objects.create(
        source=source,
        body=body,
        size=len(body),
        sha256=hashlib.sha256(body).hexdigest(),
        headers=headers or {},
        flow_uuid=flow_uuid[:64],
        batch_id=batch_id[:128],
        as_of=as_of,
        outcome=outcome,
        error=error,
    )


def parse(payload: Payload):
    """The typed content of a stored payload (raises payloads.PayloadError)."""
    data = payloads.loads(bytes(payload.body))
    if payload.source in V3_SOURCES:
        return payloads.parse_callback_data(data)
    return payloads.parse_batch_page(data, batch_id=payload.batch_id)


def apply(payload_id: int) -> Payload | None:
    """Apply a stored payload. Returns it with its outcome, or None if it is gone."""
    payload = Payload.objects.filter(pk=payload_id).first()
    if payload is None:
        return None
    if payload.outcome in SETTLED:
        # Applied before: a redelivered task, or two sweeps that both found it pending.
        return payload
    Payload.objects.filter(pk=payload_id).update(attempts=payload.attempts + 1)
    try:
        parsed = parse(payload)
    except payloads.PayloadError as exc:
        return _finish(payload, Payload.Outcome.REJECTED, str(exc))
    try:
        # The rows and the row's outcome commit together: a worker killed in between would
        # leave the data applied and its payload `received`, to be labelled a duplicate of
        # itself by the sweeper.
        with transaction.atomic():
            if isinstance(parsed, payloads.CallbackData):
                payload.flow_uuid = parsed.flow_uuid
                result = ingest.apply_callback_data(
                    parsed, as_of=payload.as_of, source=payload.source
                )
            else:
                payload.batch_id = parsed.batch_id
                result = ingest.apply_batch_pages(parsed.batch_id, [parsed], as_of=payload.as_of)
            payload.flow = result.flow
            payload.upload = result.batch
            return _finish(payload, result.outcome, "")
    except ingest.UnmatchedPayload as exc:
        return _finish(payload, Payload.Outcome.UNMATCHED, str(exc))
    except DataError as exc:
        # The database refuses a value (too long for its column, a character it cannot
        # store): the same every time, so not retried like an outage; shown instead.
        # The first line names the problem; the rest quotes the SQL, with Atlas's data.
        problem = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        log.warning("payload %s cannot be stored: %s", payload.pk, problem)
        return _finish(payload, Payload.Outcome.FAILED, f"the database refused a value: {problem}")
    except DatabaseError:
        raise  # transient (database restarting): stays "received" for the sweeper
    except Exception as exc:
        # A bug, not a fault: after a few tries stop retrying and show it to administrators
        # (it can be re-applied from the admin once fixed) instead of looping forever.
        if payload.attempts + 1 >= MAX_APPLY_ATTEMPTS:
            log.exception("payload %s failed to apply %s times", payload.pk, MAX_APPLY_ATTEMPTS)
            return _finish(payload, Payload.Outcome.FAILED, f"{type(exc).__name__}: {exc}"[:2000])
        raise


BACKLOG_BATCH = 100


def apply_with_backlog(payload_id: int, limit: int = BACKLOG_BATCH) -> list[int]:
    """Apply a stored v3 payload together with up to `limit - 1` others still waiting, in
    one transaction through ingest.apply_deliveries (set-based: a burst of callbacks is
    applied ~10x faster than one transaction each, bench/ingest_bench.py). Returns the ids
    this call settled.

    The waiting rows are locked with SKIP LOCKED, so two workers never take the same one; a
    payload another worker holds is left to it. If the batch fails as a whole (an unknown
    flow, a value the database refuses, a bug), it is rolled back and each payload is
    applied on its own by `apply`, which records what went wrong with which one."""
    waiting = Q(outcome=Payload.Outcome.RECEIVED, source__in=V3_SOURCES)
    with transaction.atomic():
        first = Payload.objects.select_for_update(skip_locked=True).filter(waiting, pk=payload_id)
        rows = list(first)
        if not rows:
            held_or_settled = Payload.objects.filter(pk=payload_id).exclude(waiting).exists()
            if not held_or_settled:
                return []  # another worker holds it: it applies it
            apply(payload_id)  # settled already (returns at once), or not a v3 payload
            return [payload_id]
        rows += list(
            Payload.objects.select_for_update(skip_locked=True)
            .filter(waiting, attempts=0)
            .exclude(pk=payload_id)
            .order_by("pk")[: limit - 1]
        )
        rows.sort(key=lambda p: p.pk)
        deliveries, parsed_rows = [], []
        for payload in rows:
            try:
                data = parse(payload)
            except payloads.PayloadError as exc:
                _finish(payload, Payload.Outcome.REJECTED, str(exc))
                continue
            payload.flow_uuid = data.flow_uuid
            deliveries.append(ingest.Delivery(data, payload.as_of, payload.source))
            parsed_rows.append(payload)
        try:
            with transaction.atomic():
                results = ingest.apply_deliveries(deliveries) if deliveries else []
                _finish_all(parsed_rows, results)
        except Exception as exc:
            # Each payload is applied alone below, where its own error is recorded.
            name = type(exc).__name__
            log.info("batch of %s payloads failed (%s); applying one by one", len(rows), name)
            retry = [p.pk for p in parsed_rows]
        else:
            retry = []
    for pk in retry:
        try:
            apply(pk)
        except Exception:
            # Left `received` (apply records a failure once it stops retrying): its own
            # task or the sweeper tries again; the others in the batch still go ahead.
            log.warning("payload %s left for the sweeper", pk, exc_info=True)
    return [p.pk for p in rows]


def _finish_all(rows: list[Payload], results: list[ingest.IngestResult]) -> None:
    """Record the outcomes of a batch: rows locked by this transaction, one UPDATE."""
    now = timezone.now()
    for payload, result in zip(rows, results, strict=True):
        payload.outcome = result.outcome
        payload.error = ""
        payload.applied_at = now
        payload.flow = result.flow
        payload.attempts += 1
    fields = ["outcome", "error", "applied_at", "flow", "flow_uuid", "attempts"]
    bulk.update(Payload, rows, fields)
    if rows:
        log.info("applied %s payloads as one batch", len(rows))


def _finish(payload: Payload, outcome: str, error: str) -> Payload:
    payload.outcome = outcome
    payload.error = error[:2000]
    if outcome in SETTLED:
        payload.applied_at = timezone.now()
    # Conditional: if a concurrent apply of this same row settled it first, its verdict
    # stands (ours would be "duplicate", hiding which delivery the data came from).
    finished = (
        Payload.objects.filter(pk=payload.pk)
        .exclude(outcome__in=SETTLED)
        .update(
            outcome=payload.outcome,
            error=payload.error,
            applied_at=payload.applied_at,
            flow_id=payload.flow_id,
            upload_id=payload.upload_id,
            flow_uuid=payload.flow_uuid[:64],
            batch_id=payload.batch_id[:128],
        )
    )
    if not finished:
        payload.refresh_from_db()
        return payload
    log.info("payload %s from %s: %s %s", payload.pk, payload.source, outcome, error)
    return payload


def retry_unmatched_for(flow_uuid: str) -> None:
    """A flow/init race: a callback that arrived before we stored the flow_uuid is applied
    as soon as the flow is known."""
    from .tasks import apply_payload

    ids = Payload.objects.filter(
        flow_uuid=flow_uuid, outcome=Payload.Outcome.UNMATCHED
    ).values_list("pk", flat=True)
    for pk in ids:
        transaction.on_commit(lambda pk=pk: apply_payload.delay(pk))
