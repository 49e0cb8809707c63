"""Flows for review tests, made the way production makes them: a Flow row, then an Atlas
payload through the ingest service, so the real flagging path (results_applied) runs."""

from __future__ import annotations

import itertools

from atlas_review.atlas.payloads import parse_callback_data
from atlas_review.flows import ingest
from atlas_review.flows.models import Flow, Upload

# A document type no seeded mandatory-field row mentions, so only the fields a test gives
# are flagged.
PLAIN = "BANK_STATEMENT"

_numbers = itertools.count(1)


def document(
    doc_type: str = PLAIN,
    fields: dict | None = None,
    *,
    error_code: str = "",
    error_reason: str = "",
    document_id: str = "",
    file_uuid: str = "",
) -> dict:
    """fields: {name: (value, confidence)}."""
    data = {"document_type": doc_type} if doc_type else {}
    for name, (value, confidence) in (fields or {}).items():
        data[name] = {"value": value, "confidence_score": confidence}
    return {
        "data": data,
        "document_id": document_id,
        "file_uuid": file_uuid,
        "error_code": error_code,
        "error_reason": error_reason,
    }


def check(
    name: str,
    source_value,
    target_value,
    similarity,
    *,
    source=("DELIVERY_ORDER", "dealer_address"),
    target=("INVOICE", "dealer_address"),
) -> dict:
    return {
        "name": name,
        "source_doc": source[0],
        "source_field_name": source[1],
        "source_value": source_value,
        "target_doc": target[0],
        "target_field_name": target[1],
        "target_value": target_value,
        "similarity_score": similarity,
    }


def payload(flow_uuid: str, documents: list[dict], checks: list[dict] = ()) -> dict:
    return {"flow_uuid": flow_uuid, "ocr_data": documents, "cross_checks": list(checks)}


def make_flow(
    documents: list[dict] | None = None,
    checks: list[dict] = (),
    *,
    flow_uuid: str | None = None,
    application_id: str | None = None,
    product_type: str = "PROD_CDL",
    file_url: str = "https://files.example.com/doc.png",
) -> Flow:
    n = next(_numbers)
    flow_uuid = flow_uuid or f"flow-{n:06d}"
    flow = Flow.objects.create(
        flow_uuid=flow_uuid, application_id=application_id or f"APP-{n:06d}",
        product_type=product_type,
    )  # fmt: skip
    documents = documents if documents is not None else [document()]
    files = []
    for i, doc in enumerate(documents):
        doc.setdefault("document_id", "")
        if not doc["document_id"]:
            doc["document_id"] = f"D{i}"
        files.append({"file_url": file_url, "document_id": doc["document_id"]})
    Upload.objects.create(batch_id=f"BATCH-{flow_uuid}", api="v3", flow=flow, files=files)
    deliver(flow, documents, checks)
    return flow


def deliver(flow: Flow, documents: list[dict], checks: list[dict] = ()) -> ingest.IngestResult:
    """Atlas delivers (or re-delivers) results for the flow."""
    result = ingest.apply_callback_data(
        parse_callback_data(payload(flow.flow_uuid, documents, checks))
    )
    flow.refresh_from_db()
    return result


def three_field_flow(**kwargs) -> Flow:
    """One document, three fields below 0.80 and one above: three items to decide."""
    return make_flow(
        [
            document(
                fields={
                    "account_holder": ("Pashangh Irani", 0.42),
                    "account_number": ("50100234567", 0.55),
                    "ifsc": ("HDFC0001234", 0.61),
                    "bank_name": ("HDFC Bank", 0.97),
                }
            )
        ],
        **kwargs,
    )
