"""Check results are stored at ingest, follow the administrator's configuration, and are
offered to the review queue as failures with reasons."""

import pytest
from django.urls import reverse

from atlas_review.checks.models import FieldCheck, FieldCheckResult
from atlas_review.checks.services import (
    failed_checks_for_flow,
    recheck_all,
    run_checks_for_fields,
    run_checks_for_flow,
)
from atlas_review.flows.models import ExtractedField

from .conftest import (
    customer_documents,
    field_of,
    ingest_flow,
    valid_aadhaar,
    valid_imei,
    wrong_check_digit,
)

pytestmark = pytest.mark.django_db


def results_of(flow):
    return {
        (r.field.document_type, r.field.name, r.check_code): (r.passed, r.reason)
        for r in FieldCheckResult.objects.filter(field__flow=flow).select_related("field")
    }


def test_the_seeded_checks_run_at_ingest_and_pass_on_good_documents(frozen_today):
    flow = ingest_flow(customer_documents())

    results = results_of(flow)

    assert results == {
        ("INVOICE", "dealer_gst", "gstin"): (True, ""),
        ("INVOICE", "invoice_date", "document_date"): (True, ""),
        ("INVOICE", "total_invoice_amount", "amount"): (True, ""),
        ("INVOICE", "mobile_number", "mobile"): (True, ""),
        ("INVOICE", "imei_number", "imei"): (True, ""),
        ("IMEI_CLOSEUP_IMAGE", "imei_number", "imei"): (True, ""),
        ("AADHAAR", "aadhaar_number", "aadhaar"): (True, ""),
        ("AADHAAR", "date_of_birth", "date_of_birth"): (True, ""),
        ("PAN", "pan_number", "pan"): (True, ""),
        ("PAN", "date_of_birth", "date_of_birth"): (True, ""),
        ("DELIVERY_ORDER", "loan_amount", "amount"): (True, ""),
        ("DELIVERY_ORDER", "do_date", "document_date"): (True, ""),
        ("DELIVERY_ORDER", "customer_mobile_number", "mobile"): (True, ""),
    }
    assert failed_checks_for_flow(flow) == []


def test_failures_name_the_check_for_the_review_queue(frozen_today):
    bad_aadhaar = wrong_check_digit(valid_aadhaar())
    flow = ingest_flow(customer_documents(aadhaar=bad_aadhaar, imei="12345"))

    failed = failed_checks_for_flow(flow)

    aadhaar_field = field_of(flow, "AADHAAR", "aadhaar_number")
    assert [(f.subject, f.check_code, f.reason) for f in failed] == [
        ("INVOICE.imei_number", "imei", "IMEI must have 15 digits (has 5)"),
        ("IMEI_CLOSEUP_IMAGE.imei_number", "imei", "IMEI must have 15 digits (has 5)"),
        ("AADHAAR.aadhaar_number", "aadhaar", "Aadhaar check digit (Verhoeff) does not match"),
    ]
    assert failed[2].field_id == aadhaar_field.pk
    assert failed[2].document_id == aadhaar_field.document_id
    assert failed[2].label == "Aadhaar checksum"


def test_a_redelivery_replaces_results_and_withdrawn_fields_lose_theirs(frozen_today):
    flow = ingest_flow(customer_documents(aadhaar=wrong_check_digit(valid_aadhaar())))
    assert len(failed_checks_for_flow(flow)) == 1

    documents = customer_documents()
    documents[2] = ("AADHAAR", {"aadhaar_number": valid_aadhaar()})  # date_of_birth gone
    ingest_flow(documents, flow=flow)

    assert failed_checks_for_flow(flow) == []
    results = results_of(flow)
    assert results[("AADHAAR", "aadhaar_number", "aadhaar")] == (True, "")
    assert ("AADHAAR", "date_of_birth", "date_of_birth") not in results
    assert FieldCheckResult.objects.filter(field__withdrawn_at__isnull=False).count() == 0


def test_a_redelivery_writes_only_the_results_that_changed(frozen_today, django_assert_num_queries):
    flow = ingest_flow(customer_documents())

    def stored():
        return {
            (r.field.document_type, r.field.name): (r.pk, r.passed, r.checked_at)
            for r in FieldCheckResult.objects.filter(field__flow=flow).select_related("field")
        }

    before = stored()
    documents = customer_documents(aadhaar=wrong_check_digit(valid_aadhaar()))
    documents[0][1]["total_invoice_amount"] = ""  # its check no longer applies
    fields = list(ExtractedField.objects.filter(flow=flow))
    for f in fields:
        if f.name == "aadhaar_number":
            f.value = documents[2][1]["aadhaar_number"]
        if f.name == "total_invoice_amount":
            f.value = ""

    # config, stored results, one UPDATE (the Aadhaar), one DELETE (the amount)
    with django_assert_num_queries(4):
        run_checks_for_fields(fields)

    after = stored()
    aadhaar = ("AADHAAR", "aadhaar_number")
    assert after[aadhaar][0] == before[aadhaar][0] and after[aadhaar][1] is False
    assert ("INVOICE", "total_invoice_amount") not in after
    pan = ("PAN", "pan_number")
    assert after[pan] == before[pan], "an unchanged result keeps its row and checked_at"


def test_an_empty_value_has_no_result(frozen_today):
    documents = customer_documents()
    documents[0][1]["total_invoice_amount"] = ""
    flow = ingest_flow(documents)

    assert ("INVOICE", "total_invoice_amount", "amount") not in results_of(flow)


def test_administrators_choose_which_check_applies(frozen_today):
    FieldCheck.objects.filter(check_code="aadhaar").update(active=False)
    FieldCheck.objects.create(document_type="INVOICE", field_name="price", check_code="amount")
    documents = customer_documents(aadhaar=wrong_check_digit(valid_aadhaar()))
    documents[0][1]["price"] = "free"
    flow = ingest_flow(documents)

    assert [(f.subject, f.reason) for f in failed_checks_for_flow(flow)] == [
        ("INVOICE.price", "amount 'free' is not a number"),
    ]

    FieldCheck.objects.filter(check_code="aadhaar").update(active=True)
    assert recheck_all() == ExtractedField.objects.count()
    assert {f.check_code for f in failed_checks_for_flow(flow)} == {"amount", "aadhaar"}


def test_checks_cost_a_fixed_number_of_queries(frozen_today, django_assert_num_queries):
    small = ingest_flow(customer_documents())
    big = ingest_flow(customer_documents() * 4)
    for flow in (small, big):
        fields = list(ExtractedField.objects.filter(flow=flow))
        # config, stored results (fields are given); unchanged results are not written
        with django_assert_num_queries(2):
            run_checks_for_fields(fields)
        # plus the flow's current fields
        with django_assert_num_queries(3):
            run_checks_for_flow(flow)
        with django_assert_num_queries(1):
            failed_checks_for_flow(flow)


def test_the_flow_page_shows_passed_checks_beside_confidence(
    reviewer_client, frozen_today, django_assert_num_queries
):
    flow = ingest_flow(customer_documents(imei=wrong_check_digit(valid_imei())))

    # session, user, 2x perms, flow, cross-checks, documents, fields, check results,
    # this flow's identifier sightings, other flows' sightings of them
    with django_assert_num_queries(11):
        body = reviewer_client.get(reverse("flows:detail", args=[flow.pk])).content.decode()

    assert "✓ Aadhaar checksum" in body
    assert "✓ GSTIN checksum" in body
    assert "✗ IMEI check digit (Luhn) does not match" in body


def test_results_are_stored_before_the_review_flagging_reads_them():
    """The review app's receiver (flagging) reads failed_checks_for_flow inside the same
    ingest: this app's receiver must be connected first (INSTALLED_APPS order)."""
    from atlas_review.flows.ingest import results_applied

    keys = [key for (key, _sender), *_ in results_applied.receivers]
    assert "checks.on_results_applied" in keys
    if "review.flag_flow" in keys:
        assert keys.index("checks.on_results_applied") < keys.index("review.flag_flow")
