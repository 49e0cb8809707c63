"""export_decisions / export_flows: same filters and same CSV as the page, to a file or
stdout, and recorded."""

import csv
import io

import pytest
from django.core.management import CommandError, call_command

from atlas_review.audit.exports import CsvExport
from atlas_review.audit.filters import ExportFilters
from atlas_review.audit.models import ExportJob

pytestmark = pytest.mark.django_db


def test_it_writes_the_file_and_records_the_export(trail, tmp_path):
    out = tmp_path / "march.csv"
    err = io.StringIO()

    call_command("export_decisions", "--output", str(out), "--reviewer", "agent.bilal", stderr=err)

    rows = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"), newline="")))
    assert [r["actor"] for r in rows] == ["agent.bilal", "agent.bilal"]
    job = ExportJob.objects.get()
    assert (job.via, job.user, job.kind, job.status) == ("command", None, "decisions", "done")
    assert job.requested_by.startswith("command (")
    assert job.filters == {"reviewer": "agent.bilal"}
    assert job.rows_written == 2
    assert job.finished_at is not None
    assert f"Exported 2 decisions row(s) (reviewer=agent.bilal) to {out}" in err.getvalue()


def test_it_writes_to_stdout_the_same_csv_as_the_page(trail):
    out, err = io.StringIO(), io.StringIO()
    call_command("export_flows", "--product-type", "PROD_CDL", stdout=out, stderr=err)
    expected = b"".join(
        CsvExport("flows", ExportFilters(product_type="PROD_CDL")).chunks()
    ).decode()
    assert out.getvalue() == expected
    assert out.getvalue().count("\r\n") == 3  # header + 2 flows; the summary is on stderr
    assert "Exported 2 flows row(s)" in err.getvalue()
    assert ExportJob.objects.get().rows_written == 2


def test_bom(trail, tmp_path):
    out = tmp_path / "excel.csv"
    call_command("export_decisions", "--bom", "-o", str(out), stderr=io.StringIO())
    assert out.read_bytes().startswith(b"\xef\xbb\xbfevent_id,")
    assert ExportJob.objects.get().bom


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--from", "2025-13-01"], "--from: Enter a date as YYYY-MM-DD."),
        (["--from", "2025-03-05", "--to", "2025-03-01"], "--to: The end date is before"),
        (["--outcome", "maybe"], "--outcome: Choose one of: approved, rejected, needs_info"),
        (["--reviewer", "ghost"], "--reviewer: No user called 'ghost'."),
        (["--product-type", "NOPE"], "--product-type: No flow has product type 'NOPE'."),
    ],
)
def test_bad_filters_are_a_clear_error_and_nothing_is_recorded(db, args, message):
    with pytest.raises(CommandError, match=message.replace("(", r"\(")):
        call_command("export_decisions", *args, stdout=io.StringIO())
    assert not ExportJob.objects.exists()


def test_an_unwritable_output_is_a_clear_error(db, tmp_path):
    with pytest.raises(CommandError, match="Cannot write"):
        call_command("export_flows", "-o", str(tmp_path / "missing" / "x.csv"))
