"""The checks app wired into review: failed checks and reuse alerts become queue items,
personal data stays masked on every review page, and flagging stays cheap at ingest."""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from atlas_review.atlas.payloads import parse_callback_data
from atlas_review.checks import services as checks_services
from atlas_review.checks.models import RevealEvent
from atlas_review.flows import ingest
from atlas_review.flows.ingest import results_applied, results_created
from atlas_review.flows.models import Flow
from atlas_review.review import flagging, services
from atlas_review.review.models import (
    DecisionEvent,
    FlowReview,
    ItemStatus,
    Kind,
    Priority,
    Queue,
    ReviewItem,
)
from tests.checks.conftest import (
    customer_documents,
    field_of,
    frozen_today,  # noqa: F401 (a fixture, used through pytestmark)
    ingest_flow,
    payload_for,
    valid_aadhaar,
    valid_imei,
    wrong_check_digit,
)

# Dates are judged against a fixed day (tests/checks/conftest.py).
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("frozen_today")]

AADHAAR = valid_aadhaar("45678901234")
MASKED = f"XXXX XXXX {AADHAAR[-4:]}"
HTMX = {"HTTP_HX_REQUEST": "true"}


def customer(n: int, **overrides) -> list:
    """An unrelated customer's documents: every identifier distinct from other customers'."""
    values = {
        "aadhaar": valid_aadhaar(f"3{n:010d}"),
        "pan": f"ABCPE{n:04d}F",
        "imei": valid_imei(f"35686800{n:06d}"),
        "invoice_number": f"INV-{n}",
    }
    documents = customer_documents(**{**values, **overrides})
    # The delivery order's customer name is a seeded mandatory field.
    documents[4][1]["customer_name"] = "Asha Verma"
    return documents


def items(flow, **filters) -> dict[str, ReviewItem]:
    return {i.key: i for i in ReviewItem.objects.filter(flow=flow, **filters)}


def review_url(flow, **params) -> str:
    url = reverse("review:flow", args=[flow.pk])
    return url + ("?" + "&".join(f"{k}={v}" for k, v in params.items()) if params else "")


# --- failed checks -------------------------------------------------------------------------


def test_a_failed_check_flags_the_field_despite_high_confidence():
    flow = ingest_flow(customer(1, aadhaar=wrong_check_digit(AADHAAR)))  # all at 0.95
    aadhaar = field_of(flow, "AADHAAR", "aadhaar_number")

    (item,) = ReviewItem.objects.filter(flow=flow)

    assert (item.kind, item.queue, item.rule) == (Kind.VALIDATION, Queue.FIELDS, "validation")
    assert item.field_id == aadhaar.pk and item.score == 0.95
    assert item.reason == (
        "check failed, Aadhaar checksum: Aadhaar check digit (Verhoeff) does not match"
    )


def test_a_failed_check_and_a_low_score_on_one_field_are_one_item():
    payload = payload_for("flow-merge", customer(2, imei="12345"))
    payload["ocr_data"][1]["data"]["imei_number"]["confidence_score"] = 0.4
    flow = ingest_flow([], application_id="APP-M")  # created empty, then delivered
    payload["flow_uuid"] = flow.flow_uuid
    ingest.apply_callback_data(parse_callback_data(payload))

    item = ReviewItem.objects.get(flow=flow, document_type="IMEI_CLOSEUP_IMAGE")

    assert item.kind == Kind.VALIDATION, "the check leads: it is a certainty, the score a guess"
    assert item.reason == (
        "check failed, IMEI checksum: IMEI must have 15 digits (has 5); "
        "confidence 0.40 < 0.80 for IMEI_CLOSEUP_IMAGE.imei_number"
    )
    assert ReviewItem.objects.filter(flow=flow).count() == 2  # and the invoice's IMEI


def test_a_corrected_value_clears_the_validation_item():
    flow = ingest_flow(customer(3, aadhaar=wrong_check_digit(AADHAAR)))

    ingest_flow(customer(3, aadhaar=AADHAAR), flow=flow)

    (item,) = ReviewItem.objects.filter(flow=flow)
    assert item.status == ItemStatus.CLEARED


def test_rechecking_after_an_admin_change_re_flags_open_flows(
    admin_client, django_capture_on_commit_callbacks
):
    from atlas_review.checks.models import FieldCheck

    FieldCheck.objects.filter(check_code="aadhaar").update(active=False)
    flow = ingest_flow(customer(4, aadhaar=wrong_check_digit(AADHAAR)))
    assert not ReviewItem.objects.filter(flow=flow, kind=Kind.VALIDATION).exists()
    FieldCheck.objects.filter(check_code="aadhaar").update(active=True)

    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(
            reverse("admin:checks_fieldcheck_changelist"),
            {"action": "recheck", "_selected_action": [FieldCheck.objects.first().pk]},
        )

    item = ReviewItem.objects.get(flow=flow, status=ItemStatus.OPEN)
    assert (item.kind, item.name) == (Kind.VALIDATION, "aadhaar_number")


# --- reuse alerts ---------------------------------------------------------------------------


def test_a_reused_imei_is_a_high_priority_item_on_both_flows_linking_them():
    shared = valid_imei("35686800999999")
    first = ingest_flow(customer(1, imei=shared), application_id="APP-A")
    assert not items(first, kind=Kind.REUSE)

    second = ingest_flow(customer(2, imei=shared), application_id="APP-B")

    (on_second,) = items(second, kind=Kind.REUSE).values()
    (on_first,) = items(first, kind=Kind.REUSE).values()
    assert (on_second.key, on_first.key) == (f"reuse:imei:{first.pk}", f"reuse:imei:{second.pk}")
    assert flagging.reuse_partner(on_second.key) == first.pk
    for item in (on_first, on_second):
        assert (item.priority, item.queue, item.status) == (
            Priority.HIGH,
            Queue.EXCEPTIONS,
            ItemStatus.OPEN,
        )
    assert on_second.reason == f"IMEI {shared} also in application APP-A"
    assert on_first.reason == f"IMEI {shared} also in application APP-B"
    assert on_second.field == field_of(second, "INVOICE", "imei_number")


def test_aadhaar_reuse_is_masked_in_the_reason():
    ingest_flow(customer(1, aadhaar=AADHAAR), application_id="APP-A")
    second = ingest_flow(customer(2, aadhaar=AADHAAR), application_id="APP-B")

    (item,) = items(second, kind=Kind.REUSE).values()

    assert item.reason == f"Aadhaar {MASKED} also in application APP-A"


def test_a_flow_ingested_twice_is_not_a_reuse_of_itself():
    documents = customer(1)
    flow = ingest_flow(documents)
    ingest_flow(documents, flow=flow)  # the same payload again: a duplicate
    documents[0][1]["customer_name"] = "Asha V."  # a changed re-delivery
    ingest_flow(documents, flow=flow)

    assert not ReviewItem.objects.filter(kind=Kind.REUSE).exists()


def test_a_resubmitted_application_is_not_a_reuse():
    ingest_flow(customer(1), application_id="APP-A")
    again = ingest_flow(customer(1), application_id="APP-A")

    assert not items(again, kind=Kind.REUSE)


def test_a_corrected_identifier_clears_the_alert_on_both_flows():
    shared = valid_imei("35686800999999")
    first = ingest_flow(customer(1, imei=shared))
    second = ingest_flow(customer(2, imei=shared))

    ingest_flow(customer(2), flow=second)  # Atlas re-read the label

    for flow in (first, second):
        (item,) = items(flow, kind=Kind.REUSE).values()
        assert item.status == ItemStatus.CLEARED


def test_a_closed_flow_is_reopened_when_a_later_application_reuses_its_identifier(reviewer):
    shared = valid_imei("35686800999999")
    first = ingest_flow(customer(1, imei=shared), application_id="APP-A")
    services.claim(first.pk, reviewer)
    services.close(first.pk, reviewer, "approved")  # nothing was flagged on it

    ingest_flow(customer(2, imei=shared), application_id="APP-B")

    review = FlowReview.objects.get(pk=first.pk)
    assert review.closed_at is None
    event = DecisionEvent.objects.get(flow=first, kind="reopened")
    assert event.comment == (
        "Another application shares an identifier with this flow: "
        f"IMEI {shared} also in application APP-B"
    )


# --- what reviewers see --------------------------------------------------------------------


def test_the_review_page_links_a_reuse_alert_to_the_other_flow(reviewer_client):
    first = ingest_flow(customer(1, aadhaar=AADHAAR), application_id="APP-A")
    second = ingest_flow(customer(2, aadhaar=AADHAAR), application_id="APP-B")

    html = reviewer_client.get(review_url(second)).content.decode()

    assert f'href="{review_url(first)}?view=1">Open application APP-A' in html
    assert f"Aadhaar {MASKED} also in application APP-A" in html
    assert AADHAAR not in html
    assert FlowReview.objects.get(pk=first.pk).claimed_by is None, "the link only looks"
    queue = reviewer_client.get(reverse("review:queue", args=["exceptions"])).content.decode()
    assert f'href="{review_url(first)}?view=1"' in queue and AADHAAR not in queue


def test_the_review_page_masks_values_offers_reveal_and_shows_check_badges(reviewer_client):
    bad = wrong_check_digit(AADHAAR)
    flow = ingest_flow(customer(5, aadhaar=bad))
    field = field_of(flow, "AADHAAR", "aadhaar_number")

    html = reviewer_client.get(review_url(flow)).content.decode()

    assert bad not in html, "not in the item, the document viewer nor the Correct box"
    assert f"XXXX XXXX {bad[-4:]}" in html
    assert html.count(f'action="{reverse("checks:reveal", args=[field.pk])}"') == 2
    assert 'hx-target="closest .masked-value"' in html
    assert "✗ Aadhaar check digit (Verhoeff) does not match" in html
    assert "✓ PAN format" in html and "✓ IMEI checksum" in html
    # The Correct box of a masked value starts empty (a masked text saved back would become
    # the correction).
    box = re.search(r'<input type="text" name="corrected_value"[^>]*>', html).group(0)
    assert 'value=""' in box and 'placeholder="Type the full value"' in box


def test_the_field_queue_masks_personal_values(reviewer_client):
    bad = wrong_check_digit(AADHAAR)
    flow = ingest_flow(customer(6, aadhaar=bad))
    field = field_of(flow, "AADHAAR", "aadhaar_number")

    for params in ({}, HTMX):
        html = reviewer_client.get(reverse("review:queue", args=["fields"]), **params)
        body = html.content.decode()
        assert bad not in body
        assert f"XXXX XXXX {bad[-4:]}" in body
        assert reverse("checks:reveal", args=[field.pk]) in body
        assert "check failed, Aadhaar checksum" in body


def aadhaar_pair_flow(source: str, target: str, similarity: int = 40):
    flow = ingest_flow([("AADHAAR", {"aadhaar_number": source})])
    payload = payload_for(flow.flow_uuid, [("AADHAAR", {"aadhaar_number": source})])
    payload["cross_checks"] = [
        {"name": "AADHAAR_NUMBER", "source_doc": "AADHAAR", "source_field_name": "aadhaar_number",
         "source_value": source, "target_doc": "LOAN_FORM", "target_field_name": "customer_id",
         "target_value": target, "similarity_score": similarity},
    ]  # fmt: skip
    ingest.apply_callback_data(parse_callback_data(payload))
    return flow


def test_the_diff_of_a_personal_pair_is_computed_on_masked_values(reviewer_client):
    other = AADHAAR[:-4] + "9999"
    # The target field is not named for an Aadhaar: the pair is masked as one all the same.
    flow = aadhaar_pair_flow(AADHAAR, other)

    pages = [
        reviewer_client.get(review_url(flow)).content.decode(),
        reviewer_client.get(reverse("review:queue", args=["checks"])).content.decode(),
    ]

    for html in pages:
        assert AADHAAR not in html and other not in html
        assert AADHAAR[:8] not in html, "not even the digits the diff marks as equal"
        assert f"XXXX XXXX <del>{AADHAAR[-4:]}</del>" in html
        assert "XXXX XXXX <ins>9999</ins>" in html
    atlas_data = reviewer_client.get(flow.get_absolute_url()).content.decode()
    assert AADHAAR not in atlas_data and other not in atlas_data
    assert "XXXX XXXX 9999" in atlas_data


def test_a_reveal_is_recorded_and_shown_in_the_history(reviewer, reviewer_client):
    flow = ingest_flow(customer(7, aadhaar=wrong_check_digit(AADHAAR)))
    field = field_of(flow, "AADHAAR", "aadhaar_number")

    revealed = reviewer_client.post(reverse("checks:reveal", args=[field.pk]), **HTMX)
    html = reviewer_client.get(review_url(flow)).content.decode()

    assert wrong_check_digit(AADHAAR) in revealed.content.decode()
    event = RevealEvent.objects.get()
    assert (event.actor, event.field_id, event.flow_id) == (reviewer, field.pk, flow.pk)
    assert (
        '<strong>rita</strong> revealed <span class="subject">AADHAAR.aadhaar_number</span>' in html
    )
    assert wrong_check_digit(AADHAAR) not in html, "the page stays masked after a reveal"


def test_a_correction_of_a_personal_value_is_shown_masked(reviewer_client):
    flow = ingest_flow(customer(8, aadhaar=wrong_check_digit(AADHAAR)))
    reviewer_client.get(review_url(flow))
    item = ReviewItem.objects.get(flow=flow)

    response = reviewer_client.post(
        reverse("review:decide", args=[flow.pk, item.pk]),
        {"action": "correct", "corrected_value": AADHAAR},
        **HTMX,
    )
    page = reviewer_client.get(review_url(flow)).content.decode()

    for html in (response.content.decode(), page):
        assert AADHAAR not in html
        assert f'<strong class="corrected">{MASKED}</strong>' in html
    assert f"to “{MASKED}”" in page, "the history too"
    assert item.decisions.get().corrected_value == AADHAAR, "stored in clear"


def test_a_superseded_decision_names_the_values_masked(reviewer):
    bad = wrong_check_digit(AADHAAR)
    flow = ingest_flow(customer(9, aadhaar=bad))
    services.claim(flow.pk, reviewer)
    services.decide(ReviewItem.objects.get(flow=flow), reviewer, "accept")

    ingest_flow(customer(9, aadhaar=wrong_check_digit(valid_aadhaar("98765432109"))), flow=flow)

    event = DecisionEvent.objects.get(kind="superseded")
    assert event.atlas_value == bad, "the trail keeps the real value"
    assert bad not in event.comment and f"XXXX XXXX {bad[-4:]}" in event.comment


# --- query counts --------------------------------------------------------------------------


def test_review_pages_cost_the_same_queries_with_more_alerts(
    reviewer_client, django_assert_num_queries
):
    shared = valid_imei("35686800999999")
    ingest_flow(customer(1, imei=shared), application_id="APP-A")
    small = ingest_flow(customer(2, imei=shared), application_id="APP-B")
    for n in range(3, 6):
        ingest_flow(customer(n, imei=shared, aadhaar=AADHAAR), application_id=f"APP-{n}")
    big = ingest_flow(
        customer(9, imei=shared, aadhaar=AADHAAR, pan="ABCPE0003F"), application_id="APP-Z"
    )
    assert len(items(big, kind=Kind.REUSE)) > len(items(small, kind=Kind.REUSE))

    # session, user, user perms, group perms, flow+review, claim, items, decisions, the
    # items' check results, the other applications' ids, documents, fields, their check
    # results, cross-checks, reason codes, history (decision events), reveals
    for flow in (small, big):
        with django_assert_num_queries(17):
            reviewer_client.get(review_url(flow))
    # session, user, user perms, group perms, rows (one join), capped count, tab counts
    with django_assert_num_queries(7):
        response = reviewer_client.get(reverse("review:queue", args=["exceptions"]))
    assert len(response.context["page"].rows) > 10


def _apply_counting(documents, application_id: str) -> list[str]:
    flow = Flow.objects.create(
        flow_uuid=f"flow-{application_id}", application_id=application_id, product_type="P"
    )
    with CaptureQueriesContext(connection) as ctx:
        result = ingest.apply_callback_data(
            parse_callback_data(payload_for(flow.flow_uuid, documents))
        )
    assert result.outcome == ingest.APPLIED
    return [q["sql"] for q in ctx.captured_queries]


def test_a_first_delivery_is_checked_and_flagged_in_a_fixed_number_of_queries():
    def bad(n):  # distinct identifiers (no reuse), one failed check (one item)
        return customer(n, aadhaar=wrong_check_digit(valid_aadhaar(f"5{n:010d}")))

    small, big = _apply_counting(bad(1), "APP-S"), _apply_counting(bad(2) * 3, "APP-L")
    # A first delivery goes to the set-based receivers (results_created).
    receivers = [
        (checks_services.on_results_created, "checks.on_results_created"),
        (flagging.on_results_created, "review.flag_first"),
    ]
    for _receiver, uid in receivers:
        results_created.disconnect(dispatch_uid=uid)
    try:
        ingest_only = _apply_counting(bad(3), "APP-R")
    finally:
        for receiver, uid in receivers:
            results_created.connect(receiver, dispatch_uid=uid)

    # The receivers add, whatever the size of the payload, reading back nothing ingest
    # wrote: checks: check config, COPY results, COPY sightings, the sightings of its
    # identifiers (its own and other flows' at once); review: mandatory fields, thresholds,
    # INSERT the review row, COPY items.
    assert len(small) == len(big) == len(ingest_only) + 8
    assert ReviewItem.objects.filter(flow__application_id="APP-L").count() == 3


def test_re_applying_the_same_payload_writes_nothing():
    documents = customer(1)
    flow = ingest_flow(documents)
    before = list(ReviewItem.objects.values_list("id", "status", "updated_at"))
    calls = []

    def spy(sender, **kwargs):
        calls.append(kwargs["flow"])

    results_applied.connect(spy, dispatch_uid="test.spy")
    try:
        with CaptureQueriesContext(connection) as ctx:
            result = ingest.apply_callback_data(
                parse_callback_data(payload_for(flow.flow_uuid, documents))
            )
    finally:
        results_applied.disconnect(dispatch_uid="test.spy")

    assert result.outcome == ingest.DUPLICATE
    assert calls == [], "a duplicate returns before the signal: no checks, no flagging"
    writes = [
        q["sql"]
        for q in ctx.captured_queries
        if q["sql"].split()[0] in ("INSERT", "UPDATE", "DELETE")
    ]
    assert writes == []
    assert list(ReviewItem.objects.values_list("id", "status", "updated_at")) == before
