import copy
from datetime import timedelta

import pytest
from django.utils import timezone

from atlas_review.atlas.payloads import PayloadError, parse_callback_data
from atlas_review.flows import ingest
from atlas_review.flows.models import CrossCheck, Document, ExtractedField, Flow, Upload

pytestmark = pytest.mark.django_db


@pytest.fixture
def flow(contract_payload) -> Flow:
    flow = Flow.objects.create(
        flow_uuid=contract_payload["flow_uuid"], application_id="12321321", product_type="PROD_CDL"
    )
    Upload.objects.create(
        batch_id="BATCH-1", api="v3", flow=flow,
        files=[{"file_url": "https://files.example.com/invoice.jpg", "document_id": "2332d12323isbjnfijbg"}],
    )  # fmt: skip
    return flow


def snapshot():
    return (
        sorted(
            Document.objects.values_list("id", "key", "document_type", "error_code", "updated_at")
        ),
        sorted(
            ExtractedField.objects.values_list("id", "name", "value", "confidence", "updated_at")
        ),
        sorted(CrossCheck.objects.values_list("id", "key", "similarity", "updated_at")),
    )


def test_it_ingests_the_contract_example_field_for_field(flow, contract_payload):
    result = ingest.apply_callback_data(parse_callback_data(contract_payload))

    assert result.outcome == ingest.APPLIED
    docs = list(Document.objects.filter(flow=flow).order_by("position"))
    assert [d.document_type for d in docs] == [
        "INVOICE",
        "IMEI_CLOSEUP_IMAGE",
        "",
        "ASSET_OPEN_BOX_IMAGE",
    ]
    # One upload yielded two documents: document_id is shared, not a key.
    assert docs[0].document_id == docs[1].document_id == "2332d12323isbjnfijbg"
    assert docs[0].file_url == "https://files.example.com/invoice.jpg"
    assert (docs[2].error_code, docs[2].error_reason) == ("UNRECOGNISED", "document not in list")
    assert (docs[3].error_code, docs[3].error_reason) == ("INVALID_DOC", "multiple people")

    fields = {
        (f.document.position, f.name): f for f in ExtractedField.objects.select_related("document")
    }
    for position, item in enumerate(contract_payload["ocr_data"]):
        for name, raw in item["data"].items():
            if name == "document_type":
                continue
            stored = fields.pop((position, name))
            assert stored.value == raw["value"]
            assert stored.confidence == raw["confidence_score"]
    assert fields == {}, "no field was invented"
    assert fields_of("IMEI_CLOSEUP_IMAGE", "imei_number").value == ["36732632"]
    assert fields_of("IMEI_CLOSEUP_IMAGE", "price").value == 30000
    assert fields_of("INVOICE", "total_invoice_amount").value == ""
    assert fields_of("ASSET_OPEN_BOX_IMAGE", "number_of_faces_visible").value == 3

    checks = list(CrossCheck.objects.filter(flow=flow).order_by("position"))
    assert [(c.name, c.similarity) for c in checks] == [
        ("DEALER_ADDRESS", 60), ("CUSTOMER_NAME", 90), ("CUSTOMER_DELIVERY_ADDRESS", 90), ("CUSTOMER_MOBILE_NUMBER", 90),
    ]  # fmt: skip
    assert checks[1].target_value == "Pashangh Irani"
    flow.refresh_from_db()
    assert flow.sync_state == "DONE" and flow.master_status == "SUCCESS"


def fields_of(document_type, name):
    return ExtractedField.objects.get(document_type=document_type, name=name)


def test_the_same_payload_twice_leaves_the_same_rows(
    flow, contract_payload, django_assert_max_num_queries
):
    data = parse_callback_data(contract_payload)
    ingest.apply_callback_data(data)
    before = snapshot()

    # Second time: the flow row is locked and its hash compared, nothing is written.
    with django_assert_max_num_queries(3):
        result = ingest.apply_callback_data(parse_callback_data(copy.deepcopy(contract_payload)))

    assert result.outcome == ingest.DUPLICATE
    assert snapshot() == before


def test_a_changed_value_updates_in_place_and_reports_it(flow, contract_payload):
    ingest.apply_callback_data(parse_callback_data(contract_payload))
    name_field = fields_of("INVOICE", "customer_name")
    changed = copy.deepcopy(contract_payload)
    changed["ocr_data"][0]["data"]["customer_name"] = {
        "value": "Pashangh Irani",
        "confidence_score": 0.95,
    }
    del changed["ocr_data"][0]["data"]["dealer_sign"]

    result = ingest.apply_callback_data(parse_callback_data(changed))

    assert result.outcome == ingest.APPLIED
    updated = fields_of("INVOICE", "customer_name")
    assert updated.pk == name_field.pk, "ids stay stable so decisions keep pointing at them"
    assert (updated.value, updated.confidence) == ("Pashangh Irani", 0.95)
    withdrawn = fields_of("INVOICE", "dealer_sign")
    assert withdrawn.withdrawn_at is not None, (
        "a field missing from a re-delivery is kept, marked withdrawn"
    )
    assert {updated.pk, withdrawn.pk} <= result.changes.changed_field_ids
    assert ExtractedField.objects.current().filter(name="dealer_sign").count() == 0


def test_an_older_delivery_never_replaces_newer_data(flow, contract_payload):
    now = timezone.now()
    newer = copy.deepcopy(contract_payload)
    newer["cross_checks"][0]["similarity_score"] = 95
    ingest.apply_callback_data(parse_callback_data(newer), as_of=now)

    result = ingest.apply_callback_data(
        parse_callback_data(contract_payload), as_of=now - timedelta(minutes=5)
    )

    assert result.outcome == ingest.STALE
    assert CrossCheck.objects.get(name="DEALER_ADDRESS").similarity == 95


def test_unknown_document_types_and_fields_are_kept(flow, contract_payload):
    contract_payload["ocr_data"].append(
        {"data": {"document_type": "WARRANTY_CARD", "serial": {"value": {"a": 1}, "confidence_score": 1}, "notes": "free text"},
         "document_id": "9", "error_code": "", "error_reason": "", "file_uuid": "f-9", "scan_quality": "good"}
    )  # fmt: skip
    ingest.apply_callback_data(parse_callback_data(contract_payload))

    doc = Document.objects.get(document_type="WARRANTY_CARD")
    assert doc.key == "uuid:f-9"
    assert doc.extra == {"notes": "free text", "scan_quality": "good"}
    assert doc.fields.get().value == {"a": 1}


def test_an_unknown_flow_is_unmatched(db, contract_payload):
    with pytest.raises(ingest.UnmatchedPayload):
        ingest.apply_callback_data(parse_callback_data(contract_payload))


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda p: p.pop("flow_uuid"), "flow_uuid: is required"),
        (lambda p: p.update(ocr_data={}), "ocr_data: expected a list, got an object"),
        (lambda p: p["ocr_data"][0].update(data=[1]), "ocr_data[0].data: expected an object"),
        (lambda p: p["ocr_data"][0]["data"]["customer_name"].update(confidence_score="high"),
         "ocr_data[0].data.customer_name.confidence_score: expected a number, got a string"),
        (lambda p: p["cross_checks"][0].update(similarity_score=140), "cross_checks[0].similarity_score: must be between 0 and 100"),
    ],
)  # fmt: skip
def test_a_structurally_wrong_payload_names_the_problem(contract_payload, mutate, message):
    mutate(contract_payload)
    with pytest.raises(PayloadError) as exc:
        parse_callback_data(contract_payload)
    assert message in str(exc.value)
