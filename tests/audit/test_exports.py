"""The CSV itself: row for row what the database holds, in the documented format."""

import csv
import io
import json
import re
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from django.db import connection
from django.utils import timezone

from atlas_review.audit import exports
from atlas_review.audit.exports import CsvExport, cell_number, neutralise
from atlas_review.audit.filters import ExportFilters
from atlas_review.audit.masking import mask_personal
from atlas_review.flows.models import Flow
from atlas_review.review import services
from atlas_review.review.models import Decision, DecisionEvent, FlowReview

from .conftest import item, make_flow

pytestmark = pytest.mark.django_db
DOCS = Path(__file__).resolve().parents[2] / "README.md"


def export(kind: str, filters=None, **kwargs) -> bytes:
    return b"".join(CsvExport(kind, filters or ExportFilters(), **kwargs).chunks())


def parse(data: bytes) -> tuple[list[str], list[dict[str, str]]]:
    reader = csv.DictReader(io.StringIO(data.decode("utf-8"), newline=""))
    rows = list(reader)
    return reader.fieldnames, rows


def local_iso(value) -> str:
    return "" if value is None else timezone.localtime(value).isoformat(timespec="seconds")


def assert_json_cell(cell: str, value) -> None:
    """Atlas's JSON values: empty for null, strings as they are, numbers as plain decimals,
    lists and objects as JSON."""
    if value is None:
        assert cell == ""
    elif isinstance(value, str):
        assert cell == value
    elif isinstance(value, bool):
        assert cell == ("true" if value else "false")
    elif isinstance(value, int | float):
        assert "e" not in cell.lower() and Decimal(cell) == Decimal(repr(value))
    else:
        assert json.loads(cell) == value


def test_the_decision_export_is_the_trail_row_for_row(trail):
    header, rows = parse(export("decisions"))

    events = list(
        DecisionEvent.objects.select_related("flow", "document", "field", "cross_check").order_by(
            "at", "id"
        )
    )
    assert header == [c.name for c in exports.DECISION_COLUMNS]
    assert len(rows) == len(events) == 10
    for row, e in zip(rows, events, strict=True):
        assert row["event_id"] == str(e.pk)
        assert row["at"] == local_iso(e.at)
        assert row["at"].endswith("+05:30")  # the site's zone, with its offset
        assert (row["kind"], row["actor"], row["subject"], row["action"]) == (
            e.kind, e.actor_username, e.subject, e.action,
        )  # fmt: skip
        assert (row["application_id"], row["flow_uuid"], row["product_type"]) == (
            e.flow.application_id, e.flow.flow_uuid, e.flow.product_type,
        )  # fmt: skip
        assert row["document_id"] == (e.document.document_id if e.document else "")
        assert row["field"] == (e.field.name if e.field else "")
        assert_json_cell(row["atlas_value"], e.atlas_value)
        assert_json_cell(row["new_value"], e.new_value)
        assert row["atlas_score"] == ("" if e.atlas_score is None else repr(e.atlas_score))
        assert (row["reason_code"], row["reason_label"], row["comment"]) == (
            e.reason_code, e.reason_label, e.comment,
        )  # fmt: skip
        assert row["outcome"] == e.outcome
        assert row["decision_id"] == (str(e.decision_id) if e.decision_id else "")
        assert (json.loads(row["details"]) if row["details"] else {}) == e.data

    by_subject = {(r["kind"], r["subject"]): r for r in rows}
    # The shapes an auditor must get back intact.
    holder = by_subject["decided", "BANK_STATEMENT.account_holder"]
    assert holder["atlas_value"] == "Sāvitrī Ñandā"
    imei = by_subject["decided", "BANK_STATEMENT.imei_numbers"]
    assert json.loads(imei["atlas_value"]) == ["356938035643809", "356938035643817"]
    assert by_subject["decided", "BANK_STATEMENT.total_amount"]["atlas_value"] == "125000.5"
    assert by_subject["decided", "BANK_STATEMENT.branch"]["atlas_value"] == ""
    changed = by_subject["changed", "BANK_STATEMENT.branch"]
    assert changed["new_value"] == "Kōchi — MG Road"
    superseded = by_subject["superseded", "BANK_STATEMENT.ifsc"]
    assert superseded["actor"] == ""  # the system: Atlas re-delivered
    assert (superseded["atlas_value"], superseded["new_value"]) == ("HDFC0001234", "HDFC0004321")


def test_the_flow_export_has_one_row_per_flow_with_its_counts(trail):
    first, _second, third = trail
    header, rows = parse(export("flows"))

    assert header == [c.name for c in exports.FLOW_COLUMNS]
    assert [r["application_id"] for r in rows] == [
        f.application_id for f in Flow.objects.order_by("created_at", "id")
    ]
    one, two, three = rows
    review = FlowReview.objects.get(pk=first.pk)
    assert (one["outcome"], one["outcome_comment"], one["closed_by"]) == (
        "approved", "Fine after corrections", "agent.ananya",
    )  # fmt: skip
    assert one["closed_at"] == local_iso(review.closed_at)
    assert one["created_at"] == local_iso(first.created_at)
    assert (one["documents"], one["flagged_items"], one["open_items"]) == ("1", "4", "0")
    assert (one["accepted"], one["corrected"], one["rejected"]) == ("1", "2", "1")
    assert one["decision_events"] == "6"
    assert json.loads(one["reviewers"]) == ["agent.ananya"]
    # The supervisor who released a claim acted on the flow too.
    assert json.loads(two["reviewers"]) == ["agent.bilal", "sam"]
    assert (two["outcome"], two["closed_at"]) == ("", "")
    # The superseded decision is counted apart, and its item is back in the queue.
    assert (three["accepted"], three["superseded_decisions"], three["open_items"]) == (
        "0",
        "1",
        "1",
    )
    assert Decision.objects.get(flow=third).superseded


def test_a_flow_nobody_reviewed_has_zero_counts_and_an_empty_reviewer_list(db):
    make_flow({"bank_name": ("HDFC Bank", 0.99)})
    _, (row,) = parse(export("flows"))
    assert (row["flagged_items"], row["accepted"], row["decision_events"]) == ("0", "0", "0")
    assert row["reviewers"] == "[]"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('=HYPERLINK("http://evil","x")', '\'=HYPERLINK("http://evil","x")'),
        ("+1+cmd|' /C calc'!A0", "'+1+cmd|' /C calc'!A0"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1:A9)", "'@SUM(A1:A9)"),
        ("\tTAB", "'\tTAB"),
        ("\rCR", "'\rCR"),
        # Plain numbers are not formulas and stay numbers.
        ("-12.5", "-12.5"),
        ("+91", "+91"),
        ("1e5", "1e5"),
        ("a=b", "a=b"),
        ("", ""),
    ],
)
def test_cells_a_spreadsheet_would_run_are_neutralised(text, expected):
    assert neutralise(text) == expected


def test_injection_is_neutralised_in_the_exported_file(agent):
    flow = make_flow({"customer_name": ("=cmd|' /C calc'!A0", 0.4), "city": ("@Pune", 0.4)})
    services.decide(
        item(flow, "customer_name"), agent, "correct", corrected_value="+SUM(1,2)",
        comment="-see note",
    )  # fmt: skip
    services.decide(item(flow, "city"), agent, "accept", comment="@admin please check")

    _, rows = parse(export("decisions"))
    first, second = rows
    assert first["atlas_value"] == "'=cmd|' /C calc'!A0"
    assert (first["new_value"], first["comment"]) == ("'+SUM(1,2)", "'-see note")
    assert (second["atlas_value"], second["comment"]) == ("'@Pune", "'@admin please check")
    for row in rows:
        for cell in row.values():
            assert not cell or cell[0] not in "=+-@\t\r" or re.fullmatch(r"[+-][\d.]+", cell)


@pytest.mark.parametrize(
    ("value", "text"),
    [(0.83, "0.83"), (1e-05, "0.00001"), (1.5e16, "15000000000000000"), (7, "7"), (None, "")],
)
def test_numbers_are_plain_decimals(value, text):
    cell = cell_number(value)
    # csv.writer writes None as an empty cell and ints as their digits.
    assert ("" if cell is None else str(cell)) == text


def test_the_bom_is_written_only_when_asked(trail):
    with_bom, without = export("decisions", bom=True), export("decisions")
    assert with_bom.startswith(b"\xef\xbb\xbfevent_id,")
    assert without.startswith(b"event_id,")
    assert with_bom[3:] == without


def test_an_empty_export_is_just_the_header(db):
    for kind, columns in (("decisions", exports.DECISION_COLUMNS), ("flows", exports.FLOW_COLUMNS)):
        assert export(kind) == (",".join(c.name for c in columns) + "\r\n").encode()


def test_lines_end_with_crlf_and_embedded_newlines_stay_in_their_cell(agent):
    flow = make_flow({"address": ("12 MG Road\nKochi", 0.4)})
    services.decide(item(flow, "address"), agent, "accept", comment="line one\r\nline two")
    data = export("decisions")
    assert data.count(b"\r\n") == 3  # header, the row, and the comment's own CRLF
    _, (row,) = parse(data)
    assert (row["atlas_value"], row["comment"]) == ("12 MG Road\nKochi", "line one\r\nline two")


def test_identity_numbers_are_masked_by_default(agent, settings):
    flow = make_flow({"aadhaar_number": ("2345 6789 0123", 0.5), "pan_number": ("ABCPE1234F", 0.5)})
    services.decide(
        item(flow, "aadhaar_number"), agent, "correct", corrected_value="234567890124",
        comment="Customer read out 234567890125 on the phone; PAN abcpe1234f",
    )  # fmt: skip
    services.decide(item(flow, "pan_number"), agent, "accept")

    _, (aadhaar, pan) = parse(export("decisions"))
    assert aadhaar["atlas_value"] == "XXXX XXXX 0123"
    assert aadhaar["new_value"] == "XXXX XXXX 0124"
    assert aadhaar["comment"] == "Customer read out XXXX XXXX 0125 on the phone; PAN abXXXXXX4f"
    assert pan["atlas_value"] == "ABXXXXXX4F"

    settings.EXPORT_MASK_PERSONAL_DATA = False
    _, (aadhaar, pan) = parse(export("decisions"))
    assert (aadhaar["atlas_value"], pan["atlas_value"]) == ("2345 6789 0123", "ABCPE1234F")


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("234567890123", "XXXX XXXX 0123"),
        ("2345-6789-0123", "XXXX XXXX 0123"),
        ("IMEI 356938035643809", "IMEI 356938035643809"),  # 15 digits: not an Aadhaar
        ("1234 5678 9012", "1234 5678 9012"),  # Aadhaar numbers never start with 0 or 1
        ("GSTIN 27ABCPE1234F1Z5", "GSTIN 27ABCPE1234F1Z5"),  # a business's number
        ("Sāvitrī Ñandā", "Sāvitrī Ñandā"),
    ],
)
def test_masking_finds_identity_numbers_and_leaves_other_numbers(text, masked):
    assert mask_personal(text) == masked


def test_rows_stream_in_chunks_and_report_progress(trail, monkeypatch):
    monkeypatch.setattr(exports, "FLUSH_ROWS", 3)
    monkeypatch.setattr(exports, "PROGRESS_EVERY", 3)
    seen: list[int] = []
    chunks = list(CsvExport("decisions", ExportFilters()).chunks(on_progress=seen.append))
    assert len(chunks) == 4  # 10 rows by 3, the header riding with the first
    assert seen == [3, 6, 9]


def test_the_rows_come_from_a_server_side_cursor(trail, monkeypatch):
    # A named cursor is open while the export runs: rows are fetched in chunks, never
    # read whole into memory by a client-side cursor.
    monkeypatch.setattr(exports, "FLUSH_ROWS", 1)
    chunks = CsvExport("decisions", ExportFilters()).chunks()
    next(chunks)
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_cursors")
        statements = [s for (s,) in cursor.fetchall()]
    chunks.close()
    assert any("review_decisionevent" in s for s in statements)


def test_the_docs_list_the_columns_in_order():
    text = DOCS.read_text(encoding="utf-8")
    for title, columns in (
        ("Decisions", exports.DECISION_COLUMNS),
        ("Flows", exports.FLOW_COLUMNS),
    ):
        section = text.split(f"### {title} export columns", 1)[1].split("###", 1)[0]
        documented = re.findall(r"^\| *\d+ *\| *`(\w+)`", section, re.MULTILINE)
        assert documented == [c.name for c in columns], title


def test_timestamps_carry_the_offset_of_the_site_zone(agent):
    flow = make_flow({"x": ("y", 0.1)})
    services.decide(item(flow, "x"), agent, "accept")
    _, (row,) = parse(export("decisions"))
    parsed = datetime.fromisoformat(row["at"])
    event = DecisionEvent.objects.get()
    assert parsed == event.at.replace(microsecond=0)
    assert parsed.utcoffset().total_seconds() == 5.5 * 3600


@pytest.mark.parametrize(
    ("zone", "winter", "summer"),
    [
        ("Asia/Kolkata", "2025-01-15T17:30:00+05:30", "2025-07-15T17:30:00+05:30"),
        ("America/New_York", "2025-01-15T07:00:00-05:00", "2025-07-15T08:00:00-04:00"),
        ("America/St_Johns", "2025-01-15T08:30:00-03:30", "2025-07-15T09:30:00-02:30"),
    ],
)
def test_each_timestamp_gets_the_offset_of_its_moment(db, agent, settings, zone, winter, summer):
    settings.TIME_ZONE = zone
    flow = make_flow({})
    for at in (datetime(2025, 1, 15, 12, tzinfo=UTC), datetime(2025, 7, 15, 12, tzinfo=UTC)):
        DecisionEvent.objects.create(kind="claim_released", at=at, flow=flow, actor=agent)
    _, rows = parse(export("decisions"))
    assert [r["at"] for r in rows] == [winter, summer]


def test_read_ahead_batches_everything_in_order():
    assert list(exports.read_ahead(iter(range(7)), 3)) == [[0, 1, 2], [3, 4, 5], [6]]
    assert list(exports.read_ahead(iter(range(6)), 3)) == [[0, 1, 2], [3, 4, 5]]
    assert list(exports.read_ahead(iter([]), 3)) == []


def test_read_ahead_raises_the_readers_error_in_the_caller():
    def rows():
        yield from range(5)
        raise ValueError("the database went away")

    batches = exports.read_ahead(rows(), 2)
    assert next(batches) == [0, 1]
    with pytest.raises(ValueError, match="went away"):
        list(batches)


def test_read_ahead_stops_reading_and_closes_the_rows_when_the_caller_stops():
    closed = []

    def rows():
        try:
            yield from range(1_000_000)
        finally:
            closed.append(True)

    batches = exports.read_ahead(rows(), 10)
    assert next(batches) == list(range(10))
    batches.close()
    assert closed == [True]
