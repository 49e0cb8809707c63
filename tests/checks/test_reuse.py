"""Reuse alerts: an identifier of one application seen in another."""

from datetime import timedelta

import pytest
from django.test import override_settings

from atlas_review.checks.models import IdentifierSighting
from atlas_review.checks.reuse import (
    find_reuse,
    my_identifiers,
    record_and_find,
    reuse_alerts_for_flow,
)
from atlas_review.flows.models import ExtractedField

from .conftest import (
    customer_documents,
    field_of,
    ingest_flow,
    valid_aadhaar,
    valid_gstin,
    valid_imei,
)

pytestmark = pytest.mark.django_db


def other_customer(n: int, **overrides) -> list:
    """Documents of an unrelated customer: every identifier distinct from others'."""
    values = {
        "aadhaar": valid_aadhaar(f"3{n:010d}"),
        "pan": f"ABCPE{n:04d}F",
        "imei": valid_imei(f"35686800{n:06d}"),
        "invoice_number": f"INV-{n}",
    }
    return customer_documents(**{**values, **overrides})


def kinds(alerts) -> set[tuple[str, str]]:
    return {(a.kind, a.other_application_id) for a in alerts}


def test_two_flows_sharing_an_imei_both_see_each_other():
    shared = valid_imei("35686800999999")
    first = ingest_flow(other_customer(1, imei=shared), application_id="APP-A")
    second = ingest_flow(other_customer(2, imei=shared), application_id="APP-B")
    ingest_flow(other_customer(3), application_id="APP-C")  # unrelated

    assert kinds(reuse_alerts_for_flow(first)) == {("imei", "APP-B")}
    assert kinds(reuse_alerts_for_flow(second)) == {("imei", "APP-A")}
    (alert,) = reuse_alerts_for_flow(second)
    assert alert.other_url == first.get_absolute_url()
    assert alert.value == shared and alert.shown_value == shared
    # The IMEI is on the invoice and on the close-up: both fields point at the alert.
    assert alert.field_ids == tuple(
        sorted(
            [
                field_of(second, "INVOICE", "imei_number").pk,
                field_of(second, "IMEI_CLOSEUP_IMAGE", "imei_number").pk,
            ]
        )
    )
    assert len(find_reuse(second)) == 4  # 2 fields here x 2 fields there


def test_a_flow_ingested_twice_is_not_a_reuse_of_itself():
    documents = other_customer(1)
    flow = ingest_flow(documents)
    ingest_flow(documents, flow=flow)  # the same payload again: a duplicate
    documents[0][1]["customer_name"] = "Asha V."  # a changed re-delivery
    ingest_flow(documents, flow=flow)

    assert find_reuse(flow) == []
    # One sighting per identifier per field, however often it was delivered.
    assert IdentifierSighting.objects.filter(flow=flow).count() == 5


def test_a_resubmitted_application_is_not_a_reuse():
    ingest_flow(other_customer(1), application_id="APP-A")
    again = ingest_flow(other_customer(1), application_id="APP-A")

    assert find_reuse(again) == []


def test_aadhaar_pan_and_invoice_reuse_are_found_and_shown_masked():
    aadhaar, gstin = valid_aadhaar("45678901234"), valid_gstin()
    ingest_flow(other_customer(1, aadhaar=aadhaar, pan="ABCPE7777F", invoice_number="4332", gstin=gstin),
                application_id="APP-A")  # fmt: skip
    flow = ingest_flow(
        other_customer(2, aadhaar=aadhaar, pan="abcpe 7777 f", invoice_number="4332", gstin=gstin),
        application_id="APP-B",
    )

    alerts = {a.kind: a for a in reuse_alerts_for_flow(flow)}

    assert set(alerts) == {"aadhaar", "pan", "invoice"}
    assert alerts["aadhaar"].shown_value == f"XXXX XXXX {aadhaar[-4:]}"
    assert alerts["pan"].shown_value == "ABXXXXXX7F"
    assert alerts["invoice"].value == f"{gstin}/4332"
    assert "also appears in application APP-A" in alerts["aadhaar"].reason


def test_the_same_invoice_number_from_another_dealer_is_no_reuse():
    ingest_flow(other_customer(1, invoice_number="4332", gstin=valid_gstin("29AAPFU0939F1Z")))
    flow = ingest_flow(
        other_customer(2, invoice_number="4332", gstin=valid_gstin("27AAPFU0939F1Z"))
    )

    assert find_reuse(flow) == []


def test_only_sightings_within_the_window_count():
    shared = valid_imei("35686800999999")
    old = ingest_flow(other_customer(1, imei=shared))
    IdentifierSighting.objects.filter(flow=old).update(
        seen_at=IdentifierSighting.objects.filter(flow=old).first().seen_at - timedelta(days=200)
    )
    flow = ingest_flow(other_customer(2, imei=shared))

    assert find_reuse(flow) == []
    assert len(find_reuse(flow, window_days=365)) == 4
    with override_settings(REUSE_WINDOW_DAYS=365):
        assert kinds(reuse_alerts_for_flow(flow)) == {("imei", old.application_id)}


def test_a_corrected_identifier_stops_being_a_reuse():
    shared = valid_imei("35686800999999")
    ingest_flow(other_customer(1, imei=shared))
    documents = other_customer(2, imei=shared)
    flow = ingest_flow(documents)
    assert find_reuse(flow)

    ingest_flow(other_customer(2), flow=flow)  # Atlas re-read the label

    assert find_reuse(flow) == []


def test_garbage_is_not_an_identifier():
    # The contract example's 8-digit "IMEI" is in many flows; it must not alert.
    ingest_flow(other_customer(1, imei="36732632"))
    flow = ingest_flow(other_customer(2, imei="36732632"))

    assert find_reuse(flow) == []


def test_the_lookup_costs_two_queries(django_assert_num_queries):
    shared = valid_imei("35686800999999")
    for n in range(3):
        ingest_flow(other_customer(n, imei=shared))
    flow = ingest_flow(other_customer(9, imei=shared))

    # this flow's sightings, then the others with their flows
    with django_assert_num_queries(2):
        alerts = reuse_alerts_for_flow(flow)
    assert len(alerts) == 3


def test_ingest_records_and_finds_with_one_read(django_assert_num_queries):
    shared = valid_imei("35686800999999")
    ingest_flow(other_customer(1, imei=shared), application_id="APP-A")
    ingest_flow(other_customer(3, imei=shared), application_id="APP-C")
    flow = ingest_flow(other_customer(2, imei=shared), application_id="APP-B")
    fields = list(ExtractedField.objects.current().filter(flow=flow))

    # its own sightings and the other flows' sightings of its identifiers; nothing to write
    with django_assert_num_queries(1):
        mine, reuses = record_and_find(flow, fields=fields)

    assert mine == my_identifiers(flow)
    assert set(reuses) == set(find_reuse(flow)) and len(reuses) == 8


def test_the_flow_page_links_to_the_other_application(reviewer_client):
    shared = valid_imei("35686800999999")
    first = ingest_flow(other_customer(1, imei=shared), application_id="APP-A")
    second = ingest_flow(other_customer(2, imei=shared), application_id="APP-B")

    body = reviewer_client.get(second.get_absolute_url()).content.decode()

    assert "Reuse alerts" in body
    assert f'href="{first.get_absolute_url()}">APP-A</a>' in body
