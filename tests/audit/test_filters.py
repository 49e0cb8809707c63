"""Each filter, on both exports, and the errors bad filters give (one parser for the page,
the jobs and the commands)."""

import csv
import io
from datetime import UTC, datetime

import pytest

from atlas_review.audit.exports import CsvExport
from atlas_review.audit.filters import InvalidFilters, parse_filters
from atlas_review.flows.models import Flow
from atlas_review.review.models import DecisionEvent, EventKind

from .conftest import make_flow

pytestmark = pytest.mark.django_db


def rows(kind: str, **filters) -> list[dict[str, str]]:
    data = b"".join(CsvExport(kind, parse_filters(filters)).chunks())
    return list(csv.DictReader(io.StringIO(data.decode(), newline="")))


def subjects(**filters) -> list[str]:
    return [r["subject"] or r["kind"] for r in rows("decisions", **filters)]


def test_the_date_range_is_whole_days_in_the_site_zone(db, agent):
    flow = make_flow({})
    # Asia/Kolkata is UTC+05:30: 18:30 UTC is local midnight.
    moments = {
        "feb-last": datetime(2025, 3, 1, 18, 29, 59, tzinfo=UTC),  # 1 Mar 23:59:59 local
        "mar-first": datetime(2025, 3, 1, 18, 30, tzinfo=UTC),  # 2 Mar 00:00 local
        "mar-end": datetime(2025, 3, 31, 18, 29, 59, tzinfo=UTC),  # 31 Mar 23:59:59
        "apr-first": datetime(2025, 3, 31, 18, 30, tzinfo=UTC),  # 1 Apr 00:00
    }
    for name, at in moments.items():
        DecisionEvent.objects.create(
            kind=EventKind.CLAIM_RELEASED, at=at, flow=flow, subject=name, actor=agent,
            actor_username=agent.username,
        )  # fmt: skip

    assert subjects(date_from="2025-03-02", date_to="2025-03-31") == ["mar-first", "mar-end"]
    assert subjects(date_from="2025-03-02") == ["mar-first", "mar-end", "apr-first"]
    assert subjects(date_to="2025-03-01") == ["feb-last"]
    assert subjects(date_from="2025-03-31", date_to="2025-03-31") == ["mar-end"]


def test_flows_are_filtered_by_when_they_were_created(db):
    old, new = make_flow({}), make_flow({})
    Flow.objects.filter(pk=old.pk).update(created_at=datetime(2025, 1, 31, 18, 29, tzinfo=UTC))
    Flow.objects.filter(pk=new.pk).update(created_at=datetime(2025, 1, 31, 18, 30, tzinfo=UTC))
    assert [r["application_id"] for r in rows("flows", date_to="2025-01-31")] == [
        old.application_id
    ]
    assert [r["application_id"] for r in rows("flows", date_from="2025-02-01")] == [
        new.application_id
    ]


def test_product_type(trail):
    _first, second, _third = trail
    assert {r["product_type"] for r in rows("decisions", product_type="POC_CDL")} == {"POC_CDL"}
    assert len(rows("decisions", product_type="POC_CDL")) == 2
    assert [r["application_id"] for r in rows("flows", product_type="POC_CDL")] == [
        second.application_id
    ]


def test_reviewer(trail):
    _first, second, third = trail
    mine = rows("decisions", reviewer="agent.bilal")
    assert {r["actor"] for r in mine} == {"agent.bilal"}
    assert len(mine) == 2
    # Flows: those the reviewer acted on.
    assert [r["application_id"] for r in rows("flows", reviewer="agent.bilal")] == [
        second.application_id, third.application_id,
    ]  # fmt: skip


def test_outcome(trail):
    first, _, _ = trail
    approved = rows("decisions", outcome="approved")
    assert {r["application_id"] for r in approved} == {first.application_id}
    assert len(approved) == 6  # every event of the approved flow, not only the outcome
    assert [r["application_id"] for r in rows("flows", outcome="approved")] == [
        first.application_id
    ]
    assert rows("flows", outcome="rejected") == []


def test_filters_combine(trail):
    assert rows("decisions", product_type="PROD_CDL", reviewer="agent.bilal") == rows(
        "decisions", reviewer="agent.bilal", product_type="PROD_CDL"
    )
    combined = rows("decisions", product_type="PROD_CDL", reviewer="agent.bilal")
    assert [r["kind"] for r in combined] == ["decided"]  # flow 3's; flow 2 is POC_CDL


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"date_from": "01/03/2025"}, "date_from", "Enter a date as YYYY-MM-DD."),
        ({"date_to": "2025-02-30"}, "date_to", "Enter a date as YYYY-MM-DD."),
        (
            {"date_from": "2025-03-05", "date_to": "2025-03-01"},
            "date_to",
            "The end date is before the start date.",
        ),
        ({"reviewer": "nobody"}, "reviewer", "No user called 'nobody'."),
        ({"product_type": "NOPE"}, "product_type", "No flow has product type 'NOPE'."),
        (
            {"outcome": "maybe"},
            "outcome",
            "Choose one of: approved, rejected, needs_info (not maybe).",
        ),
    ],
)
def test_bad_filters_say_what_is_wrong(db, data, field, message):
    with pytest.raises(InvalidFilters) as info:
        parse_filters(data)
    assert info.value.errors == {field: [message]}
    assert f"{field}: {message}" in str(info.value)


def test_the_stored_filters_read_back_the_same(trail):
    filters = parse_filters(
        {"date_from": "2025-03-01", "date_to": "2025-03-31", "reviewer": "agent.bilal",
         "product_type": "PROD_CDL", "outcome": "needs_info"}
    )  # fmt: skip
    assert parse_filters(filters.as_json()) == filters
