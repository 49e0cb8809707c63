"""First results are written set-based (flows.bulk: COPY) with their check results,
sightings, reuse links and queue items derived the same way. Whatever the path, the
database must end up exactly as the row-by-row path leaves it: this compares the two on
the same payloads, every row by its natural key."""

import copy

import pytest
from django.db import transaction

from atlas_review.atlas.payloads import parse_callback_data
from atlas_review.checks.models import FieldCheckResult, IdentifierSighting
from atlas_review.flows import bulk, ingest
from atlas_review.flows.models import CrossCheck, Document, ExtractedField, Flow
from atlas_review.review.models import FlowReview, ReviewItem
from tests.flows.factories import awaiting_results

pytestmark = pytest.mark.django_db

SHARED_IMEI = "356938035643809"


def make_flow(app: str, seed: int, *, imei: str | None = None):
    raw = awaiting_results(app, seed=seed)
    if imei:
        raw = copy.deepcopy(raw)
        for item in raw["ocr_data"]:
            if "imei_number" in item["data"]:
                item["data"]["imei_number"]["value"] = [imei]
    return parse_callback_data(raw)


def snapshot() -> list[tuple]:
    """Every row the ingest and its receivers wrote, by natural key (ids differ by path)."""
    docs = {d.pk: (d.flow.flow_uuid, d.key) for d in Document.objects.select_related("flow")}
    fields = {
        f.pk: (*docs[f.document_id], f.name)
        for f in ExtractedField.objects.all().only("document_id", "name")
    }
    checks = {c.pk: (c.flow.flow_uuid, c.key) for c in CrossCheck.objects.select_related("flow")}

    def item_key(i: ReviewItem):
        kind, _, rest = i.key.partition(":")
        if kind == "field":
            return ("field", fields[int(rest)])
        if kind == "check":
            return ("check", checks[int(rest)])
        if kind == "doc":
            return ("doc", docs[int(rest)])
        if kind == "missing":
            doc_id, _, name = rest.partition(":")
            return ("missing", docs[int(doc_id)], name)
        return (i.key,)  # reuse:<kind>:<flow id>, qa, sync: flow ids do not change

    return sorted(
        [
            *(("doc", docs[d.pk], d.position, d.document_id, d.file_uuid, d.batch_id,
               d.file_url, d.document_type, d.error_code, d.error_reason, repr(d.extra))
              for d in Document.objects.all()),
            *(("field", fields[f.pk], f.flow_id, f.document_type, f.position, repr(f.value),
               f.confidence) for f in ExtractedField.objects.all()),
            *(("check", checks[c.pk], c.position, c.name, c.source_doc, c.source_field_name,
               repr(c.source_value), c.target_doc, c.target_field_name, repr(c.target_value),
               c.similarity, repr(c.extra)) for c in CrossCheck.objects.all()),
            *(("result", fields[r.field_id], r.check_code, r.passed, r.reason)
              for r in FieldCheckResult.objects.all()),
            *(("sighting", fields[s.field_id], s.flow_id, s.kind, s.value)
              for s in IdentifierSighting.objects.all()),
            *(("item", i.flow.flow_uuid, item_key(i), i.kind, i.queue, i.status, i.rule,
               i.reason, i.score, i.threshold, i.priority, i.product_type, i.document_type,
               i.name, fields.get(i.field_id), checks.get(i.cross_check_id),
               docs.get(i.document_id)) for i in ReviewItem.objects.select_related("flow")),
            *(("review", r.flow.flow_uuid, r.outcome, r.closed_at is None)
              for r in FlowReview.objects.select_related("flow")),
        ]
    )  # fmt: skip


@pytest.fixture
def batch():
    """An earlier flow already applied (its IMEI reappears below), then eight new flows:
    two share the earlier IMEI, two share one of their own, one was claimed (its review row
    exists) before its results came."""
    earlier = make_flow("EARLIER", 1, imei=SHARED_IMEI)
    ingest.apply_callback_data(earlier)
    payloads = [
        make_flow(f"APP-{i}", 10 + i, imei=SHARED_IMEI if i < 2 else None) for i in range(8)
    ]
    shared = make_flow("APP-8", 30, imei="490154203237518")
    also = make_flow("APP-9", 31, imei="490154203237518")
    FlowReview.objects.create(flow=Flow.objects.get(flow_uuid="uuid-APP-3"))
    return [*payloads, shared, also]


def test_first_results_store_what_the_row_by_row_path_stores(batch, monkeypatch):
    with transaction.atomic():
        results = ingest.apply_many(batch)
        set_based = snapshot()
        transaction.set_rollback(True)
    assert [r.outcome for r in results] == [ingest.APPLIED] * len(batch)

    monkeypatch.setattr(bulk, "supported", lambda: False)
    for data in batch:
        ingest.apply_callback_data(data)
    row_by_row = snapshot()

    assert set_based == row_by_row
    kinds = {row[3] for row in set_based if row[0] == "item"}
    # The comparison covers every kind of item the rules make from Atlas's data.
    assert {"field", "cross_check", "exception", "validation", "reuse"} <= kinds
    earlier = Flow.objects.get(flow_uuid="uuid-EARLIER")
    assert ReviewItem.objects.filter(flow=earlier, kind="reuse").count() == 2


def test_one_first_result_at_a_time_stores_the_same(batch, monkeypatch):
    with transaction.atomic():
        for data in batch:
            ingest.apply_callback_data(data)
        set_based = snapshot()
        transaction.set_rollback(True)

    monkeypatch.setattr(bulk, "supported", lambda: False)
    ingest.apply_many(batch)
    assert set_based == snapshot()


def test_a_redelivery_after_set_based_first_results_changes_only_what_changed(batch):
    ingest.apply_many(batch)
    flow = Flow.objects.get(flow_uuid=batch[4].flow_uuid)
    before = {f.pk: f.value for f in ExtractedField.objects.filter(flow=flow)}
    raw_doc = batch[4].documents[2]
    changed_field = raw_doc.fields[0]
    from dataclasses import replace

    new_doc = replace(
        raw_doc,
        fields=(replace(changed_field, value="CHANGED", confidence=0.1), *raw_doc.fields[1:]),
    )
    documents = list(batch[4].documents)
    documents[2] = new_doc
    result = ingest.apply_callback_data(replace(batch[4], documents=tuple(documents)))

    assert result.outcome == ingest.APPLIED
    assert result.changes.updated == 1 and result.changes.created == 0
    after = {f.pk: f.value for f in ExtractedField.objects.filter(flow=flow)}
    assert after.keys() == before.keys()
    assert [pk for pk in after if after[pk] != before[pk]] == [
        f.pk for f in ExtractedField.objects.filter(flow=flow, value="CHANGED")
    ]
    assert ReviewItem.objects.filter(flow=flow, field__value="CHANGED", status="open").exists()


def clean_flow(app: str, imei: str):
    """A flow nothing flags: one confident, valid IMEI photo (in the QA sample at 100%)."""
    flow = Flow.objects.create(
        flow_uuid=f"uuid-{app}", application_id=app, product_type="PROD_CDL",
        sync_state="POLLING", requested_files=[],
    )  # fmt: skip
    raw = {
        "flow_uuid": flow.flow_uuid,
        "ocr_data": [
            {
                "document_id": "0", "batch_id": "B", "file_uuid": f"f-{app}",
                "error_code": "", "error_reason": "",
                "data": {
                    "document_type": "IMEI_CLOSEUP_IMAGE",
                    "imei_number": {"value": [imei], "confidence_score": 1},
                },
            }
        ],
        "cross_checks": [],
    }  # fmt: skip
    return parse_callback_data(raw)


def test_reuse_partners_end_as_a_full_re_flag_leaves_them(batch, settings):
    """Partners are re-flagged for their reuse items only: the other items, and the QA
    sample (which depends on all of them), must end as flagging everything again does."""
    from atlas_review.review import flagging

    settings.REVIEW_QA_SAMPLE_PERCENT = 100
    ingest.apply_callback_data(clean_flow("CLEAN", "490154203237518"))  # APP-8 and APP-9 too
    clean = Flow.objects.get(flow_uuid="uuid-CLEAN")
    assert list(ReviewItem.objects.filter(flow=clean).values_list("kind", "status")) == [
        ("qa_sample", "open")
    ]

    ingest.apply_many(batch)

    kinds = dict(
        ReviewItem.objects.filter(flow=clean).values_list("kind", "status").order_by("kind")
    )
    assert kinds.get("reuse") == "open" and kinds.get("qa_sample") == "cleared"
    after_ingest = snapshot()
    flagging.flag_flows(Flow.objects.all())
    assert snapshot() == after_ingest
