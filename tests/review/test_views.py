from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from atlas_review.review import queries, services
from atlas_review.review.models import (
    Decision,
    DecisionEvent,
    FlowReview,
    ItemStatus,
    ReasonCode,
    ReviewItem,
)
from tests.conftest import make_user
from tests.review.builders import PLAIN, check, document, make_flow, three_field_flow

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


def queue_url(queue="fields", **params):
    url = reverse("review:queue", args=[queue])
    return url + ("?" + "&".join(f"{k}={v}" for k, v in params.items()) if params else "")


def flow_url(flow, **params):
    url = reverse("review:flow", args=[flow.pk])
    return url + ("?" + "&".join(f"{k}={v}" for k, v in params.items()) if params else "")


def decide_url(item):
    return reverse("review:decide", args=[item.flow_id, item.pk])


def check_flow(similarity=60):
    return make_flow(
        [document()],
        [check("DEALER_ADDRESS", "D. No. 14-4-16, Kapu Street, NELLORE", "D. No. 14-4-16, Kapu St", similarity)],
    )  # fmt: skip


def other_client(client_class, username="otto", *groups):
    c = client_class()
    c.force_login(make_user(username, *(groups or ("reviewer",))))
    return c


# --- queues -------------------------------------------------------------------------------


def test_the_field_queue_lists_items_with_their_reason(reviewer_client):
    flow = three_field_flow()

    response = reviewer_client.get(queue_url())

    assert response.status_code == 200
    rows = response.context["page"].rows
    assert [r.name for r in rows] == ["account_holder", "account_number", "ifsc"]
    assert b"confidence 0.42 &lt; 0.80 for BANK_STATEMENT.account_holder" in response.content
    assert flow.application_id.encode() in response.content
    assert b'id="queue-filters"' in response.content


def test_the_htmx_request_gets_only_the_rows(reviewer_client):
    three_field_flow()

    response = reviewer_client.get(queue_url(), **HTMX)

    assert response.status_code == 200
    assert response.content.lstrip().startswith(b'<section id="queue-rows"')
    assert b"<html" not in response.content
    assert "HX-Request" in response["Vary"]


def test_the_cross_check_queue_shows_both_values_with_differences(reviewer_client):
    check_flow()

    response = reviewer_client.get(queue_url("checks"))

    html = response.content.decode()
    assert "similarity 60 &lt; 90 (high priority)" in html
    # Words only in the source are struck, words only in the target inserted.
    assert "D. No. 14-4-16, Kapu <del>Street, NELLORE</del>" in html
    assert "D. No. 14-4-16, Kapu <ins>St</ins>" in html


def test_the_exceptions_queue_shows_error_codes(reviewer_client):
    make_flow([document("", error_code="UNRECOGNISED", error_reason="document not in list")])

    response = reviewer_client.get(queue_url("exceptions"))

    assert b"<strong>UNRECOGNISED</strong> document not in list" in response.content


def test_an_unknown_queue_is_not_found(reviewer_client):
    assert reviewer_client.get(queue_url("nope")).status_code == 404


def test_filters_stay_in_the_url_and_narrow_the_queue(reviewer_client, supervisor):
    three_field_flow(product_type="PROD_CDL")
    other = make_flow([document("PAYSLIP", {"name": ("A", 0.1)})], product_type="LOAN_APP")
    services.claim(other.pk, supervisor)

    def names(**params):
        page = reviewer_client.get(queue_url(**params)).context["page"]
        return sorted(r.subject for r in page.rows)

    assert names(document_type="PAYSLIP") == ["PAYSLIP.name"]
    assert names(product_type="LOAN_APP") == ["PAYSLIP.name"]
    assert names(name="ifsc") == [f"{PLAIN}.ifsc"]
    assert names(assignee="unclaimed") == [
        f"{PLAIN}.account_holder",
        f"{PLAIN}.account_number",
        f"{PLAIN}.ifsc",
    ]
    assert names(age="1d") == []
    ReviewItem.objects.update(created_at=timezone.now() - timedelta(days=2))
    assert len(names(age="1d")) == 4
    response = reviewer_client.get(queue_url(document_type="PAYSLIP", status="bogus"))
    assert response.context["filters"].status == "open", "unknown values fall back"
    assert b'value="PAYSLIP"' in response.content


def test_reviewers_see_their_own_decided_items_supervisors_everyone(
    reviewer, reviewer_client, client
):
    flow = three_field_flow()
    services.claim(flow.pk, reviewer)
    services.decide(ReviewItem.objects.get(name="ifsc"), reviewer, "accept")
    otto_client = other_client(type(client))

    mine = reviewer_client.get(queue_url(status="decided")).context["page"].rows
    theirs = otto_client.get(queue_url(status="decided")).context["page"].rows
    everyone = (
        other_client(type(client), "sam2", "supervisor")
        .get(queue_url(status="decided"))
        .context["page"]
        .rows
    )

    assert [r.name for r in mine] == ["ifsc"]
    assert theirs == []
    assert [r.name for r in everyone] == ["ifsc"]


def test_supervisors_filter_by_who_holds_the_flow(client, reviewer):
    held, _free = three_field_flow(), three_field_flow()
    services.claim(held.pk, reviewer)
    sam = other_client(type(client), "sam", "supervisor")

    page = sam.get(queue_url()).content.decode()
    narrowed = sam.get(queue_url(assignee="rita")).context["page"].rows

    assert '<option value="rita" >rita</option>' in page
    assert {r.flow_id for r in narrowed} == {held.pk}


def test_pages_follow_each_other_without_gaps_or_repeats(reviewer_client, monkeypatch):
    monkeypatch.setattr(queries, "PAGE_SIZE", 4)
    for _ in range(4):
        three_field_flow()
    ReviewItem.objects.filter(pk__in=ReviewItem.objects.order_by("id")[:3]).update(
        created_at=timezone.now() - timedelta(hours=1)
    )  # some older ones, so order is by age, not id
    expected = list(ReviewItem.objects.open().queue_order().values_list("pk", flat=True))

    seen, url = [], queue_url()
    while url:
        response = reviewer_client.get(url)
        seen += [r.pk for r in response.context["page"].rows]
        url = (queue_url() + response.context["next_url"]) if response.context["next_url"] else ""

    assert seen == expected and len(seen) == 12


def test_a_count_past_the_cap_reads_as_more_than(reviewer_client, monkeypatch):
    monkeypatch.setattr(queries, "COUNT_CAP", 2)
    three_field_flow()

    response = reviewer_client.get(queue_url())

    assert response.context["page"].count_capped
    assert b"More than 2 items" in response.content


def test_the_queue_costs_the_same_queries_for_more_rows(
    reviewer, reviewer_client, django_assert_num_queries
):
    flow = three_field_flow()
    services.claim(flow.pk, reviewer)
    services.decide(ReviewItem.objects.get(flow=flow, name="ifsc"), reviewer, "accept")
    # session, user, user perms, group perms, rows (one join), capped count, tab counts
    with django_assert_num_queries(7):
        reviewer_client.get(queue_url())
    for _ in range(8):
        three_field_flow()
    with django_assert_num_queries(7):
        response = reviewer_client.get(queue_url())
    assert len(response.context["page"].rows) == 26
    # The htmx partial skips the tab counts.
    with django_assert_num_queries(6):
        reviewer_client.get(queue_url("checks"), **HTMX)
    # Decided items add their decisions, in one query.
    with django_assert_num_queries(8):
        reviewer_client.get(queue_url(status="decided"))


def test_the_nav_counts_are_their_own_small_request(reviewer_client, django_assert_num_queries):
    three_field_flow()
    check_flow()

    # session, user, user perms, group perms, the four capped counts in one query
    with django_assert_num_queries(5):
        response = reviewer_client.get(reverse("review:nav_counts"))

    html = response.content.decode()
    assert 'Fields <span class="count">3</span>' in html
    assert 'Cross-checks <span class="count">1</span>' in html
    page = reviewer_client.get(reverse("flows:list")).content.decode()
    assert 'hx-get="/review/counts/"' in page


def test_start_reviewing_claims_the_first_flow_nobody_holds(reviewer, reviewer_client):
    flow = three_field_flow()

    response = reviewer_client.post(reverse("review:next", args=["fields"]))

    assert response.status_code == 302
    assert response.url == flow_url(flow, queue="fields")
    assert FlowReview.objects.get(pk=flow.pk).claimed_by == reviewer


def test_start_reviewing_an_empty_queue_says_so(reviewer_client):
    response = reviewer_client.post(reverse("review:next", args=["qa"]), follow=True)

    assert b"Nothing left in this queue" in response.content


# --- the review page ------------------------------------------------------------------------


def test_opening_a_flow_claims_it_and_shows_everything_to_decide(reviewer, reviewer_client):
    flow = make_flow(
        [
            document(
                fields={"account_holder": ("Pashangh", 0.42), "bank_name": ("HDFC", 0.97)},
                document_id="S1",
            ),
            document("", error_code="UNRECOGNISED", error_reason="document not in list"),
        ],
        [check("DEALER_ADDRESS", "12 MG Road", "12 M.G. Road", 50)],
        file_url="https://files.example.com/statement.png",
    )

    response = reviewer_client.get(flow_url(flow))

    assert response.status_code == 200
    assert FlowReview.objects.get(pk=flow.pk).claimed_by == reviewer
    html = response.content.decode()
    assert "You are reviewing this flow" in html
    subjects = [i.subject for i in response.context["decision_items"]]
    assert subjects == [
        "DEALER_ADDRESS",  # high priority first
        "Unrecognised document",
        f"{PLAIN}.account_holder",
    ]
    assert html.count('data-action="accept"') == 3
    assert html.count('data-input="correct"') == 2, "an exception is accepted or rejected"
    assert '<img src="https://files.example.com/statement.png"' in html
    assert "Illegible" in html or "illegible" in html  # reason codes offered


def test_the_review_page_costs_the_same_queries_for_more_items(
    reviewer_client, django_assert_num_queries
):
    small = three_field_flow()
    big = make_flow(
        [
            document(fields={f"f{i}": (f"v{i}", 0.1) for i in range(15)}),
            document("PAN", {"name": ("A", 0.2), "pan_number": ("ABCDE1234F", 0.3)}),
        ],
        [check(f"C{i}", "a b", "a c", 50) for i in range(5)],
    )
    # session, user, user perms, group perms, flow+review, claim, items, decisions, the
    # items' check results, documents, fields, their check results, checks, reason codes,
    # history (decision events), reveals
    with django_assert_num_queries(16):
        reviewer_client.get(flow_url(small))
    with django_assert_num_queries(16):
        response = reviewer_client.get(flow_url(big))
    assert len(response.context["decision_items"]) == 22


def test_a_second_agent_sees_who_holds_the_flow_and_cannot_decide(reviewer_client, client):
    flow = three_field_flow()
    reviewer_client.get(flow_url(flow))
    otto = other_client(type(client))

    response = otto.get(flow_url(flow))

    html = response.content.decode()
    assert "rita is reviewing this flow" in html
    assert 'data-action="accept"' not in html
    item = ReviewItem.objects.filter(flow=flow).first()
    refused = otto.post(decide_url(item), {"action": "accept"}, **HTMX)
    assert refused.status_code == 409
    assert b"rita is reviewing this flow" in refused.content
    assert not Decision.objects.exists()


def test_a_supervisor_can_look_without_taking_the_flow(client):
    flow = three_field_flow()
    sam = other_client(type(client), "sam", "supervisor")

    sam.get(flow_url(flow, view=1))

    assert FlowReview.objects.get(pk=flow.pk).claimed_by is None


# --- deciding through htmx -------------------------------------------------------------------


def test_a_decision_saves_through_htmx_and_redraws_its_item(reviewer, reviewer_client):
    flow = three_field_flow()
    reviewer_client.get(flow_url(flow))
    item = ReviewItem.objects.get(flow=flow, name="account_number")

    response = reviewer_client.post(
        decide_url(item), {"action": "correct", "corrected_value": "50100234568"}, **HTMX
    )

    assert response.status_code == 200
    html = response.content.decode()
    assert html.lstrip().startswith('<article class="item card status-decided decided"')
    assert '<strong class="corrected">50100234568</strong>' in html
    assert 'name="version" value="1"' in html, "a change names the version it saw"
    assert 'id="close-panel"' in html and 'hx-swap-oob="true"' in html
    assert "2 still to decide" in html
    assert Decision.objects.get().corrected_value == "50100234568"


def test_a_reject_needs_a_reason_and_says_so(reviewer_client):
    flow = three_field_flow()
    reviewer_client.get(flow_url(flow))
    item = ReviewItem.objects.get(flow=flow, name="ifsc")

    response = reviewer_client.post(decide_url(item), {"action": "reject"}, **HTMX)

    assert response.status_code == 400
    assert b"Choose a reason for the rejection." in response.content
    reason = ReasonCode.objects.get_or_create(code="mismatch", defaults={"label": "Mismatch"})[0]
    ok = reviewer_client.post(
        decide_url(item), {"action": "reject", "reason": reason.pk, "comment": "IFSC of another branch"}, **HTMX
    )  # fmt: skip
    assert ok.status_code == 200
    assert Decision.objects.get().reason == reason


def test_a_stale_change_gets_a_clear_conflict(reviewer_client):
    flow = three_field_flow()
    reviewer_client.get(flow_url(flow))
    item = ReviewItem.objects.get(flow=flow, name="ifsc")
    reviewer_client.post(decide_url(item), {"action": "accept"}, **HTMX)

    again = reviewer_client.post(decide_url(item), {"action": "accept", "version": "0"}, **HTMX)

    assert again.status_code == 409
    assert b"You already decided this item (in another window)" in again.content
    assert Decision.objects.count() == 1


def test_without_htmx_a_decision_redirects_back_to_the_item(reviewer_client):
    flow = three_field_flow()
    reviewer_client.get(flow_url(flow))
    item = ReviewItem.objects.get(flow=flow, name="ifsc")

    response = reviewer_client.post(decide_url(item), {"action": "accept", "queue": "fields"})

    assert response.status_code == 302
    assert response.url == flow_url(flow, queue="fields") + f"#item-{item.pk}"


def test_deciding_costs_the_same_queries_for_more_items(reviewer_client, django_assert_num_queries):
    small = three_field_flow()
    big = make_flow([document(fields={f"f{i}": (f"v{i}", 0.1) for i in range(20)})])
    for flow in (small, big):
        reviewer_client.get(flow_url(flow))
        item = ReviewItem.objects.filter(flow=flow).first()
        # session, user, 2 perms, item; the transaction (2 savepoints in tests): claim
        # renewal, item re-read, current decision, insert (in its own savepoint), item
        # status, event; then the redraw: flow+review, items, decisions, the item's check
        # results, reason codes.
        with django_assert_num_queries(20):
            reviewer_client.post(decide_url(item), {"action": "accept"}, **HTMX)


# --- closing, skipping, releasing, reopening -------------------------------------------------


def _decide_everything(client, flow):
    client.get(flow_url(flow))
    for item in ReviewItem.objects.filter(flow=flow).needing_decision():
        client.post(decide_url(item), {"action": "accept"}, **HTMX)


def test_closing_opens_the_next_flow_claimed(reviewer, reviewer_client):
    first, second = three_field_flow(), three_field_flow()
    _decide_everything(reviewer_client, first)

    response = reviewer_client.post(
        reverse("review:close", args=[first.pk]), {"outcome": "approved", "queue": "fields"}
    )

    assert response.status_code == 302
    assert response.url == flow_url(second, queue="fields")
    assert FlowReview.objects.get(pk=second.pk).claimed_by == reviewer
    assert FlowReview.objects.get(pk=first.pk).outcome == "approved"


def test_closing_through_htmx_redirects_the_browser(reviewer_client):
    flow = three_field_flow()
    _decide_everything(reviewer_client, flow)

    response = reviewer_client.post(
        reverse("review:close", args=[flow.pk]), {"outcome": "rejected"}, **HTMX
    )

    assert response.status_code == 200
    assert response["HX-Redirect"] == queue_url(), "nothing left: back to the queue"


def test_closing_too_early_says_what_is_missing(reviewer_client):
    flow = three_field_flow()
    reviewer_client.get(flow_url(flow))

    response = reviewer_client.post(
        reverse("review:close", args=[flow.pk]), {"outcome": "approved"}, follow=True
    )

    assert b"3 items still need a decision." in response.content
    assert FlowReview.objects.get(pk=flow.pk).closed_at is None


def test_the_close_panel_offers_the_outcome_once_all_is_decided(reviewer_client):
    flow = three_field_flow()
    _decide_everything(reviewer_client, flow)

    html = reviewer_client.get(flow_url(flow)).content.decode()

    assert 'id="close-form"' in html
    assert "3 accepted" in html


def test_skip_releases_the_flow_and_opens_the_next(reviewer, reviewer_client):
    first, second = three_field_flow(), three_field_flow()
    reviewer_client.get(flow_url(first))

    response = reviewer_client.post(reverse("review:skip", args=[first.pk]))

    assert response.url == flow_url(second, queue="fields")
    assert FlowReview.objects.get(pk=first.pk).claimed_by is None


def test_a_supervisor_releases_a_claim(reviewer_client, client):
    flow = three_field_flow()
    reviewer_client.get(flow_url(flow))
    sam = other_client(type(client), "sam", "supervisor")
    page = sam.get(flow_url(flow)).content.decode()
    assert "Release rita's claim" in page

    response = sam.post(reverse("review:release", args=[flow.pk]), follow=True)

    assert b"Claim released" in response.content
    assert FlowReview.objects.get(pk=flow.pk).claimed_by is None, "looking did not re-claim"


def test_a_supervisor_reopens_a_closed_flow(reviewer_client, client):
    flow = three_field_flow()
    _decide_everything(reviewer_client, flow)
    reviewer_client.post(reverse("review:close", args=[flow.pk]), {"outcome": "approved"})
    sam = other_client(type(client), "sam", "supervisor")

    response = sam.post(
        reverse("review:reopen", args=[flow.pk]), {"comment": "recheck IFSC"}, follow=True
    )

    assert b"Flow reopened" in response.content
    assert ReviewItem.objects.get(flow=flow, kind="reopened").status == ItemStatus.OPEN
    assert DecisionEvent.objects.filter(flow=flow, kind="reopened").count() == 1


# --- permissions: every view x every role -----------------------------------------------------

ROLES = ["anonymous", "none", "reviewer", "supervisor", "auditor"]


@pytest.fixture
def world(db):
    flow = three_field_flow()
    item = ReviewItem.objects.filter(flow=flow).first()
    return flow, item


def _views(flow, item):
    # (name, method, url, data, roles allowed)
    everyone = {"reviewer", "supervisor", "auditor"}
    deciders = {"reviewer", "supervisor"}
    return [
        ("home", "get", reverse("review:home"), None, everyone | {"none"}),
        ("queue", "get", queue_url(), None, everyone),
        ("nav_counts", "get", reverse("review:nav_counts"), None, everyone),
        ("next", "post", reverse("review:next", args=["fields"]), {}, deciders),
        ("flow", "get", flow_url(flow), None, everyone),
        ("decide", "post", decide_url(item), {"action": "accept"}, deciders),
        ("close", "post", reverse("review:close", args=[flow.pk]), {"outcome": "approved"}, deciders),
        ("skip", "post", reverse("review:skip", args=[flow.pk]), {}, deciders),
        ("release", "post", reverse("review:release", args=[flow.pk]), {}, {"supervisor"}),
        ("reopen", "post", reverse("review:reopen", args=[flow.pk]), {}, {"supervisor"}),
    ]  # fmt: skip


@pytest.mark.parametrize("role", ROLES)
def test_every_view_checks_the_role(client, world, role):
    flow, item = world
    if role != "anonymous":
        groups = () if role == "none" else (role,)
        client.force_login(make_user(f"user-{role}", *groups))
    for name, method, url, data, allowed in _views(flow, item):
        response = (
            getattr(client, method)(url, data) if data is not None else getattr(client, method)(url)
        )
        if role == "anonymous":
            assert response.status_code == 302, name
            assert response.url.startswith(reverse("login")), name
        elif role in allowed:
            assert response.status_code in (200, 302, 400, 409), (name, response.status_code)
        else:
            assert response.status_code == 403, (name, role, response.status_code)


def test_an_auditor_reads_the_review_page_without_claiming_or_forms(client, world):
    flow, _item = world
    client.force_login(make_user("aud", "auditor"))

    html = client.get(flow_url(flow)).content.decode()

    assert FlowReview.objects.get(pk=flow.pk).claimed_by is None
    assert 'data-action="accept"' not in html and 'id="close-form"' not in html
    assert 'data-item="' in html


def test_get_only_views_refuse_posts(reviewer_client, world):
    flow, _item = world
    assert reviewer_client.post(queue_url()).status_code == 405
    assert reviewer_client.post(flow_url(flow)).status_code == 405
    assert reviewer_client.get(reverse("review:close", args=[flow.pk])).status_code == 405
