"""The overview page: who may see it, the htmx refresh, CSV downloads and its query count."""

import csv
import io
import re
from datetime import timedelta

import pytest
from django.urls import reverse

from atlas_review.overview import figures
from atlas_review.overview.models import QueueSla
from tests.conftest import make_user
from tests.overview.conftest import build_floor
from tests.review.builders import document, make_flow

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true", "HTTP_HX_TARGET": "figures"}
# Session, user, the user's and the group's permissions, the SLAs, the thresholds in force,
# then one query per chart.
PAGE_QUERIES = 6 + len(figures.CHARTS)


def url(floor=None, **params) -> str:
    if floor is not None:
        params.setdefault("date_from", (floor.today - timedelta(days=6)).isoformat())
        params.setdefault("date_to", floor.today.isoformat())
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return reverse("overview:page") + (f"?{query}" if query else "")


def read_csv(response) -> list[list[str]]:
    return list(csv.reader(io.StringIO(response.content.decode())))


# --- who may see it -------------------------------------------------------------------------


def test_anonymous_users_are_sent_to_log_in(client):
    response = client.get(url())

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


@pytest.mark.parametrize("role", ["reviewer", "auditor"])
def test_reviewers_and_auditors_may_not_see_it(client, role):
    # The overview shows each reviewer's output: it is the team leads' page.
    client.force_login(make_user(f"someone-{role}", role))

    assert client.get(url()).status_code == 403
    assert client.get(url(format="csv", chart="decisions")).status_code == 403
    assert b"Overview</a>" not in client.get(reverse("flows:list")).content


def test_supervisors_see_every_chart_with_its_numbers_and_csv(supervisor_client, floor):
    response = supervisor_client.get(url(floor))

    assert response.status_code == 200
    html = response.content.decode()
    for name in figures.CHARTS:
        assert f'id="figure-{name}"' in html
        assert f"format=csv&amp;chart={name}" in html
    assert html.count("<svg") == len(figures.CHARTS)
    assert html.count("<details>") == len(figures.CHARTS)
    assert "3 open, 2 past the SLA" in html
    assert "At 0.8: 5 of 10 fields (all fields) would go to review" in html
    assert '<td class="num">1 d 6 h</td>' in html  # the field queue's oldest item
    assert 'href="/overview/"' in html  # the nav link


def test_the_page_keeps_to_the_content_security_policy(supervisor_client, floor):
    html = supervisor_client.get(url(floor)).content.decode()

    assert "style=" not in html
    assert "<script>" not in html and "<style" not in html
    assert 'href="/static/css/overview.css"' in html


# --- htmx and filters -----------------------------------------------------------------------


def test_htmx_gets_only_the_figures(supervisor_client, floor):
    response = supervisor_client.get(url(floor, product_type="LOAN_APP"), **HTMX)

    assert response.status_code == 200
    html = response.content.decode()
    assert html.lstrip().startswith('<div id="figures"')
    assert "<html" not in html and 'id="overview-form"' not in html
    assert "product LOAN_APP" in html
    assert "HX-Request" in response["Vary"]


def test_the_form_refreshes_the_figures_and_keeps_its_filters_in_the_url(supervisor_client, floor):
    html = supervisor_client.get(url(floor, product_type="LOAN_APP")).content.decode()

    assert 'hx-get="/overview/"' in html and 'hx-target="#figures"' in html
    assert 'hx-push-url="true"' in html
    # Pickers refresh at once; typed values on Enter (a refresh on blur would swap the
    # threshold box away while someone types in it).
    assert 'hx-trigger="submit"' in html
    for picker in ('name="date_from"', 'name="date_to"', 'name="t_scope"'):
        assert re.search(picker + r'[^>]*hx-trigger="change" hx-include="#overview-form"', html)
    assert 'name="product_type" value="LOAN_APP"' in html
    assert f'name="date_from" value="{(floor.today - timedelta(days=6)).isoformat()}"' in html
    # The CSV links carry the same filters.
    assert "product_type=LOAN_APP&amp;t_scope=confidence&amp;format=csv&amp;chart=errors" in html


def test_a_threshold_tried_shows_in_the_form_and_the_verdict(supervisor_client, floor):
    html = supervisor_client.get(url(floor, t_scope="similarity", t_similarity="96")).content.decode()  # fmt: skip

    assert 'name="t_similarity" value="96"' in html
    assert 'name="t_confidence"' not in html
    assert "At 96: 3 of 3 cross-checks (all cross-checks) would go to review; 2 do" in html


# --- CSV ----------------------------------------------------------------------------------


def test_a_chart_downloads_as_csv_with_its_numbers(supervisor_client, floor):
    response = supervisor_client.get(url(floor, format="csv", chart="decisions"))

    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == (
        f'attachment; filename="overview-decisions-{floor.today - timedelta(days=6)}-{floor.today}.csv"'
    )
    assert read_csv(response) == [
        ["reviewer", "day", "decisions"],
        ["riya", floor.day1.isoformat(), "4"],
        ["otto", floor.day2.isoformat(), "2"],
    ]


def test_csv_numbers_stay_numbers(supervisor_client, floor):
    rows = read_csv(supervisor_client.get(url(floor, format="csv", chart="errors")))
    queues = read_csv(supervisor_client.get(url(floor, format="csv", chart="queues")))

    assert rows == [
        ["error_code", "documents", "share"],
        ["BLURRED", "1", "0.2"],
        ["UNRECOGNISED", "1", "0.2"],
        ["(no error)", "3", "0.6"],
    ]
    assert queues[0] == ["queue", "open", "oldest_age_seconds", "p50_age_seconds", "sla_hours", "past_sla"]  # fmt: skip
    assert queues[2] == ["Cross-checks", "0", "", "", "24", "0"]
    assert float(queues[1][2]) == pytest.approx(30 * 3600, abs=5)


def test_csv_cells_a_spreadsheet_would_run_are_neutralised(supervisor_client, db):
    make_flow([document("", error_code='=HYPERLINK("http://evil.example","x")'),
               document("", error_code="@SUM(A1)"), document("", error_code="-2+3")])  # fmt: skip

    rows = read_csv(supervisor_client.get(url(format="csv", chart="errors")))

    codes = {row[0] for row in rows[1:]}
    assert codes == {'\'=HYPERLINK("http://evil.example","x")', "'@SUM(A1)", "'-2+3", "(no error)"}


def test_what_atlas_sent_is_escaped_in_charts_and_tables(supervisor_client, db):
    make_flow([document("", error_code="<img src=x onerror=alert(1)>")])

    html = supervisor_client.get(url()).content.decode()

    assert "<img src=x" not in html
    # In the bar's label, its tooltip and the table under the chart.
    assert html.count("&lt;img src=x onerror=alert(1)&gt;") >= 3


def test_an_unknown_chart_is_not_found(supervisor_client):
    assert supervisor_client.get(url(format="csv", chart="nope")).status_code == 404


def test_a_csv_costs_one_query_for_its_chart(supervisor_client, floor, django_assert_num_queries):
    # Session, user, two permission look-ups, then the chart.
    with django_assert_num_queries(5):
        supervisor_client.get(url(floor, format="csv", chart="decisions"))


# --- cost ---------------------------------------------------------------------------------


def test_the_page_costs_the_same_queries_however_much_data(
    supervisor_client, floor, monkeypatch, django_assert_num_queries
):
    with django_assert_num_queries(PAGE_QUERIES):
        small = supervisor_client.get(url(floor))
    # Three times the flows, reviewers, decisions and claims.
    build_floor(monkeypatch, prefix="second-")
    build_floor(monkeypatch, prefix="third-")
    with django_assert_num_queries(PAGE_QUERIES):
        large = supervisor_client.get(url(floor))
    with django_assert_num_queries(PAGE_QUERIES):
        supervisor_client.get(url(floor), **HTMX)

    assert "3 open, 2 past the SLA" in small.content.decode()
    assert "9 open, 6 past the SLA" in large.content.decode()
    assert "18 decisions by 6 reviewers" in large.content.decode()


def test_history_comes_from_the_cache_for_a_while_and_what_is_live_never_does(
    supervisor_client, floor, settings, monkeypatch, django_assert_num_queries
):
    settings.OVERVIEW_CACHE_SECONDS = 60
    supervisor_client.get(url(floor))
    build_floor(monkeypatch, prefix="later-")  # more work done since

    # Session, user, permissions, the SLAs, the two live charts; no history query.
    with django_assert_num_queries(7):
        html = supervisor_client.get(url(floor)).content.decode()
    assert "6 open, 4 past the SLA" in html  # live: the new flow's items count
    assert "6 decisions by 2 reviewers" in html  # history: as computed a moment ago
    assert html.count('class="sub cached"') == len(figures.CHARTS) - len(figures.LIVE)
    # The CSV has the numbers the chart showed.
    assert len(read_csv(supervisor_client.get(url(floor, format="csv", chart="decisions")))) == 3

    # Another threshold is another question: only its chart is computed (and the
    # thresholds in force read).
    with django_assert_num_queries(9):
        html = supervisor_client.get(url(floor, t_confidence="0.9")).content.decode()
    assert "At 0.9: 14 of 20 fields" in html
    # Other filters too.
    html = supervisor_client.get(url(floor, product_type="PROD_CDL")).content.decode()
    assert "12 decisions by 4 reviewers" in html


def test_administrators_set_the_sla_per_queue_in_the_admin(client, db, settings):
    settings.REVIEW_SLA_HOURS = 12
    client.force_login(make_user("admin", is_staff=True, is_superuser=True))

    response = client.post(
        reverse("admin:overview_queuesla_add"), {"queue": "checks", "hours": "4"}, follow=True
    )

    assert response.status_code == 200
    assert QueueSla.hours_by_queue() == {"fields": 12, "checks": 4, "exceptions": 12, "qa": 12}
