"""The one ingest service: applies an Atlas payload to the database.

Both the poll path (tasks) and the push path (callbacks) call these functions. Each applies
one payload in one transaction under a row lock on its flow (or v1 batch), so concurrent
deliveries for the same flow queue up instead of interleaving. It is idempotent: the
payload's content hash is compared with the last one applied, and an identical payload
writes nothing. Deliveries older than what was applied (by `as_of`) are ignored.

`apply_many` applies many v3 payloads in one transaction with one query per table for all
of them (bulk paths: the journal draining a backlog of callbacks); it plans every flow
exactly as `apply_callback_data` does, so the rows, Changes and outcomes are the same.

A flow's first results (nothing of it stored yet: nothing to diff) are written set-based
on PostgreSQL (flows.bulk: ids in one query, rows by COPY) and announced once per batch by
`results_created`, whose receivers (checks, review) derive their rows the same way; every
other delivery goes through the diff and `results_applied`, one flow at a time.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime

from django.db import transaction
from django.dispatch import Signal
from django.utils import timezone

from atlas_review.atlas.payloads import BatchPage, CallbackData, OcrDocument, documents_hash

from . import bulk
from .models import CrossCheck, Document, ExtractedField, Flow, SyncState, Upload

# Sent inside the ingest transaction after a flow's (or batch's) rows changed.
# kwargs: flow (or None), batch (or None), changes (Changes). The checks and review apps
# listen (in INSTALLED_APPS order: checks first).
results_applied = Signal()
# Sent once per apply_many round, inside its transaction, for the flows whose first results
# were just written set-based: kwargs deliveries (list[FirstDelivery]). Receivers must
# handle every delivery: these flows get no results_applied.
results_created = Signal()

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


@dataclass(slots=True)
class NewDocument:
    """A document row written by a first delivery, as the receivers read it (the same
    attribute names as the model, without a model instance per row)."""

    pk: int
    flow_id: int
    key: str
    position: int
    document_type: str
    error_code: str
    error_reason: str


@dataclass(slots=True)
class NewField:
    pk: int
    document_id: int
    flow_id: int
    document_type: str
    name: str
    position: int
    value: object
    confidence: float | None


@dataclass(slots=True)
class NewCrossCheck:
    pk: int
    flow_id: int
    key: str
    name: str
    source_value: object
    target_value: object
    similarity: float | None


@dataclass
class FirstDelivery:
    """A flow whose first results were just written, and the rows written."""

    flow: Flow
    changes: Changes
    documents: list[NewDocument]
    fields: list[NewField]
    checks: list[NewCrossCheck]


@dataclass
class IngestResult:
    outcome: str
    changes: Changes
    flow: Flow | None = None
    batch: Upload | None = None


def apply_callback_data(
    data: CallbackData, *, as_of: datetime | None = None, source: str = ""
) -> IngestResult:
    return apply_many([data], as_of=as_of, source=source)[0]


@dataclass(frozen=True)
class Delivery:
    """One v3 payload to apply, with when Atlas sent it (orders deliveries) and from where."""

    data: CallbackData
    as_of: datetime | None = None
    source: str = ""


def apply_many(
    payloads: list[CallbackData], *, as_of: datetime | None = None, source: str = ""
) -> list[IngestResult]:
    """apply_deliveries for payloads sent at the same time from the same place."""
    return apply_deliveries([Delivery(data, as_of, source) for data in payloads])


def apply_deliveries(deliveries: list[Delivery]) -> list[IngestResult]:
    """Apply v3 payloads in one transaction; one result per payload, in order.

    The flows are locked in id order (so two batches cannot deadlock), then every table is
    read once and written once for all of them. A flow named twice is applied twice, in
    order, like two deliveries. An unknown flow_uuid raises UnmatchedPayload and nothing is
    written: callers that must not lose the others apply them one by one instead.
    """
    now = timezone.now()
    payloads = [d.data for d in deliveries]
    when = {i: (d.as_of or now, d.source) for i, d in enumerate(deliveries)}
    results: list[IngestResult] = []
    with transaction.atomic():
        uuids = list(dict.fromkeys(d.flow_uuid for d in payloads))
        flows = {
            f.flow_uuid: f
            for f in Flow.objects.select_for_update().filter(flow_uuid__in=uuids).order_by("pk")
        }
        for uuid in uuids:
            if uuid not in flows:
                raise UnmatchedPayload(f"unknown flow_uuid {uuid!r}")
        # A flow repeated in the batch starts a new round, so it sees its own first delivery.
        rounds: list[list[int]] = [[]]
        in_round: set[str] = set()
        for i, data in enumerate(payloads):
            if data.flow_uuid in in_round:
                rounds.append([])
                in_round = set()
            rounds[-1].append(i)
            in_round.add(data.flow_uuid)
        by_index: dict[int, IngestResult] = {}
        for indexes in rounds:
            items = [(i, payloads[i], flows[payloads[i].flow_uuid]) for i in indexes]
            created = _apply_round(items, when, by_index)
            if created:
                # First: a receiver of a re-delivery below may look at these flows' rows.
                results_created.send(sender=Flow, deliveries=created)
            first = {id(d.flow) for d in created}
            for i in indexes:
                result = by_index[i]
                if result.outcome == APPLIED and id(result.flow) not in first:
                    results_applied.send(
                        sender=Flow, flow=result.flow, batch=None, changes=result.changes
                    )
        results = [by_index[i] for i in range(len(payloads))]
    return results


def _apply_round(
    items, when: dict[int, tuple[datetime, str]], out: dict[int, IngestResult]
) -> list[FirstDelivery]:
    """Apply payloads for distinct, locked flows: one read and one write per table. Returns
    the first deliveries written set-based (the others are planned and diffed)."""
    todo = []
    for i, data, flow in items:
        digest = data.content_hash()
        as_of = when[i][0]
        if flow.results_as_of and as_of < flow.results_as_of and flow.results_hash != digest:
            out[i] = IngestResult(STALE, Changes(), flow=flow)
        elif flow.results_hash == digest:
            out[i] = IngestResult(DUPLICATE, Changes(), flow=flow)
        else:
            todo.append((i, data, flow, digest))
    if not todo:
        return []
    now = timezone.now()
    flow_ids = [flow.pk for _i, _d, flow, _h in todo]
    uploads: dict[int, list[tuple[str, list]]] = {pk: [] for pk in flow_ids}
    rows = Upload.objects.filter(flow_id__in=flow_ids).order_by("pk")
    for flow_id, batch_id, files in rows.values_list("flow_id", "batch_id", "files"):
        uploads[flow_id].append((batch_id, files))
    docs = _Existing(Document.objects.filter(flow_id__in=flow_ids), "flow_id")
    checks = _Existing(CrossCheck.objects.filter(flow_id__in=flow_ids), "flow_id")
    fresh = []
    if bulk.supported():
        # Nothing stored for the flow: nothing to diff, every row is new.
        stored = {pk for pk in flow_ids if docs.of(pk) or checks.of(pk)}
        fresh = [t for t in todo if t[2].pk not in stored]
        todo = [t for t in todo if t[2].pk in stored]
    created = _write_first_results(fresh, uploads, now) if fresh else []
    writes = _Writes()
    plans = [
        (i, flow, digest, delivery.changes, None)
        for (i, _data, flow, digest), delivery in zip(fresh, created, strict=True)
    ]
    for i, data, flow, digest in todo:
        changes = Changes()
        file_urls = _file_urls(uploads[flow.pk], fallback=flow.requested_files)
        plan = _plan_documents(
            {"flow": flow}, data.documents, docs.of(flow.pk), file_urls, now, changes, writes
        )
        _plan_cross_checks(flow, data, checks.of(flow.pk), now, changes, writes)
        plans.append((i, flow, digest, changes, plan))
    writes.save_documents()
    fields = _existing_fields([pk for *_x, plan in plans if plan for pk in plan.old_doc_ids])
    for _i, flow, _digest, changes, plan in plans:
        if plan is not None:
            _plan_fields(flow, plan, fields, now, changes, writes)
    writes.save_fields_and_checks()

    for i, flow, digest, changes, _plan in plans:
        as_of, source = when[i]
        flow.results_hash = digest
        flow.results_as_of = max(as_of, flow.results_as_of) if flow.results_as_of else as_of
        flow.results_source = source
        flow.sync_state = SyncState.DONE
        flow.next_sync_at = None
        flow.last_synced_at = now
        if not flow.master_status or flow.master_status in ("NOT_STARTED", "IN_PROGRESS"):
            # A full result is only delivered once Atlas finished.
            flow.master_status = "SUCCESS"
        out[i] = IngestResult(APPLIED, changes, flow=flow)
    if len(plans) == 1:
        plans[0][1].save()  # as before: post_save receivers see the flow
    else:
        for _i, flow, *_rest in plans:
            flow.updated_at = now
        # One UPDATE for the batch. No post_save: its only receiver (review.on_flow_saved)
        # acts on failed syncs, and a flow with results is DONE.
        flows = [p[1] for p in plans]
        bulk.update(Flow, flows, _FLOW_RESULT_ATTRS)
    return created


_DOCUMENT_COLUMNS = (
    "id", "flow_id", "key", "position", "document_id", "file_uuid", "batch_id", "file_url",
    "document_type", "error_code", "error_reason", "extra", "created_at", "updated_at",
)  # fmt: skip
_FIELD_COLUMNS = (
    "id", "document_id", "flow_id", "document_type", "name", "position", "value", "confidence",
    "updated_at",
)  # fmt: skip
_CHECK_COLUMNS = (
    "id", "flow_id", "key", "position", "name", "source_doc", "source_field_name",
    "source_value", "target_doc", "target_field_name", "target_value", "similarity", "extra",
    "updated_at",
)  # fmt: skip


def _write_first_results(fresh, uploads, now) -> list[FirstDelivery]:
    """Write the rows of flows that have none yet: ids in one query, each table one COPY.
    The same rows as the planned path would create (keys, positions, file URLs)."""
    jsonb = bulk.jsonb
    counts = {Document: 0, ExtractedField: 0, CrossCheck: 0}
    for _i, data, _flow, _digest in fresh:
        counts[Document] += len(data.documents)
        counts[ExtractedField] += sum(len(d.fields) for d in data.documents)
        counts[CrossCheck] += len(data.cross_checks)
    ids = bulk.allocate_ids({model: n for model, n in counts.items() if n})
    doc_ids = iter(ids.get(Document, ()))
    field_ids = iter(ids.get(ExtractedField, ()))
    check_ids = iter(ids.get(CrossCheck, ()))
    doc_rows, field_rows, check_rows, created = [], [], [], []
    for _i, data, flow, _digest in fresh:
        flow_id = flow.pk
        urls = _file_urls(uploads[flow_id], fallback=flow.requested_files)
        documents, fields, checks = [], [], []
        for key, doc in zip(_document_keys(data.documents), data.documents, strict=True):
            pk = next(doc_ids)
            dtype = doc.document_type
            url = urls.get((doc.batch_id, doc.document_id)) or urls.get(("", doc.document_id), "")
            doc_rows.append((
                pk, flow_id, key, doc.position, doc.document_id, doc.file_uuid, doc.batch_id,
                url, dtype, doc.error_code, doc.error_reason, jsonb(doc.extra), now, now,
            ))  # fmt: skip
            documents.append(
                NewDocument(pk, flow_id, key, doc.position, dtype, doc.error_code, doc.error_reason)
            )
            for position, item in enumerate(doc.fields):
                field_pk = next(field_ids)
                field_rows.append((
                    field_pk, pk, flow_id, dtype, item.name, position, jsonb(item.value),
                    item.confidence, now,
                ))  # fmt: skip
                fields.append(
                    NewField(field_pk, pk, flow_id, dtype, item.name, position, item.value,
                             item.confidence)
                )  # fmt: skip
        for key, c in zip(_check_keys(data.cross_checks), data.cross_checks, strict=True):
            pk = next(check_ids)
            check_rows.append((
                pk, flow_id, key, c.position, c.name, c.source_doc, c.source_field_name,
                jsonb(c.source_value), c.target_doc, c.target_field_name, jsonb(c.target_value),
                c.similarity, jsonb(c.extra), now,
            ))  # fmt: skip
            checks.append(
                NewCrossCheck(
                    pk, flow_id, key, c.name, c.source_value, c.target_value, c.similarity
                )
            )
        changes = Changes(created=len(documents) + len(fields) + len(checks))
        created.append(FirstDelivery(flow, changes, documents, fields, checks))
    bulk.copy(Document, _DOCUMENT_COLUMNS, doc_rows)
    bulk.copy(ExtractedField, _FIELD_COLUMNS, field_rows)
    bulk.copy(CrossCheck, _CHECK_COLUMNS, check_rows)
    return created


_FLOW_RESULT_ATTRS = (
    "results_hash", "results_as_of", "results_source", "sync_state", "next_sync_at",
    "last_synced_at", "master_status", "updated_at",
)  # fmt: skip


def _existing_fields(doc_ids: list[int]) -> _Existing:
    # New documents have no fields yet: a first delivery skips this query.
    rows = ExtractedField.objects.filter(document_id__in=doc_ids) if doc_ids else []
    return _Existing(rows, "document_id")


class _Existing:
    """Rows already stored, grouped by owner id, read with one query for the batch."""

    def __init__(self, rows, owner_attr: str):
        self.by_owner: dict[int, list] = {}
        for row in rows:
            self.by_owner.setdefault(getattr(row, owner_attr), []).append(row)

    def of(self, owner_id: int) -> list:
        return self.by_owner.get(owner_id, [])


@dataclass
class _Writes:
    """Everything a batch writes, so each table gets one INSERT and one UPDATE."""

    docs_create: list[Document] = field(default_factory=list)
    docs_update: list[Document] = field(default_factory=list)
    fields_create: list[ExtractedField] = field(default_factory=list)
    fields_update: list[ExtractedField] = field(default_factory=list)
    checks_create: list[CrossCheck] = field(default_factory=list)
    checks_update: list[CrossCheck] = field(default_factory=list)

    def save_documents(self) -> None:
        Document.objects.bulk_create(self.docs_create, batch_size=1000)
        if self.docs_update:
            Document.objects.bulk_update(
                self.docs_update, [*_DOC_ATTRS, "withdrawn_at", "updated_at"], batch_size=1000
            )

    def save_fields_and_checks(self) -> None:
        ExtractedField.objects.bulk_create(self.fields_create, batch_size=1000)
        if self.fields_update:
            ExtractedField.objects.bulk_update(
                self.fields_update,
                ["value", "confidence", "position", "document_type", "withdrawn_at", "updated_at"],
                batch_size=1000,
            )
        CrossCheck.objects.bulk_create(self.checks_create, batch_size=1000)
        if self.checks_update:
            CrossCheck.objects.bulk_update(
                self.checks_update, [*_CHECK_ATTRS, "withdrawn_at", "updated_at"], batch_size=1000
            )


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
        changes, writes = Changes(), _Writes()
        existing = list(Document.objects.filter(v1_batch=batch))
        plan = _plan_documents(
            {"v1_batch": batch},
            documents,
            existing,
            _file_urls([(batch.batch_id, batch.files)]),
            now,
            changes,
            writes,
        )
        writes.save_documents()
        _plan_fields(None, plan, _existing_fields(plan.old_doc_ids), now, changes, writes)
        writes.save_fields_and_checks()
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
    """(batch_id, document_id) -> file_url from what we uploaded ((batch_id, files) per
    upload); ("", id) as fallback."""
    urls: dict[tuple[str, str], str] = {
        ("", str(item.get("document_id", ""))): item.get("file_url", "") for item in fallback
    }
    for batch_id, files in uploads:
        for item in files:
            doc_id, url = str(item.get("document_id", "")), item.get("file_url", "")
            urls[(batch_id, doc_id)] = url
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


@dataclass
class _DocumentPlan:
    current: dict[str, Document]  # key -> row (created rows get their pk when saved)
    parsed: dict[str, OcrDocument]
    withdrawn: list[Document]
    old_doc_ids: list[int]  # stored documents whose fields must be diffed


def _plan_documents(
    owner: dict, documents, existing_rows, file_urls, now, changes: Changes, writes: _Writes
) -> _DocumentPlan:
    existing = {d.key: d for d in existing_rows}
    created, updated, parsed_by_key = [], 0, {}
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
            created.append(Document(key=key, **owner, **attrs))
        elif row.withdrawn_at or any(getattr(row, k) != v for k, v in attrs.items()):
            if row.error_code != doc.error_code or row.document_type != doc.document_type:
                changes.changed_document_ids.add(row.pk)
            for k, v in attrs.items():
                setattr(row, k, v)
            row.withdrawn_at = None
            row.updated_at = now
            writes.docs_update.append(row)
            updated += 1
    withdrawn = [
        d for k, d in existing.items() if k not in parsed_by_key and d.withdrawn_at is None
    ]
    for row in withdrawn:
        row.withdrawn_at = now
        changes.changed_document_ids.add(row.pk)
    writes.docs_create.extend(created)
    writes.docs_update.extend(withdrawn)
    changes.created += len(created)
    changes.updated += updated
    changes.withdrawn += len(withdrawn)

    rows = {**existing, **{d.key: d for d in created}}
    current = {key: rows[key] for key in parsed_by_key}
    old_ids = [existing[k].pk for k in parsed_by_key if k in existing] + [d.pk for d in withdrawn]
    return _DocumentPlan(current, parsed_by_key, withdrawn, old_ids)


def _plan_fields(
    flow, plan: _DocumentPlan, stored: _Existing, now, changes: Changes, writes: _Writes
) -> None:
    existing = {(f.document_id, f.name): f for pk in plan.old_doc_ids for f in stored.of(pk)}
    seen: set[tuple[int, str]] = set()
    created, updated = 0, 0
    for key, doc in plan.current.items():
        for position, item in enumerate(plan.parsed[key].fields):
            ident = (doc.pk, item.name)
            seen.add(ident)
            row = existing.get(ident)
            if row is None:
                writes.fields_create.append(
                    ExtractedField(
                        document=doc, flow=flow, document_type=doc.document_type, name=item.name,
                        position=position, value=item.value, confidence=item.confidence,
                    )
                )  # fmt: skip
                created += 1
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
            writes.fields_update.append(row)
            updated += 1
    withdrawn = [f for ident, f in existing.items() if ident not in seen and f.withdrawn_at is None]
    for row in withdrawn:
        row.withdrawn_at = now
        changes.changed_field_ids.add(row.pk)
    writes.fields_update.extend(withdrawn)
    changes.created += created
    changes.updated += updated
    changes.withdrawn += len(withdrawn)


def _check_keys(checks) -> list[str]:
    keys, seen = [], set()
    for c in checks:
        key = f"{c.name}|{c.source_doc}.{c.source_field_name}|{c.target_doc}.{c.target_field_name}"
        if key in seen:
            key = f"{key}#{c.position}"
        seen.add(key)
        # Names at the parser's limits make a key longer than its column: use its digest.
        if len(key) > _CHECK_KEY_MAX:
            key = "sha256:" + hashlib.sha256(key.encode()).hexdigest()
        keys.append(key)
    return keys


_CHECK_KEY_MAX = CrossCheck._meta.get_field("key").max_length


_CHECK_ATTRS = (
    "position", "name", "source_doc", "source_field_name", "source_value", "target_doc",
    "target_field_name", "target_value", "similarity", "extra",
)  # fmt: skip


def _plan_cross_checks(
    flow: Flow, data: CallbackData, existing_rows, now, changes: Changes, writes: _Writes
) -> None:
    existing = {c.key: c for c in existing_rows}
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
    writes.checks_create.extend(to_create)
    writes.checks_update.extend(to_update + withdrawn)
    changes.created += len(to_create)
    changes.updated += len(to_update)
    changes.withdrawn += len(withdrawn)
