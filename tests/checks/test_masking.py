"""Aadhaar and PAN are masked wherever a reviewer looks, unless revealed."""

import pytest
from django.contrib.auth.models import User
from django.test import override_settings
from django.urls import reverse

from atlas_review.checks.masking import export_value, is_masked, mask_value

from .conftest import VALID_PAN, customer_documents, field_of, ingest_flow, valid_aadhaar

AADHAAR = valid_aadhaar()  # 234567890124-style, last four shown
LAST4 = AADHAAR[-4:]


def test_aadhaar_shows_only_its_last_four_digits():
    assert mask_value("AADHAAR", "aadhaar_number", AADHAAR) == f"XXXX XXXX {LAST4}"
    spaced = f"{AADHAAR[:4]} {AADHAAR[4:8]} {AADHAAR[8:]}"
    assert mask_value("AADHAAR", "aadhaar_number", spaced) == f"XXXX XXXX {LAST4}"
    assert mask_value("AADHAAR", "aadhaar_number", int(AADHAAR)) == f"XXXX XXXX {LAST4}"
    # Whatever OCR made of it, the registry field is never shown whole.
    assert mask_value("AADHAAR", "aadhaar_number", "23456789") == "XXXX6789"
    assert mask_value("AADHAAR", "aadhaar_number", "") == ""


def test_pan_is_partly_masked():
    assert mask_value("PAN", "pan_number", VALID_PAN) == "ABXXXXXX4F"
    assert mask_value("PAN", "pan_number", "abcpe1234f") == "ABXXXXXX4F"


def test_aadhaar_looking_values_in_other_aadhaar_fields_are_masked():
    assert mask_value("LOAN_FORM", "customer_aadhaar", AADHAAR) == f"XXXX XXXX {LAST4}"
    assert mask_value("LOAN_FORM", "aadhar_no", [AADHAAR]) == f"XXXX XXXX {LAST4}"
    # The name alone is not enough: a value that is no Aadhaar number is shown.
    assert mask_value("LOAN_FORM", "aadhaar_seen", "yes") == "yes"
    assert not is_masked("LOAN_FORM", "aadhaar_seen", "yes")


def test_other_fields_are_shown_as_they_are():
    assert mask_value("INVOICE", "customer_name", "Asha Verma") == "Asha Verma"
    assert mask_value("IMEI_CLOSEUP_IMAGE", "imei_number", ["356868000041418"]) == "356868000041418"
    assert mask_value("INVOICE", "company_name", "ABCPE1234F Traders") == "ABCPE1234F Traders"
    assert not is_masked("INVOICE", "total_invoice_amount", 30000)


def test_exports_follow_the_setting():
    with override_settings(EXPORT_MASK_PERSONAL_DATA=True):
        assert export_value("AADHAAR", "aadhaar_number", AADHAAR) == f"XXXX XXXX {LAST4}"
    with override_settings(EXPORT_MASK_PERSONAL_DATA=False):
        assert export_value("AADHAAR", "aadhaar_number", AADHAAR) == AADHAAR


@pytest.mark.django_db
def test_the_flow_page_never_contains_the_full_aadhaar_or_pan(reviewer_client):
    flow = ingest_flow(customer_documents(aadhaar=AADHAAR))

    body = reviewer_client.get(flow.get_absolute_url()).content.decode()

    assert AADHAAR not in body
    assert f"XXXX XXXX {LAST4}" in body
    assert VALID_PAN not in body and "ABXXXXXX4F" in body
    aadhaar_field = field_of(flow, "AADHAAR", "aadhaar_number")
    assert reverse("checks:reveal", args=[aadhaar_field.pk]) in body  # a reveal button
    # Not personal data: shown whole, with no reveal button.
    assert "Asha Verma" in body
    name_field = field_of(flow, "INVOICE", "customer_name")
    assert reverse("checks:reveal", args=[name_field.pk]) not in body


@pytest.mark.django_db
def test_cross_check_values_are_masked_too(reviewer_client):
    from atlas_review.atlas.payloads import parse_callback_data
    from atlas_review.flows import ingest

    from .conftest import payload_for

    flow = ingest_flow([("AADHAAR", {"aadhaar_number": AADHAAR})])
    payload = payload_for(flow.flow_uuid, [("AADHAAR", {"aadhaar_number": AADHAAR})])
    payload["cross_checks"] = [
        {"name": "AADHAAR_NUMBER", "source_doc": "AADHAAR", "source_field_name": "aadhaar_number",
         "source_value": AADHAAR, "target_doc": "LOAN_FORM", "target_field_name": "aadhaar",
         "target_value": AADHAAR, "similarity_score": 100},
    ]  # fmt: skip
    ingest.apply_callback_data(parse_callback_data(payload))

    body = reviewer_client.get(flow.get_absolute_url()).content.decode()

    assert AADHAAR not in body
    assert body.count(f"XXXX XXXX {LAST4}") == 3  # the field and both sides of the check


@pytest.mark.django_db
def test_the_admin_lists_show_masked_values(client):
    flow = ingest_flow(customer_documents(aadhaar=AADHAAR))
    client.force_login(User.objects.create_superuser("admin", "a@example.com", "pw"))
    aadhaar_field = field_of(flow, "AADHAAR", "aadhaar_number")

    pages = [
        reverse("admin:flows_extractedfield_changelist"),
        reverse("admin:flows_extractedfield_change", args=[aadhaar_field.pk]),
        reverse("admin:flows_document_change", args=[aadhaar_field.document_id]),
    ]
    for url in pages:
        body = client.get(url).content.decode()
        assert AADHAAR not in body, url
        assert f"XXXX XXXX {LAST4}" in body, url
    changelist = client.get(pages[0]).content.decode()
    assert VALID_PAN not in changelist and "ABXXXXXX4F" in changelist
