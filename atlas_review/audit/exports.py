"""CSV exports of the decision trail and of flows, streamed with flat memory.

Rows come from a server-side cursor (`values_list(...).iterator(chunk_size=...)`, a named
cursor on PostgreSQL) and go through csv.writer in batches, so a million rows never sit in
memory. Inside a transaction the cursor is WITHOUT HOLD and the first rows arrive as soon as
the query produces them; in autocommit Django declares it WITH HOLD, and PostgreSQL then
computes the whole result (server side, spilling to disk) before the first fetch. So every
export (web download, command, background job) runs its query in a transaction, and
read_ahead fetches the next batch while this one is written.

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
- With EXPORT_MASK_PERSONAL_DATA, Aadhaar numbers in values and comments keep their last four
  digits and PANs their first and last two characters (masking.py).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import queue
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from decimal import Decimal
from itertools import islice
from pathlib import Path
from typing import BinaryIO

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connection, connections, transaction
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
FLUSH_ROWS = 2000  # rows per chunk handed to the response or the file (one FETCH each)
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


class LocalTime(Func):
    """A timestamp as ISO 8601 text in the site's zone (TIME_ZONE) with that moment's
    offset, rendered by PostgreSQL: 2025-03-14T16:05:09+05:30. In Python this was a third
    of a row's formatting time (zone conversion and isoformat); the database does it in a
    microsecond. SQLite (the quick start) has no zone data: it writes UTC, +00:00."""

    output_field = TextField()

    def as_postgresql(self, compiler, connection, **extra):
        value, params = compiler.compile(self.get_source_expressions()[0])
        tz = settings.TIME_ZONE
        offset = f"(({value}) AT TIME ZONE %s - ({value}) AT TIME ZONE 'UTC')"
        offset_params = (*params, tz, *params)
        sql = (
            f"to_char(({value}) AT TIME ZONE %s, 'YYYY-MM-DD\"T\"HH24:MI:SS') || CASE "
            f"WHEN {offset} < interval '0' THEN '-' || to_char(-{offset}, 'HH24:MI') "
            f"ELSE '+' || to_char({offset}, 'HH24:MI') END"
        )
        return sql, (*params, tz, *offset_params, *offset_params, *offset_params)

    def as_sqlite(self, compiler, connection, **extra):
        value, params = compiler.compile(self.get_source_expressions()[0])
        return f"strftime('%%Y-%%m-%%dT%%H:%%M:%%S+00:00', {value})", params


# --- Cells ---------------------------------------------------------------------------------
# csv.writer writes None as an empty cell and ints as digits, so columns that hold only ids,
# counts or our own choice values need no formatting (cell RAW). The others get a small
# function each; they run a million times per export, hence the terse bodies.

RAW = None
_TRIGGERS = frozenset("=+-@\t\r")
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")


def neutralise(text: str) -> str:
    """A cell a spreadsheet could read as a formula gets a leading quote."""
    if text and text[0] in _TRIGGERS and not _NUMBER.fullmatch(text):
        return "'" + text
    return text


def cell_text(value: str | None) -> str | None:
    if value and value[0] in _TRIGGERS:
        return neutralise(value)
    return value


def cell_personal(value) -> str | None:
    """Free text that may hold identity numbers (values, corrections, comments)."""
    if value.__class__ is not str:  # None; or a number from SQLite's json_extract
        return cell_number(value)
    if len(value) >= 10:
        value = mask_personal(value)
    if value and value[0] in _TRIGGERS:
        return neutralise(value)
    return value


def cell_json_text(value) -> str | None:
    """cell_personal without the masking (EXPORT_MASK_PERSONAL_DATA off)."""
    if value.__class__ is not str:
        return cell_number(value)
    return cell_text(value)


def cell_number(value) -> str | None:
    if value is None or value.__class__ is int:
        return value
    text = repr(float(value))
    # repr gives 1e-05 for small and 1e+16 for large floats; spreadsheets and auditors want
    # plain digits, and Decimal keeps every significant digit of the shortest repr.
    return format(Decimal(text), "f") if "e" in text else text


def cell_names(value: str | None) -> str:
    """Usernames aggregated with commas (which usernames cannot contain) as a sorted JSON
    array."""
    return json.dumps(sorted(value.split(",")) if value else [], ensure_ascii=False)


def cell_details(value: str | None) -> str | None:
    return None if value is None or value == "{}" else cell_text(value)


# --- What each export contains -------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    name: str
    source: object  # a field path for values_list, or an expression
    cell: Callable[[object], str | None] | None  # None (RAW): written as it comes


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
    Column("event_id", "id", RAW),
    Column("at", LocalTime("at"), RAW),
    Column("kind", "kind", RAW),
    Column("actor", "actor_username", cell_text),
    Column("application_id", "flow__application_id", cell_text),
    Column("flow_uuid", "flow__flow_uuid", cell_text),
    Column("product_type", "flow__product_type", cell_text),
    Column("document_id", "document__document_id", cell_text),
    Column("document_type", "document__document_type", cell_text),
    Column("field", "field__name", cell_text),
    Column("cross_check", "cross_check__name", cell_text),
    Column("subject", "subject", cell_text),
    Column("action", "action", RAW),
    Column("atlas_value", JSONText("atlas_value"), cell_personal),
    Column("atlas_score", "atlas_score", cell_number),
    Column("new_value", JSONText("new_value"), cell_personal),
    Column("reason_code", "reason_code", cell_text),
    Column("reason_label", "reason_label", cell_text),
    Column("comment", "comment", cell_personal),
    Column("outcome", "outcome", RAW),
    Column("decision_id", "decision_id", RAW),
    Column("details", JSONText("data"), cell_details),
)

FLOW_COLUMNS: tuple[Column, ...] = (
    Column("application_id", "application_id", cell_text),
    Column("flow_uuid", "flow_uuid", cell_text),
    Column("product_type", "product_type", cell_text),
    Column("created_at", LocalTime("created_at"), RAW),
    Column("upload_status", "upload_status", cell_text),
    Column("processing_status", "processing_status", cell_text),
    Column("crosscheck_status", "crosscheck_status", cell_text),
    Column("master_status", "master_status", cell_text),
    Column("sync_state", "sync_state", RAW),
    Column("outcome", "review__outcome", RAW),
    Column("outcome_comment", "review__outcome_comment", cell_personal),
    Column("closed_by", "review__closed_by__username", cell_text),
    Column("closed_at", LocalTime("review__closed_at"), RAW),
    Column("documents", _count(Document.objects.current()), RAW),
    Column("documents_with_errors", _count(Document.objects.current().with_errors()), RAW),
    Column("flagged_items", _count(ReviewItem.objects.exclude(status=ItemStatus.CLEARED)), RAW),
    Column("open_items", _count(ReviewItem.objects.filter(status=ItemStatus.OPEN)), RAW),
    Column("accepted", _decisions(Action.ACCEPT), RAW),
    Column("corrected", _decisions(Action.CORRECT), RAW),
    Column("rejected", _decisions(Action.REJECT), RAW),
    Column("superseded_decisions", _count(Decision.objects.filter(superseded=True)), RAW),
    Column("decision_events", _count(DecisionEvent.objects.all()), RAW),
    Column(
        "reviewers",
        Subquery(
            DecisionEvent.objects.filter(flow=OuterRef("pk"), actor__isnull=False)
            .order_by()
            .values("flow")
            .annotate(
                # Sorted in cell_names: SQLite cannot order inside an aggregate.
                names=StringAgg("actor_username", Value(","), distinct=True)
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

    def format_row(self) -> Callable[[tuple], list]:
        """A function turning a database row into the row csv.writer gets."""
        replace = {} if self.mask else {cell_personal: cell_json_text}
        active = [
            (i, replace.get(c.cell, c.cell))
            for i, c in enumerate(self.spec.columns)
            if c.cell is not RAW
        ]

        def format_row(row: tuple) -> list:
            row = list(row)
            for i, cell in active:
                row[i] = cell(row[i])
            return row

        return format_row

    def chunks(self, on_progress: Callable[[int], None] | None = None) -> Iterator[bytes]:
        format_row = self.format_row()
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\r\n")
        writer.writerow(self.spec.header)
        # The BOM and the header ride with the first rows (or alone, if there are none).
        head = BOM if self.bom else b""
        next_progress = PROGRESS_EVERY
        with _without_jit():
            for batch in read_ahead(self.spec.rows(self.filters), FLUSH_ROWS):
                writer.writerows(map(format_row, batch))
                self.rows_written += len(batch)
                yield head + buffer.getvalue().encode()
                head = b""
                buffer.seek(0)
                buffer.truncate()
                if on_progress and self.rows_written >= next_progress:
                    on_progress(self.rows_written)
                    next_progress += PROGRESS_EVERY
        if not self.rows_written:
            yield head + buffer.getvalue().encode()


def read_ahead(rows: Iterator[tuple], size: int) -> Iterator[list[tuple]]:
    """The rows in batches of `size`, the next batch read by a helper thread while the
    caller writes this one.

    Why: psycopg waits for the server without holding the GIL, so the database computes
    batch n+1 while Python formats batch n, and on two cores an export runs at the pace of
    the slower side instead of the sum of both (issue 6: 50k rows/s). The first batch is
    read here, so the query runs on this thread's connection and transaction; the helper
    only fetches from that cursor (psycopg connections are thread-safe). Memory stays flat:
    at most two batches wait in the queue."""
    first = list(islice(rows, size))
    if len(first) < size:
        if first:
            yield first
        return
    batches: queue.Queue = queue.Queue(maxsize=2)
    stop = threading.Event()

    def read() -> None:
        try:
            while not stop.is_set():
                batch = list(islice(rows, size))
                batches.put(batch)
                if len(batch) < size:
                    return
        except BaseException as exc:  # handed to the caller, raised there
            batches.put(exc)

    reader = threading.Thread(target=read, name="export-read-ahead", daemon=True)
    reader.start()
    try:
        batch = first
        while True:
            if batch:
                yield batch
            if len(batch) < size:
                return
            batch = batches.get()
            if isinstance(batch, BaseException):
                raise batch
    finally:
        # Stopped early (the client went away) or done: let the reader finish its fetch,
        # then close the cursor from here.
        stop.set()
        while reader.is_alive():
            with suppress(queue.Empty):
                batches.get(timeout=0.05)
        reader.join()
        close = getattr(rows, "close", None)
        if close:
            close()


@contextmanager
def _without_jit():
    """PostgreSQL JIT-compiles plans it expects to be expensive, as a million-row export's
    is: 0.5-1 s before the first row, and nothing gained for a plan of index look-ups."""
    if connection.vendor != "postgresql":
        yield
        return
    local = connection.in_atomic_block
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL jit = off" if local else "SET jit = off")
    try:
        yield
    finally:
        if not local:
            with connection.cursor() as cursor:
                cursor.execute("RESET jit")


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


def _progress_writer(job_id: int) -> tuple[Callable[[int], None], Callable[[], None]]:
    """Progress must be seen by the progress page while the export's own transaction is
    still open (and its snapshot unchanged), so it is written through a second connection
    that commits each UPDATE at once. Returns (write, close)."""
    other = connections.create_connection(DEFAULT_DB_ALIAS)
    # The table name is our model's, not input.
    sql = f"UPDATE {other.ops.quote_name(ExportJob._meta.db_table)} SET rows_written = %s WHERE id = %s"  # noqa: S608

    def write(rows: int) -> None:
        with other.cursor() as cursor:
            cursor.execute(sql, [rows, job_id])

    return write, other.close


def run_job(job_id: int) -> None:
    """A background export: claim the queued job, write its file, keep its progress.
    The export runs in a transaction like the others (a WITHOUT HOLD cursor streams; in
    autocommit PostgreSQL would first compute the whole result, 6 s for a million rows)."""
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
    write_progress, close_progress = _progress_writer(job_id)
    try:
        filters = parse_filters(job.filters)
        total = SPECS[job.kind].queryset(filters).count()
        ExportJob.objects.filter(pk=job_id).update(rows_expected=total)
        export = CsvExport(job.kind, filters, bom=job.bom, mask=job.masked)
        path.parent.mkdir(parents=True, exist_ok=True)
        with partial.open("wb") as f, transaction.atomic():
            for chunk in export.chunks(on_progress=write_progress):
                f.write(chunk)
        # The download never sees a half-written file.
        partial.replace(path)
    except Exception as exc:
        log.exception("export job %s failed", job_id)
        partial.unlink(missing_ok=True)
        _finish(job, export.rows_written if export else 0, _describe(exc))
        return
    finally:
        close_progress()
    _finish(job, export.rows_written, file=str(relative), file_size=path.stat().st_size)
