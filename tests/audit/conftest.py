"""Flows and decisions for export tests, made the way production makes them: Atlas's
payload through the ingest service (which flags the items), then the review services."""

from __future__ import annotations

import itertools

import pytest

from atlas_review.atlas.payloads import parse_callback_data
from atlas_review.flows import ingest
from atlas_review.flows.models import Flow, Upload
from atlas_review.review import services
from atlas_review.review.models import ReasonCode, ReviewItem
from tests.conftest import make_user

# No seeded mandatory field mentions it: only the fields a test gives are flagged.
DOC_TYPE = "BANK_STATEMENT"
_numbers = itertools.count(1)


def make_flow(fields: dict, *, product_type: str = "PROD_CDL", application_id: str = "") -> Flow:
    """fields: {name: (value, confidence)}; below 0.80 is flagged for review."""
    n = next(_numbers)
    flow = Flow.objects.create(
        flow_uuid=f"audit-flow-{n}", application_id=application_id or f"APP-{n:05d}",
        product_type=product_type,
    )  # fmt: skip
    Upload.objects.create(batch_id=f"AUDIT-BATCH-{n}", api="v3", flow=flow, files=[])
    deliver(flow, fields)
    return flow


def deliver(flow: Flow, fields: dict) -> None:
    """Atlas delivers (or re-delivers) the flow's one document with these fields."""
    data = {"document_type": DOC_TYPE}
    for name, (value, confidence) in fields.items():
        data[name] = {"value": value, "confidence_score": confidence}
    document = {"data": data, "document_id": f"DOC-{flow.pk}", "file_uuid": f"file-{flow.pk}"}
    payload = {"flow_uuid": flow.flow_uuid, "ocr_data": [document], "cross_checks": []}
    ingest.apply_callback_data(parse_callback_data(payload))
    flow.refresh_from_db()


def item(flow: Flow, name: str) -> ReviewItem:
    return ReviewItem.objects.get(flow=flow, name=name)


def reason(code: str = "mismatch") -> ReasonCode:
    # get_or_create: a transactional test elsewhere may have flushed the seeded codes.
    return ReasonCode.objects.get_or_create(code=code, defaults={"label": code.title()})[0]


@pytest.fixture
def agent(db):
    return make_user("agent.ananya", "reviewer")


@pytest.fixture
def other_agent(db):
    return make_user("agent.bilal", "reviewer")


@pytest.fixture
def auditor_client(client, auditor):
    client.force_login(auditor)
    return client


@pytest.fixture
def supervisor_client(client, supervisor):
    client.force_login(supervisor)
    return client


@pytest.fixture
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    return tmp_path


@pytest.fixture
def trail(db, agent, other_agent, supervisor):
    """Two reviewed flows whose trail holds every shape of value an export must carry:
    unicode, lists, numbers, empty values, a correction, a rejection with a comment, a
    change of decision, an outcome, a claim release, and a decision Atlas superseded."""
    first = make_flow(
        {
            "account_holder": ("Sāvitrī Ñandā", 0.41),
            "imei_numbers": (["356938035643809", "356938035643817"], 0.5),
            "total_amount": (125000.5, 0.6),
            "branch": (None, 0.3),
            "bank_name": ("HDFC Bank", 0.97),  # not flagged
        },
        product_type="PROD_CDL",
    )
    services.decide(item(first, "account_holder"), agent, "accept")
    services.decide(
        item(first, "imei_numbers"), agent, "correct", corrected_value="356938035643809"
    )
    services.decide(
        item(first, "total_amount"), agent, "reject", reason=reason(),
        comment="Invoice says 1,25,000 — “cheque” differs",
    )  # fmt: skip
    decision = services.decide(item(first, "branch"), agent, "accept")
    services.decide(
        item(first, "branch"), agent, "correct", corrected_value="Kōchi — MG Road",
        version=decision.version,
    )  # fmt: skip
    services.close(first.pk, agent, "approved", comment="Fine after corrections")

    second = make_flow({"customer_name": ("Þórður O'Brien", 0.5)}, product_type="POC_CDL")
    services.decide(item(second, "customer_name"), other_agent, "accept")
    services.release(second.pk, supervisor)

    third = make_flow({"ifsc": ("HDFC0001234", 0.6)}, product_type="PROD_CDL")
    services.decide(item(third, "ifsc"), other_agent, "accept")
    # Atlas re-delivers a different value: the decision is kept, marked superseded.
    deliver(third, {"ifsc": ("HDFC0004321", 0.6)})
    return first, second, third
