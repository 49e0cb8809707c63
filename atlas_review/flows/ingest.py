"""The one ingest service: applies an Atlas payload to the database.

Both the poll path (tasks) and the push path (callbacks) call these functions. Each applies
one payload in one transaction under a row lock on its flow (or v1 batch), so concurrent
deliveries for the same flow queue up instead of interleaving. It is idempotent: the
payload's content hash is compared with the last one applied, and an identical payload
writes nothing. Deliveries older than what was applied (by `as_of`) are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from django.db import transaction
from django.dispatch import Signal
from django.utils import timezone

from atlas_review.atlas.payloads import BatchPage, CallbackData, OcrDocument, documents_hash

from .models import CrossCheck, Document, ExtractedField, Flow, SyncState, Upload

# Sent inside the ingest transaction after a flow's (or batch's) rows changed.
# kwargs: flow (or None), batch (or None), changes (Changes). The review app listens.
results_applied = Signal()

APPLIED, DUPLICATE, STALE = "applied", "duplicate", "stale"


class UnmatchedPayload(LookupError):
    """The payload names a flow or batch we do not know (yet)."""


@dataclass
class Changes:
    created: int = 0
    updated: int = 0
    withdrawn: int = 0
    # Ids of rows whose Atlas value changed (a decision made on them is now superseded).
    changed_field_ids: set[int] = field(default_factory=set)
    changed_check_ids: set[int] = field(default_factory=set)
    changed_document_ids: set[int] = field(default_factory=set)

    @property
    def total(self) -> int:
        return self.created + self.updated + self.withdrawn


@dataclass
class IngestResult:
    outcome: str
    changes: Changes
    flow: Flow | None = None
    batch: Upload | None = None


def apply_callback_data(
    data: CallbackData, *, as_of: datetime | None = None, source: str = ""
) -> IngestResult:
    as_of = as_of or timezone.now()
    with transaction.atomic():
        flow = Flow.objects.select_for_update().filter(flow_uuid=data.flow_uuid).first()
        if flow is None:
            raise UnmatchedPayload(f"unknown flow_uuid {data.flow_uuid!r}")
        digest = data.content_hash()
        if flow.results_as_of and as_of < flow.results_as_of and flow.results_hash != digest:
            return IngestResult(STALE, Changes(), flow=flow)
        if flow.results_hash == digest:
            return IngestResult(DUPLICATE, Changes(), flow=flow)

        now = timezone.now()
        file_urls = _file_urls(flow.uploads.all(), fallback=flow.requested_files)
        changes = Changes()
        _apply_documents({"flow": flow}, data.documents, file_urls, now, changes)
        _apply_cross_checks(flow, data, now, changes)

        flow.results_hash = digest
        flow.results_as_of = max(as_of, flow.results_as_of) if flow.results_as_of else as_of
        flow.results_source = source
        flow.sync_state = SyncState.DONE
        flow.next_sync_at = None
        flow.last_synced_at = now
        if not flow.master_status or flow.master_status in ("NOT_STARTED", "IN_PROGRESS"):
            # A full result is only delivered once Atlas finished.
            flow.master_status = "SUCCESS"
        flow.save()
        results_applied.send(sender=Flow, flow=flow, batch=None, changes=changes)
        return IngestResult(APPLIED, changes, flow=flow)


def apply_batch_pages(
    batch_id: str, pages: list[BatchPage], *, as_of: datetime | None = None
) -> IngestResult:
    """Apply every page of a v1 batch (from a poll or a v1 callback)."""
    as_of = as_of or timezone.now()
    documents: list[OcrDocument] = []
    for page in sorted(pages, key=lambda p: p.page):
        offset = (page.page - 1) * page.per_page
        documents.extend(_reposition(d, offset + d.position) for d in page.documents)
    with transaction.atomic():
        batch = (
            Upload.objects.select_for_update().filter(batch_id=batch_id, api=Upload.Api.V1).first()
        )
        if batch is None:
            raise UnmatchedPayload(f"unknown batch_id {batch_id!r}")
        digest = documents_hash(documents)
        if batch.results_as_of and as_of < batch.results_as_of and batch.results_hash != digest:
            return IngestResult(STALE, Changes(), batch=batch)
        if batch.results_hash == digest:
            return IngestResult(DUPLICATE, Changes(), batch=batch)
        now = timezone.now()
        changes = Changes()
        _apply_documents({"v1_batch": batch}, documents, _file_urls([batch]), now, changes)
        batch.results_hash = digest
        batch.results_as_of = max(as_of, batch.results_as_of) if batch.results_as_of else as_of
        batch.sync_state = SyncState.DONE
        batch.next_sync_at = None
        batch.last_synced_at = now
        batch.save()
        results_applied.send(sender=Upload, flow=None, batch=batch, changes=changes)
        return IngestResult(APPLIED, changes, batch=batch)


def _reposition(doc: OcrDocument, position: int) -> OcrDocument:
    from dataclasses import replace

    return replace(doc, position=position)


def _file_urls(uploads, fallback=()) -> dict[tuple[str, str], str]:
    """(batch_id, document_id) -> file_url from what we uploaded; ("", id) as fallback."""
    urls: dict[tuple[str, str], str] = {
        ("", str(item.get("document_id", ""))): item.get("file_url", "") for item in fallback
    }
    for upload in uploads:
        for item in upload.files:
            doc_id, url = str(item.get("document_id", "")), item.get("file_url", "")
            urls[(upload.batch_id, doc_id)] = url
            urls.setdefault(("", doc_id), url)
    return urls


def _document_keys(documents) -> list[str]:
    keys, seen = [], set()
    for doc in documents:
        key = f"uuid:{doc.file_uuid}" if doc.file_uuid else f"pos:{doc.position}"
        if key in seen:  # a repeated file_uuid in one payload: keep both
            key = f"{key}#{doc.position}"
        seen.add(key)
        keys.append(key)
    return keys


_DOC_ATTRS = (
    "position",
    "document_id",
    "file_uuid",
    "batch_id",
    "file_url",
    "document_type",
    "error_code",
    "error_reason",
    "extra",
)


def _apply_documents(owner: dict, documents, file_urls, now, changes: Changes) -> None:
    existing = {d.key: d for d in Document.objects.filter(**owner)}
    flow = owner.get("flow")
    to_create, to_update, parsed_by_key = [], [], {}
    for key, doc in zip(_document_keys(documents), documents, strict=True):
        parsed_by_key[key] = doc
        url = file_urls.get((doc.batch_id, doc.document_id)) or file_urls.get(
            ("", doc.document_id), ""
        )
        attrs = {
            "position": doc.position,
            "document_id": doc.document_id,
            "file_uuid": doc.file_uuid,
            "batch_id": doc.batch_id,
            "file_url": url,
            "document_type": doc.document_type,
            "error_code": doc.error_code,
            "error_reason": doc.error_reason,
            "extra": doc.extra,
        }
        row = existing.get(key)
        if row is None:
            to_create.append(Document(key=key, **owner, **attrs))
        elif row.withdrawn_at or any(getattr(row, k) != v for k, v in attrs.items()):
            if row.error_code != doc.error_code or row.document_type != doc.document_type:
                changes.changed_document_ids.add(row.pk)
            for k, v in attrs.items():
                setattr(row, k, v)
            row.withdrawn_at = None
            row.updated_at = now
            to_update.append(row)
    withdrawn = [
        d for k, d in existing.items() if k not in parsed_by_key and d.withdrawn_at is None
    ]
    for row in withdrawn:
        row.withdrawn_at = now
        changes.changed_document_ids.add(row.pk)
    Document.objects.bulk_create(to_create)
    if to_update or withdrawn:
        Document.objects.bulk_update(
            to_update + withdrawn, [*_DOC_ATTRS, "withdrawn_at", "updated_at"]
        )
    changes.created += len(to_create)
    changes.updated += len(to_update)
    changes.withdrawn += len(withdrawn)

    rows = {**existing, **{d.key: d for d in to_create}}
    current_docs = {key: rows[key] for key in parsed_by_key}
    _apply_fields(flow, current_docs, parsed_by_key, withdrawn, now, changes)


def _apply_fields(
    flow, docs: dict[str, Document], parsed: dict[str, OcrDocument], withdrawn_docs, now, changes
) -> None:
    doc_ids = [d.pk for d in docs.values()] + [d.pk for d in withdrawn_docs]
    existing = {
        (f.document_id, f.name): f for f in ExtractedField.objects.filter(document_id__in=doc_ids)
    }
    seen: set[tuple[int, str]] = set()
    to_create, to_update = [], []
    for key, doc in docs.items():
        for position, item in enumerate(parsed[key].fields):
            ident = (doc.pk, item.name)
            seen.add(ident)
            row = existing.get(ident)
            if row is None:
                to_create.append(
                    ExtractedField(
                        document=doc, flow=flow, document_type=doc.document_type, name=item.name,
                        position=position, value=item.value, confidence=item.confidence,
                    )
                )  # fmt: skip
                continue
            if row.value != item.value or row.confidence != item.confidence:
                changes.changed_field_ids.add(row.pk)
            elif (
                not row.withdrawn_at
                and row.position == position
                and row.document_type == doc.document_type
            ):
                continue
            row.value, row.confidence, row.position = item.value, item.confidence, position
            row.document_type, row.withdrawn_at, row.updated_at = doc.document_type, None, now
            to_update.append(row)
    withdrawn = [f for ident, f in existing.items() if ident not in seen and f.withdrawn_at is None]
    for row in withdrawn:
        row.withdrawn_at = now
        changes.changed_field_ids.add(row.pk)
    ExtractedField.objects.bulk_create(to_create, batch_size=1000)
    if to_update or withdrawn:
        ExtractedField.objects.bulk_update(
            to_update + withdrawn,
            ["value", "confidence", "position", "document_type", "withdrawn_at", "updated_at"],
            batch_size=1000,
        )
    changes.created += len(to_create)
    changes.updated += len(to_update)
    changes.withdrawn += len(withdrawn)


def _check_keys(checks) -> list[str]:
    keys, seen = [], set()
    for c in checks:
        key = f"{c.name}|{c.source_doc}.{c.source_field_name}|{c.target_doc}.{c.target_field_name}"
        if key in seen:
            key = f"{key}#{c.position}"
        seen.add(key)
        keys.append(key)
    return keys


_CHECK_ATTRS = (
    "position", "name", "source_doc", "source_field_name", "source_value", "target_doc",
    "target_field_name", "target_value", "similarity", "extra",
)  # fmt: skip


def _apply_cross_checks(flow: Flow, data: CallbackData, now, changes: Changes) -> None:
    existing = {c.key: c for c in CrossCheck.objects.filter(flow=flow)}
    to_create, to_update, seen = [], [], set()
    for key, check in zip(_check_keys(data.cross_checks), data.cross_checks, strict=True):
        seen.add(key)
        attrs = {
            "position": check.position,
            "name": check.name,
            "source_doc": check.source_doc,
            "source_field_name": check.source_field_name,
            "source_value": check.source_value,
            "target_doc": check.target_doc,
            "target_field_name": check.target_field_name,
            "target_value": check.target_value,
            "similarity": check.similarity,
            "extra": check.extra,
        }
        row = existing.get(key)
        if row is None:
            to_create.append(CrossCheck(flow=flow, key=key, **attrs))
            continue
        if any(getattr(row, k) != attrs[k] for k in ("source_value", "target_value", "similarity")):
            changes.changed_check_ids.add(row.pk)
        elif not row.withdrawn_at and all(getattr(row, k) == v for k, v in attrs.items()):
            continue
        for k, v in attrs.items():
            setattr(row, k, v)
        row.withdrawn_at, row.updated_at = None, now
        to_update.append(row)
    withdrawn = [c for k, c in existing.items() if k not in seen and c.withdrawn_at is None]
    for row in withdrawn:
        row.withdrawn_at = now
        changes.changed_check_ids.add(row.pk)
    CrossCheck.objects.bulk_create(to_create)
    if to_update or withdrawn:
        CrossCheck.objects.bulk_update(
            to_update + withdrawn, [*_CHECK_ATTRS, "withdrawn_at", "updated_at"]
        )
    changes.created += len(to_create)
    changes.updated += len(to_update)
    changes.withdrawn += len(withdrawn)
