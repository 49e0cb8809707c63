"""What the queue page draws per row, drawn cheaply: row links built from one reversed URL,
ages from one `now`, cross-check diffs computed once per distinct pair (and only when the
values differ), and the same page as before."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from difflib import SequenceMatcher

import pytest
from django.template import engines
from django.urls import get_script_prefix, reverse, set_script_prefix
from django.utils import timezone
from django.utils.html import escape

from atlas_review.review import diff, services
from atlas_review.review.diff import diff_pair, diff_text
from atlas_review.review.models import ReviewItem
from atlas_review.review.templatetags.review_tags import age
from tests.review.builders import check, document, make_flow, three_field_flow

HTMX = {"HTTP_HX_REQUEST": "true"}
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def queue_url(queue="fields"):
    return reverse("review:queue", args=[queue])


# --- ages ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("before", "text"),
    [
        (timedelta(0), "0 min"),
        (timedelta(seconds=59), "0 min"),
        (timedelta(minutes=12, seconds=30), "12 min"),
        (timedelta(minutes=59, seconds=59), "59 min"),
        (timedelta(hours=1), "1 h"),
        (timedelta(hours=23, minutes=59), "23 h"),
        (timedelta(days=1), "1 d"),
        (timedelta(days=40, hours=5), "40 d"),
    ],
)
def test_an_age_reads_in_its_largest_whole_unit(before, text):
    assert age(NOW - before, NOW) == text


def test_an_age_in_the_future_or_unknown_reads_sensibly():
    assert age(NOW + timedelta(minutes=5), NOW) == "0 min"  # clocks a little apart
    assert age(None, NOW) == ""
    assert age(NOW, None) == ""


@pytest.mark.django_db
def test_each_row_shows_its_age_in_a_time_element(reviewer_client):
    three_field_flow()
    created = timezone.now() - timedelta(hours=3, minutes=10)
    ReviewItem.objects.update(created_at=created)

    html = reviewer_client.get(queue_url()).content.decode()

    assert html.count(f'<time datetime="{created.isoformat()}">3 h</time>') == 3


# --- links --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_rows_link_to_their_flow_carrying_the_queue_and_filters(reviewer_client):
    first, second = three_field_flow(), three_field_flow()

    html = reviewer_client.get(queue_url() + "?product_type=PROD_CDL").content.decode()

    for flow in (first, second):
        href = escape(f"{reverse('review:flow', args=[flow.pk])}?queue=fields&product_type=PROD_CDL")  # fmt: skip
        assert html.count(f'data-href="{href}"') == 3
        assert html.count(f'<a href="{href}">{flow.application_id}</a>') == 3
    assert "&amp;product_type=PROD_CDL" in html  # still escaped in the attribute


@pytest.mark.django_db
def test_tabs_filters_and_pager_use_the_queue_urls(reviewer_client, monkeypatch):
    from atlas_review.review import queries

    monkeypatch.setattr(queries, "PAGE_SIZE", 2)
    three_field_flow()

    response = reviewer_client.get(queue_url("fields") + "?name=ifsc&status=all")
    html = response.content.decode()

    for queue, label in (
        ("fields", "Low-confidence fields"),
        ("checks", "Cross-checks"),
        ("qa", "QA sample"),
    ):
        assert re.search(rf'<a href="{queue_url(queue)}" class="[a-z]*">{label}', html)
    assert f'hx-get="{queue_url()}" hx-target="#queue-rows"' in html
    assert f'<a href="{queue_url()}">Clear</a>' in html

    three_field_flow()
    page = reviewer_client.get(queue_url())
    nxt = queue_url() + page.context["next_url"]
    assert f'<a href="{escape(nxt)}" hx-get="{escape(nxt)}"' in page.content.decode()
    later = reviewer_client.get(nxt, **HTMX).content.decode()
    first = escape(queue_url() + "?")
    assert f'<a href="{first}" hx-get="{first}"' in later


@pytest.fixture
def script_prefix():
    """The site served under /atlas/ (what a WSGI server's SCRIPT_NAME sets)."""
    before = get_script_prefix()
    set_script_prefix("/atlas/")
    yield
    set_script_prefix(before)


@pytest.mark.django_db
@pytest.mark.usefixtures("script_prefix")
def test_row_links_keep_the_script_prefix(reviewer_client):
    flow = three_field_flow()

    html = reviewer_client.get("/review/queue/fields/").content.decode()

    assert f'data-href="/atlas/review/flows/{flow.pk}/?queue=fields"' in html
    assert 'href="/atlas/review/queue/checks/"' in html


@pytest.mark.django_db
def test_decided_rows_show_their_decision_and_open_rows_none(reviewer, reviewer_client):
    flow = three_field_flow()
    services.claim(flow.pk, reviewer)
    services.decide(ReviewItem.objects.get(flow=flow, name="ifsc"), reviewer, "accept")

    decided = reviewer_client.get(queue_url() + "?status=decided").content.decode()
    open_rows = reviewer_client.get(queue_url())

    assert "by rita" in decided
    assert all(r.current_decisions == () for r in open_rows.context["page"].rows)
    assert "by rita" not in open_rows.content.decode()


# --- cross-check diffs --------------------------------------------------------------------


def _sequence_matcher_diff(a: str, b: str) -> tuple[str, str]:
    """diff_text as it was: SequenceMatcher over the whole values, every piece escaped."""
    if " " in a.strip() or " " in b.strip():
        ta, tb = re.findall(r"\s+|[^\s]+", a), re.findall(r"\s+|[^\s]+", b)
    else:
        ta, tb = list(a), list(b)
    left, right = [], []
    for op, i1, i2, j1, j2 in SequenceMatcher(None, ta, tb, autojunk=False).get_opcodes():
        x, y = escape("".join(ta[i1:i2])), escape("".join(tb[j1:j2]))
        if op == "equal":
            left.append(x)
            right.append(y)
            continue
        if x:
            left.append(f"<del>{x}</del>")
        if y:
            right.append(f"<ins>{y}</ins>")
    return "".join(left), "".join(right)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("D. No. 14-4-16, Kapu Street, NELLORE", "D. No. 14-4-16, Kapu St"),
        ("8655126210", "8655126219"),
        ("6690", "6909"),
        ("the 12 MG No. 14-4-16", "the 12 MG Plot No. 14-4-16"),
        ("<b>A & B</b>", "<b>A & C</b>"),
        ("  x  ", "x"),
        ("", "x"),
        ("RAVI KUMAR", "RAVI KUMAR"),
        ("", ""),
    ],
)
def test_short_values_are_diffed_exactly_as_before(a, b):
    assert diff_text(a, b) == _sequence_matcher_diff(a, b)


def test_equal_values_are_not_diffed(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("SequenceMatcher run on equal values")

    monkeypatch.setattr(diff, "SequenceMatcher", fail)

    assert diff_pair("A & B", "A & B") == ("A &amp; B", "A &amp; B")
    assert diff_pair(["36732632"], 36732632) == ("36732632", "36732632")


def test_long_values_keep_their_common_ends_and_mark_the_middle():
    head, tail = "word " * 400, " end " * 200
    source, target = diff_pair(f"{head}old value{tail}", f"{head}new value{tail}")

    assert source == f"{head}<del>old</del> value{tail}"
    assert target == f"{head}<ins>new</ins> value{tail}"


def test_long_values_that_differ_throughout_are_marked_whole():
    a, b = "1" * (diff.MAX_TOKENS + 50), "2" * (diff.MAX_TOKENS + 50)

    assert diff_text(a, b) == (f"<del>{a}</del>", f"<ins>{b}</ins>")
    assert diff_text("<" + a, "<" + b) == (f"&lt;<del>{a}</del>", f"&lt;<ins>{b}</ins>")


class _Check:
    def __init__(self, source_value, target_value, *, source=("DELIVERY_ORDER", "dealer_address"),
                 target=("INVOICE", "dealer_address")):  # fmt: skip
        self.source_doc, self.source_field_name = source
        self.target_doc, self.target_field_name = target
        self.source_value, self.target_value = source_value, target_value


def test_a_page_diffs_each_distinct_pair_once(monkeypatch):
    calls = []
    real = diff_text

    def counting(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr("atlas_review.review.templatetags.review_tags.diff_text", counting)
    template = engines["django"].from_string(
        "{% load review_tags %}{% for c in checks %}{% pair_diff c as pair %}"
        "[{{ pair.source }}|{{ pair.target }}]{% endfor %}"
    )
    checks = [_Check("12 MG Road", "12 M.G. Rd"), _Check("12 MG Road", "12 M.G. Rd"),
              _Check("A", "B"), _Check("12 MG Road", "12 M.G. Rd")]  # fmt: skip

    html = template.render({"checks": checks})

    assert calls == [("12 MG Road", "12 M.G. Rd"), ("A", "B")]
    assert html.count("[12 <del>MG</del> <del>Road</del>|12 <ins>M.G.</ins> <ins>Rd</ins>]") == 3
    assert "[<del>A</del>|<ins>B</ins>]" in html
    template.render({"checks": checks[:1]})  # a new render, a new cache
    assert len(calls) == 3


def test_the_cached_diff_is_of_the_masked_values():
    aadhaar, other = "234123412346", "234123419999"
    template = engines["django"].from_string(
        "{% load review_tags %}{% for c in checks %}{% pair_diff c as pair %}"
        "[{{ pair.0 }}|{{ pair.1 }}]{% endfor %}"
    )
    checks = [
        _Check(aadhaar, other, source=("AADHAAR", "aadhaar_number"), target=("KYC", "id_number")),
        _Check(aadhaar, other, source=("AADHAAR", "aadhaar_number"), target=("KYC", "id_number")),
    ]

    html = template.render({"checks": checks})

    assert aadhaar[:8] not in html
    assert html.count("[XXXX XXXX <del>2346</del>|XXXX XXXX <ins>9999</ins>]") == 2


@pytest.mark.django_db
def test_the_cross_check_queue_shows_each_pair_with_its_differences(reviewer_client):
    make_flow([document()], [check("DEALER_ADDRESS", "12 MG Road", "12 M.G. Rd", 55)])
    make_flow([document()], [check("DEALER_ADDRESS", "12 MG Road", "12 M.G. Rd", 55)])
    make_flow([document()], [check("CUSTOMER_NAME", "RAVI KUMAR", "RAVI KUMAR", 40)])

    html = reviewer_client.get(queue_url("checks")).content.decode()

    assert html.count('<span class="diff">12 <del>MG</del> <del>Road</del></span>') == 2
    assert html.count('<span class="diff">12 <ins>M.G.</ins> <ins>Rd</ins></span>') == 2
    assert html.count('<span class="diff">RAVI KUMAR</span>') == 2
