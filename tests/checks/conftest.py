"""Flows for the checks tests, built the way production builds them: an Atlas payload
parsed and applied by the ingest service."""

from __future__ import annotations

import itertools

import pytest
from stdnum import luhn, verhoeff

from atlas_review.atlas.payloads import parse_callback_data
from atlas_review.flows import ingest
from atlas_review.flows.models import ExtractedField, Flow

GSTIN_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_counter = itertools.count(1)


def valid_aadhaar(body: str = "23456789012") -> str:
    return body + verhoeff.calc_check_digit(body)


def wrong_check_digit(number: str) -> str:
    last = int(number[-1])
    return number[:-1] + str((last + 1) % 10)


def valid_imei(body: str = "35686800004141") -> str:
    return body + luhn.calc_check_digit(body)


def valid_gstin(body: str = "29AAPFU0939F1Z") -> str:
    return body + luhn.calc_check_digit(body, GSTIN_ALPHABET)


VALID_PAN = "ABCPE1234F"


def payload_for(flow_uuid: str, documents: list[tuple[str, dict]]) -> dict:
    """A CallbackData payload: one ocr_data item per (document_type, {field: value})."""
    return {
        "flow_uuid": flow_uuid,
        "ocr_data": [
            {
                "data": {
                    "document_type": doc_type,
                    **{name: {"value": v, "confidence_score": 0.95} for name, v in fields.items()},
                },
                "document_id": str(i),
                "file_uuid": f"{flow_uuid}-file-{i}",
                "error_code": "",
                "error_reason": "",
            }
            for i, (doc_type, fields) in enumerate(documents)
        ],
        "cross_checks": [],
    }


def ingest_flow(documents: list[tuple[str, dict]], *, application_id: str = "", flow=None):
    """Create (or re-deliver to) a flow and apply the payload through the ingest service."""
    if flow is None:
        n = next(_counter)
        flow = Flow.objects.create(
            flow_uuid=f"flow-{n}", application_id=application_id or f"APP-{n}",
            product_type="PROD_CDL",
        )  # fmt: skip
    ingest.apply_callback_data(parse_callback_data(payload_for(flow.flow_uuid, documents)))
    return flow


def field_of(flow: Flow, document_type: str, name: str) -> ExtractedField:
    return ExtractedField.objects.get(flow=flow, document_type=document_type, name=name)


def customer_documents(
    *,
    aadhaar: str | None = None,
    pan: str = VALID_PAN,
    imei: str | None = None,
    invoice_number: str = "INV/25-26/0042",
    gstin: str | None = None,
) -> list[tuple[str, dict]]:
    imei = imei or valid_imei()
    return [
        (
            "INVOICE",
            {
                "customer_name": "Asha Verma",
                "dealer_gst": gstin or valid_gstin(),
                "invoice_number": invoice_number,
                "invoice_date": "01-10-2026",
                "total_invoice_amount": "₹ 23,499.00",
                "mobile_number": "+91 98765 43210",
                "imei_number": [imei],
            },
        ),
        ("IMEI_CLOSEUP_IMAGE", {"model": "V2123", "imei_number": [imei], "price": 23000}),
        (
            "AADHAAR",
            {
                "name": "Asha Verma",
                "aadhaar_number": aadhaar or valid_aadhaar(),
                "date_of_birth": "14/02/1990",
            },
        ),
        ("PAN", {"name": "ASHA VERMA", "pan_number": pan, "date_of_birth": "14/02/1990"}),
        (
            "DELIVERY_ORDER",
            {"loan_amount": 20000, "do_date": "30-09-2026", "customer_mobile_number": "9876543210"},
        ),
    ]


@pytest.fixture
def frozen_today(monkeypatch):
    """Plausibility of dates is judged against a fixed day."""
    import datetime

    from django.utils import timezone

    day = datetime.date(2026, 11, 27)
    monkeypatch.setattr(timezone, "localdate", lambda *a, **k: day)
    return day
