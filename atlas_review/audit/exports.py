"""CSV exports of the decision trail and of flows, streamed with flat memory.

Rows come from a server-side cursor (`values_list(...).iterator(chunk_size=...)`, a named
cursor on PostgreSQL) and go through csv.writer in batches, so a million rows never sit in
memory. Inside a transaction the cursor is WITHOUT HOLD and the first rows arrive as soon as
the query produces them; in autocommit Django declares it WITH HOLD, and PostgreSQL then
computes the whole result (server side, spilling to disk) before the first fetch.

The format (docs/exports.md says the same for auditors):
- UTF-8, optional byte order mark for Excel; RFC 4180 quoting, CRLF line ends.
- Column order is fixed (DECISION_COLUMNS, FLOW_COLUMNS); new columns only ever go last.
- Timestamps ISO 8601 in the site's time zone with its offset, to the second.
- Atlas's JSON values: strings as they are, numbers as plain decimals, true/false, arrays and
  objects as JSON (rendered by PostgreSQL: `["a", "b"]`). Lists we build (reviewers) are JSON
  arrays too. Empty (NULL / JSON null) is an empty cell.
- Numbers as plain decimal text, never exponent notation.
- A text cell beginning with = + - @ TAB or CR gets a leading ' (formula injection); a cell
  that is just a number ("-12.5") is left alone, since no spreadsheet reads it as a formula.
- With EXPORT_MASK_PERSONAL_DATA, Aadhaar and PAN numbers in values and comments keep only
  their last four characters (masking.py).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import BinaryIO

from django.conf import settings
from django.db import transaction
from django.db.models import (
    Count,
    Exists,
    Func,
    IntegerField,
    OuterRef,
    QuerySet,
    StringAgg,
    Subquery,
    TextField,
    Value,
)
from django.db.models.functions import Coalesce
from django.utils import timezone

from atlas_review.flows.models import Document, Flow
from atlas_review.review.models import Action, Decision, DecisionEvent, ItemStatus, ReviewItem

from .filters import ExportFilters, parse_filters
from .masking import mask_personal
from .models import ExportJob

log = logging.getLogger(__name__)

CHUNK_SIZE = 2000  # rows per FETCH from the server-side cursor
FLUSH_ROWS = 1000  # rows per chunk handed to the response or the file
PROGRESS_EVERY = 20_000  # rows between progress updates of a background job
BOM = "\ufeff".encode()


class JSONText(Func):
    """A JSON column as text, rendered by the database: a string without its quotes, a number
    as written, arrays and objects as JSON. JSON null and SQL NULL both give NULL. Rendering
    in the database spares Python a json.loads and json.dumps per cell."""

    output_field = TextField()

    def as_postgresql(self, compiler, connection, **extra):
        return self.as_sql(compiler, connection, template="(%(expressions)s #>> '{}')", **extra)

    def as_sqlite(self, compiler, connection, **extra):
        return self.as_sql(compiler, connection, template="json_extract(%(expressions)s, '$')")


# --- Cells ---------------------------------------------------------------------------------

_TRIGGERS = frozenset("=+-@\t\r")
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_TZ = None


def neutralise(text: str) -> str:
    """A cell a spreadsheet could read as a formula gets a leading quote."""
    if text and text[0] in _TRIGGERS and not _NUMBER.fullmatch(text):
        return "'" + text
    return text


def cell_text(value) -> str:
    if value is None:
        return ""
    return neutralise(value if isinstance(value, str) else str(value))


def cell_personal(value) -> str:
    """Free text that may hold identity numbers (values, corrections, comments)."""
    if value is None:
        return ""
    return neutralise(mask_personal(value if isinstance(value, str) else str(value)))


def cell_number(value) -> str:
    if value is None:
        return ""
    if isinstance(value, int):
        return str(value)
    text = repr(float(value))
    # repr gives 1e-05 for small and 1e+16 for large floats; spreadsheets and auditors want
    # plain digits, and Decimal keeps every significant digit of the shortest repr.
    return format(Decimal(text), "f") if "e" in text else text


def cell_int(value) -> str:
    return "" if value is None else str(value)


def cell_time(value) -> str:
    if value is None:
        return ""
    return value.astimezone(_site_tz()).isoformat(timespec="seconds")


def cell_names(value) -> str:
    """Usernames aggregated with commas (which usernames cannot contain) as a JSON array."""
    return json.dumps(value.split(",") if value else [], ensure_ascii=False)


def cell_details(value) -> str:
    return "" if value in (None, "{}") else cell_personal(value)


def _site_tz():
    global _TZ
    if _TZ is None:
        _TZ = timezone.get_default_timezone()
    return _TZ


# --- What each export contains -------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    name: str
    source: object  # a field path for values_list, or an expression
    cell: Callable[[object], str]


def _count(qs: QuerySet) -> Coalesce:
    """Rows of `qs` for the outer flow, as a correlated subquery on the flow's index."""
    return Coalesce(
        Subquery(
            qs.filter(flow=OuterRef("pk"))
            .order_by()
            .values("flow")
            .annotate(n=Count("pk"))
            .values("n"),
            output_field=IntegerField(),
        ),
        0,
    )


def _decisions(action: str) -> Coalesce:
    return _count(Decision.objects.filter(superseded=False, action=action))


DECISION_COLUMNS: tuple[Column, ...] = (
    Column("event_id", "id", cell_int),
    Column("at", "at", cell_time),
    Column("kind", "kind", cell_text),
    Column("actor", "actor_username", cell_text),
    Column("application_id", "flow__application_id", cell_text),
    Column("flow_uuid", "flow__flow_uuid", cell_text),
    Column("product_type", "flow__product_type", cell_text),
    Column("document_id", "document__document_id", cell_text),
    Column("document_type", "document__document_type", cell_text),
    Column("field", "field__name", cell_text),
    Column("cross_check", "cross_check__name", cell_text),
    Column("subject", "subject", cell_text),
    Column("action", "action", cell_text),
    Column("atlas_value", JSONText("atlas_value"), cell_personal),
    Column("atlas_score", "atlas_score", cell_number),
    Column("new_value", JSONText("new_value"), cell_personal),
    Column("reason_code", "reason_code", cell_text),
    Column("reason_label", "reason_label", cell_text),
    Column("comment", "comment", cell_personal),
    Column("outcome", "outcome", cell_text),
    Column("decision_id", "decision_id", cell_int),
    Column("details", JSONText("data"), cell_details),
)

FLOW_COLUMNS: tuple[Column, ...] = (
    Column("application_id", "application_id", cell_text),
    Column("flow_uuid", "flow_uuid", cell_text),
    Column("product_type", "product_type", cell_text),
    Column("created_at", "created_at", cell_time),
    Column("upload_status", "upload_status", cell_text),
    Column("processing_status", "processing_status", cell_text),
    Column("crosscheck_status", "crosscheck_status", cell_text),
    Column("master_status", "master_status", cell_text),
    Column("sync_state", "sync_state", cell_text),
    Column("outcome", "review__outcome", cell_text),
    Column("outcome_comment", "review__outcome_comment", cell_personal),
    Column("closed_by", "review__closed_by__username", cell_text),
    Column("closed_at", "review__closed_at", cell_time),
    Column("documents", _count(Document.objects.current()), cell_int),
    Column("documents_with_errors", _count(Document.objects.current().with_errors()), cell_int),
    Column(
        "flagged_items", _count(ReviewItem.objects.exclude(status=ItemStatus.CLEARED)), cell_int
    ),
    Column("open_items", _count(ReviewItem.objects.filter(status=ItemStatus.OPEN)), cell_int),
    Column("accepted", _decisions(Action.ACCEPT), cell_int),
    Column("corrected", _decisions(Action.CORRECT), cell_int),
    Column("rejected", _decisions(Action.REJECT), cell_int),
    Column("superseded_decisions", _count(Decision.objects.filter(superseded=True)), cell_int),
    Column("decision_events", _count(DecisionEvent.objects.all()), cell_int),
    Column(
        "reviewers",
        Subquery(
            DecisionEvent.objects.filter(flow=OuterRef("pk"), actor__isnull=False)
            .order_by()
            .values("flow")
            .annotate(
                names=StringAgg(
                    "actor_username", Value(","), distinct=True, order_by="actor_username"
                )
            )
            .values("names"),
            output_field=TextField(),
        ),
        cell_names,
    ),
)


def decisions_queryset(filters: ExportFilters) -> QuerySet:
    """The trail rows an export covers: date range on the event time."""
    qs = DecisionEvent.objects.all()
    start, end = filters.time_range()
    if start:
        qs = qs.filter(at__gte=start)
    if end:
        qs = qs.filter(at__lt=end)
    if filters.product_type:
        qs = qs.filter(flow__product_type=filters.product_type)
    if filters.reviewer_id:
        qs = qs.filter(actor_id=filters.reviewer_id)
    if filters.outcome:
        qs = qs.filter(flow__review__outcome=filters.outcome)
    return qs


def flows_queryset(filters: ExportFilters) -> QuerySet:
    """The flows an export covers: date range on when the flow was created; reviewer = any
    trail event by that user on the flow."""
    qs = Flow.objects.all()
    start, end = filters.time_range()
    if start:
        qs = qs.filter(created_at__gte=start)
    if end:
        qs = qs.filter(created_at__lt=end)
    if filters.product_type:
        qs = qs.filter(product_type=filters.product_type)
    if filters.reviewer_id:
        qs = qs.filter(
            Exists(DecisionEvent.objects.filter(flow=OuterRef("pk"), actor_id=filters.reviewer_id))
        )
    if filters.outcome:
        qs = qs.filter(review__outcome=filters.outcome)
    return qs


@dataclass(frozen=True)
class Spec:
    columns: tuple[Column, ...]
    queryset: Callable[[ExportFilters], QuerySet]
    order: tuple[str, ...]

    @property
    def header(self) -> list[str]:
        return [c.name for c in self.columns]

    def rows(self, filters: ExportFilters) -> Iterator[tuple]:
        return (
            self.queryset(filters)
            .order_by(*self.order)
            .values_list(*(c.source for c in self.columns))
            .iterator(chunk_size=CHUNK_SIZE)
        )


SPECS: dict[str, Spec] = {
    ExportJob.Kind.DECISIONS: Spec(DECISION_COLUMNS, decisions_queryset, ("at", "id")),
    ExportJob.Kind.FLOWS: Spec(FLOW_COLUMNS, flows_queryset, ("created_at", "id")),
}


def estimate_rows(kind: str, filters: ExportFilters, cap: int) -> int:
    """Exact up to cap + 1 and never more work than reading that many rows, so deciding
    "stream now or run in the background" costs the same on any table size."""
    return SPECS[kind].queryset(filters).order_by()[: cap + 1].count()


# --- Writing -------------------------------------------------------------------------------


class CsvExport:
    """One export's CSV as an iterator of byte chunks; rows_written counts data rows."""

    def __init__(self, kind: str, filters: ExportFilters, *, bom: bool = False, mask=None):
        self.spec = SPECS[kind]
        self.filters = filters
        self.bom = bom
        self.mask = settings.EXPORT_MASK_PERSONAL_DATA if mask is None else mask
        self.rows_written = 0

    def cells(self) -> list[Callable[[object], str]]:
        cells = [c.cell for c in self.spec.columns]
        if not self.mask:
            cells = [cell_text if c is cell_personal else c for c in cells]
        return cells

    def chunks(self, on_progress: Callable[[int], None] | None = None) -> Iterator[bytes]:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\r\n")
        writer.writerow(self.spec.header)
        head = BOM if self.bom else b""
        cells = self.cells()
        batch: list[tuple] = []
        next_progress = PROGRESS_EVERY
        for row in self.spec.rows(self.filters):
            batch.append(row)
            if len(batch) < FLUSH_ROWS:
                continue
            writer.writerows([f(v) for f, v in zip(cells, r, strict=True)] for r in batch)
            self.rows_written += len(batch)
            batch.clear()
            yield head + buffer.getvalue().encode()
            head = b""
            buffer.seek(0)
            buffer.truncate()
            if on_progress and self.rows_written >= next_progress:
                on_progress(self.rows_written)
                next_progress += PROGRESS_EVERY
        writer.writerows([f(v) for f, v in zip(cells, r, strict=True)] for r in batch)
        self.rows_written += len(batch)
        yield head + buffer.getvalue().encode()


# --- Exports as recorded operations ----------------------------------------------------------


def record(kind: str, filters: ExportFilters, *, via: str, user=None, requested_by: str = "",
           bom: bool = False, status: str = ExportJob.Status.RUNNING,
           rows_expected: int | None = None) -> ExportJob:  # fmt: skip
    now = timezone.now()
    return ExportJob.objects.create(
        kind=kind, via=via, user=user,
        requested_by=requested_by or (user.get_username() if user else ""),
        filters=filters.as_json(), bom=bom, masked=settings.EXPORT_MASK_PERSONAL_DATA,
        status=status, rows_expected=rows_expected, created_at=now,
        started_at=now if status == ExportJob.Status.RUNNING else None,
    )  # fmt: skip


def _finish(job: ExportJob, rows: int, error: str = "", **extra) -> None:
    status = ExportJob.Status.FAILED if error else ExportJob.Status.DONE
    ExportJob.objects.filter(pk=job.pk).update(
        status=status, rows_written=rows, error=error[:2000], finished_at=timezone.now(), **extra
    )


def _describe(exc: BaseException) -> str:
    if isinstance(exc, GeneratorExit):
        return "The download was interrupted."
    return f"{type(exc).__name__}: {exc}"


def stream(job: ExportJob, filters: ExportFilters) -> Iterator[bytes]:
    """The body of a web download; records the row count (or the failure) at the end."""
    export = CsvExport(job.kind, filters, bom=job.bom, mask=job.masked)
    try:
        # In a transaction the named cursor is WITHOUT HOLD: rows stream as the query runs.
        with transaction.atomic():
            yield from export.chunks()
    except BaseException as exc:  # GeneratorExit too: the client went away
        _finish(job, export.rows_written, _describe(exc))
        raise
    _finish(job, export.rows_written)


def export_to(out: BinaryIO, kind: str, filters: ExportFilters, *, bom: bool = False,
              requested_by: str = "command") -> ExportJob:  # fmt: skip
    """Write an export to a binary file object (the management commands) and record it."""
    job = record(kind, filters, via=ExportJob.Via.COMMAND, requested_by=requested_by, bom=bom)
    export = CsvExport(kind, filters, bom=bom, mask=job.masked)
    try:
        with transaction.atomic():
            for chunk in export.chunks():
                out.write(chunk)
    except BaseException as exc:
        _finish(job, export.rows_written, _describe(exc))
        raise
    _finish(job, export.rows_written)
    job.refresh_from_db()
    return job


def exports_dir() -> Path:
    return Path(settings.MEDIA_ROOT) / "exports"


def run_job(job_id: int) -> None:
    """A background export: claim the queued job, write its file, keep its progress.

    Not in a transaction on purpose: progress UPDATEs must commit as they happen so the
    progress page sees them. The cursor is then WITH HOLD (the database computes the result
    first); nobody waits on a first byte here."""
    now = timezone.now()
    claimed = ExportJob.objects.filter(pk=job_id, status=ExportJob.Status.QUEUED).update(
        status=ExportJob.Status.RUNNING, started_at=now
    )
    if not claimed:
        return  # gone, or another worker has it (redelivery)
    job = ExportJob.objects.get(pk=job_id)
    relative = Path("exports") / f"{now:%Y}" / f"{job.pk}-{job.kind}.csv"
    path = Path(settings.MEDIA_ROOT) / relative
    partial = path.with_suffix(".partial")
    export = None
    try:
        filters = parse_filters(job.filters)
        total = SPECS[job.kind].queryset(filters).count()
        ExportJob.objects.filter(pk=job_id).update(rows_expected=total)
        export = CsvExport(job.kind, filters, bom=job.bom, mask=job.masked)
        path.parent.mkdir(parents=True, exist_ok=True)
        with partial.open("wb") as f:
            for chunk in export.chunks(
                on_progress=lambda n: ExportJob.objects.filter(pk=job_id).update(rows_written=n)
            ):
                f.write(chunk)
        # The download never sees a half-written file.
        partial.replace(path)
    except Exception as exc:
        log.exception("export job %s failed", job_id)
        partial.unlink(missing_ok=True)
        _finish(job, export.rows_written if export else 0, _describe(exc))
        return
    _finish(job, export.rows_written, file=str(relative), file_size=path.stat().st_size)
