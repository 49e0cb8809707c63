"""The overview's figures against the known floor of conftest.py."""

from datetime import date, timedelta

import pytest
from django.http import QueryDict
from django.utils import timezone

from atlas_review.overview import charts, figures
from atlas_review.overview.inputs import Inputs, OverviewFilters, ThresholdTrial
from atlas_review.review.models import Threshold

pytestmark = pytest.mark.django_db

HOUR = 3600


def inputs(floor, **query) -> Inputs:
    params = {
        "date_from": (floor.today - timedelta(days=6)).isoformat(),
        "date_to": floor.today.isoformat(),
        **query,
    }
    q = QueryDict(mutable=True)
    q.update(params)
    return Inputs(OverviewFilters.from_query(q), ThresholdTrial.from_query(q), now=floor.now)


def figure(floor, name, **query) -> figures.Figure:
    return figures.CHARTS[name](inputs(floor, **query))


def by_first(rows) -> dict:
    return {row[0]: row[1:] for row in rows}


# --- queue health -------------------------------------------------------------------------


def test_open_items_per_queue_with_their_ages_and_the_sla(floor):
    fig = figure(floor, "queues")

    rows = by_first(fig.rows)
    # (open, oldest age s, p50 age s, SLA h, past SLA)
    fields, checks, exceptions, qa = (rows[q] for q in ("Low-confidence fields", "Cross-checks", "Exceptions", "QA sample"))  # fmt: skip
    assert fields[0] == 1 and fields[1] == pytest.approx(30 * HOUR, abs=5)
    assert fields[3:] == (24, 1)  # the default SLA; 30 h is past it
    assert checks == (0, None, None, 24, 0)
    assert exceptions[0] == 2
    assert exceptions[1] == pytest.approx(50 * HOUR, abs=5)
    assert exceptions[2] == pytest.approx(50 * HOUR, abs=5)  # p50 of two: the older (disc)
    assert exceptions[3:] == (48, 1)  # the admin's SLA: only the 50 h one is late
    assert qa[0] == 0
    assert fig.summary == "3 open, 2 past the SLA"


def test_claims_held_now_and_for_how_long(floor):
    fig = figure(floor, "claims")

    [(who, flows, seconds, _since)] = fig.rows
    assert (who, flows) == ("otto", 1)
    assert seconds == pytest.approx(20 * 60, abs=5)


def test_decisions_per_reviewer_per_day(floor):
    fig = figure(floor, "decisions")

    assert fig.rows == [("riya", floor.day1, 4), ("otto", floor.day2, 2)]
    assert fig.summary == "6 decisions by 2 reviewers"


def test_time_per_decision_is_the_median_gap_between_a_reviewers_decisions(floor):
    fig = figure(floor, "time_per_decision")

    # riya: gaps 40, 60, 30 s; otto: 600 s. Everyone: median of 30, 40, 60, 600.
    assert fig.rows == [("(everyone)", 4, 50.0), ("riya", 3, 40.0), ("otto", 1, 600.0)]
    assert fig.summary == "median 50 s per decision"


def test_a_break_longer_than_the_cap_is_not_timed(floor, monkeypatch):
    monkeypatch.setattr(figures, "GAP_CAP_SECONDS", 300)

    fig = figure(floor, "time_per_decision")

    assert by_first(fig.rows)["(everyone)"] == (3, 40.0)
    assert "otto" not in by_first(fig.rows)


def test_flows_closed_per_day_by_outcome(floor):
    fig = figure(floor, "closed")

    assert fig.rows == [(floor.day1, "approved", 1), (floor.day2, "rejected", 1)]
    assert fig.summary == "1 approved, 1 rejected, 0 needs more information"


# --- Atlas quality --------------------------------------------------------------------------


def test_confidence_per_document_type_and_field_in_ten_buckets(floor):
    fig = figure(floor, "confidence")

    rows = {row[1]: row[2:] for row in fig.rows}
    # 10 buckets, no score, total, threshold, under it, share under
    assert rows["account_holder"] == (1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 3, 0.8, 3, 1.0)
    assert rows["account_number"] == (0, 0, 0, 0, 0, 1, 0, 0, 1, 0, 0, 2, 0.8, 1, 0.5)
    # 0.80 is in the 0.8 to 0.9 bucket and not under the 0.80 threshold; 1.0 is in the last.
    assert rows["bank_name"] == (0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 0, 3, 0.8, 0, 0.0)
    assert fig.columns[2].label == "0–0.1" and fig.columns[11].label == "0.9–1"


def test_the_histograms_use_the_thresholds_in_force(floor):
    Threshold.objects.create(scope="confidence", document_type="BANK_STATEMENT", field_name="bank_name", value=0.95)  # fmt: skip
    Threshold.objects.create(scope="similarity", check_name="DEALER_ADDRESS", value=80)

    conf = {row[1]: row[-3:] for row in figure(floor, "confidence").rows}
    sim = {row[0]: row[-3:] for row in figure(floor, "similarity").rows}

    assert conf["bank_name"] == (0.95, 1, pytest.approx(1 / 3, abs=1e-4))  # 0.80 < 0.95
    assert conf["ifsc"] == (0.8, 1, 0.5)
    assert sim["DEALER_ADDRESS"] == (80, 1, 0.5)  # 60 is under 80, 85 is not
    assert sim["CUSTOMER_NAME"] == (90, 0, 0.0)


def test_similarity_per_cross_check(floor):
    fig = figure(floor, "similarity")

    rows = by_first(fig.rows)
    assert rows["DEALER_ADDRESS"] == (0, 0, 0, 0, 0, 0, 1, 0, 1, 0, 0, 2, 90, 2, 1.0)
    assert rows["CUSTOMER_NAME"] == (0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 90, 0, 0.0)


def test_error_documents_by_error_code(floor):
    fig = figure(floor, "errors")

    assert fig.rows == [("BLURRED", 1, 0.2), ("UNRECOGNISED", 1, 0.2), ("(no error)", 3, 0.6)]
    assert fig.summary == "2 of 5 documents (40.0%)"


def test_where_reviewers_overrule_atlas_least_trustworthy_first(floor):
    fig = figure(floor, "corrections")

    # kind, subject, decisions, accepted, corrected, rejected, share overruled
    assert fig.rows == [
        ("field", "BANK_STATEMENT.account_number", 1, 0, 1, 0, 1.0),
        ("field", "BANK_STATEMENT.ifsc", 1, 0, 0, 1, 1.0),
        ("field", "BANK_STATEMENT.account_holder", 2, 1, 1, 0, 0.5),
        ("cross-check", "DEALER_ADDRESS", 2, 1, 0, 1, 0.5),
    ]


def test_a_threshold_shows_how_many_fields_it_would_send_to_review(floor):
    fig = figure(floor, "threshold", t_scope="confidence", t_confidence="0.9")

    # Under 0.80 now: .42 .55 .61 .15 .05; under 0.90 also B's .85 and .80.
    assert (fig.extra["tried"], fig.extra["in_force"], fig.extra["total"]) == (7, 5, 10)
    assert fig.summary == (
        "At 0.9: 7 of 10 fields (all fields) would go to review; "
        "5 do at the thresholds in force (+2)."
    )
    curve = dict(fig.rows)
    assert (curve[0.0], curve[0.1], curve[0.8], curve[0.85], curve[0.95]) == (0, 1, 5, 6, 7)
    assert fig.extra["fixed"] == 0.8  # one threshold applies: drawn on the curve


def test_the_threshold_in_force_follows_the_admins_overrides(floor):
    Threshold.objects.create(scope="confidence", document_type="BANK_STATEMENT", field_name="account_number", value=0.9)  # fmt: skip

    everything = figure(floor, "threshold", t_confidence="0.9")
    one_field = figure(floor, "threshold", t_confidence="0.5", t_document_type="BANK_STATEMENT", t_field="account_number")  # fmt: skip

    assert (everything.extra["tried"], everything.extra["in_force"]) == (7, 6)  # B's .85 too
    assert everything.extra["fixed"] is None  # thresholds differ by field: no single line
    assert (one_field.extra["tried"], one_field.extra["in_force"], one_field.extra["total"]) == (0, 2, 2)  # fmt: skip
    assert one_field.extra["fixed"] == 0.9


def test_a_similarity_threshold_for_one_check(floor):
    fig = figure(floor, "threshold", t_scope="similarity", t_similarity="50", t_check="DEALER_ADDRESS")  # fmt: skip

    assert (fig.extra["tried"], fig.extra["in_force"], fig.extra["total"]) == (0, 2, 2)
    assert fig.summary.startswith("At 50: 0 of 2 cross-checks (DEALER_ADDRESS)")


def test_without_a_value_the_trial_is_the_threshold_in_force(floor):
    fig = figure(floor, "threshold", t_scope="similarity", t_similarity="250")  # out of range

    assert fig.extra["value"] == 90
    assert fig.extra["tried"] == fig.extra["in_force"] == 2


# --- filters ----------------------------------------------------------------------------------


def test_the_product_type_narrows_every_figure(floor):
    def fig(name):
        return figure(floor, name, product_type="LOAN_APP")

    assert fig("queues").summary == "3 open, 2 past the SLA"  # all of C
    assert fig("claims").rows[0][:2] == ("otto", 1)
    assert fig("decisions").rows == [] and fig("closed").rows == []
    assert [r[1] for r in fig("confidence").rows] == ["account_holder", "bank_name"]
    assert fig("similarity").rows == []
    assert fig("errors").summary == "2 of 3 documents (66.7%)"
    assert fig("corrections").rows == []
    assert fig("threshold").extra["total"] == 2

    other = {name: figure(floor, name, product_type="PROD_CDL") for name in ("queues", "claims", "decisions")}  # fmt: skip
    assert other["queues"].summary == "0 open, 0 past the SLA"
    assert other["claims"].rows == []
    assert len(other["decisions"].rows) == 2


def test_the_date_range_selects_when_things_happened(floor):
    only_day2 = {"date_from": floor.day2.isoformat(), "date_to": floor.day2.isoformat()}

    assert figure(floor, "decisions", **only_day2).rows == [("otto", floor.day2, 2)]
    assert figure(floor, "closed", **only_day2).rows == [(floor.day2, "rejected", 1)]
    assert [r[:3] for r in figure(floor, "corrections", **only_day2).rows] == [
        ("field", "BANK_STATEMENT.account_holder", 1),
        ("cross-check", "DEALER_ADDRESS", 1),
    ]
    # The flows were created today: no Atlas figures for yesterday.
    assert figure(floor, "confidence", **only_day2).rows == []
    assert figure(floor, "errors", **only_day2).summary == "no documents"
    # The queues are now, whatever the range.
    assert figure(floor, "queues", **only_day2).summary == "3 open, 2 past the SLA"


def test_filters_fall_back_to_defaults_rather_than_fail():
    today = date(2025, 3, 31)

    def parse(qs):
        return OverviewFilters.from_query(QueryDict(qs), today=today)

    assert parse("") == OverviewFilters(date(2025, 3, 18), today)
    assert parse("date_from=nonsense&date_to=2025-02-30") == OverviewFilters(date(2025, 3, 18), today)  # fmt: skip
    assert parse("date_from=2025-03-10&date_to=2025-03-01") == OverviewFilters(date(2025, 3, 1), date(2025, 3, 10))  # fmt: skip
    assert parse("date_from=2020-01-01&date_to=2025-03-31").date_from == date(
        2024, 3, 31
    )  # 366 days
    assert parse("product_type=%20LOAN_APP%20").product_type == "LOAN_APP"
    assert ThresholdTrial.from_query(QueryDict("t_scope=bogus&t_confidence=x")) == ThresholdTrial()
    # A value of the other scope is not carried over when the scope switches.
    assert ThresholdTrial.from_query(QueryDict("t_scope=similarity&t_confidence=0.8")).value is None


def test_the_time_range_is_whole_local_days():
    start, end = OverviewFilters(date(2025, 1, 1), date(2025, 1, 2)).time_range()

    assert timezone.localtime(start).isoformat() == "2025-01-01T00:00:00+05:30"
    assert timezone.localtime(end).isoformat() == "2025-01-03T00:00:00+05:30"


# --- chart geometry ---------------------------------------------------------------------------


def test_bars_scale_to_the_largest_row_and_stack_their_segments():
    svg = charts.hbars(
        [
            charts.BarRow("a", [charts.Segment(1, "late"), charts.Segment(3, "open")]),
            charts.BarRow("b", [charts.Segment(2, "open")]),
        ],
        label="test",
    )
    late, open_a, open_b = svg.rects
    assert (late.cls, open_a.cls) == ("late", "open")
    assert float(open_a.x) == float(late.x) + float(late.width)
    assert float(late.width) + float(open_a.width) == pytest.approx(2 * float(open_b.width))


def test_histogram_buckets_under_the_threshold_are_marked():
    svg = charts.histogram_rows(
        [charts.HistogramRow("f", [1] * 10, marker=0.8)], lo=0, hi=1, label="test"
    )
    assert [r.cls for r in svg.rects] == ["under"] * 8 + ["over"] * 2
    [_axis, marker] = svg.lines
    assert marker.cls == "marker" and float(marker.x1) == pytest.approx(200 + 260 * 0.8, abs=0.1)


def test_axis_maxima_and_durations_read_well():
    assert [charts.nice_max(v) for v in (0, 3, 7, 12, 30, 230, 1001)] == [
        2,
        4,
        8,
        20,
        50,
        250,
        2000,
    ]
    assert [figures.duration(s) for s in (None, 42, 754, 3 * HOUR + 300, 50 * HOUR)] == [
        "–", "42 s", "12 min", "3 h 05 min", "2 d 2 h",
    ]  # fmt: skip
