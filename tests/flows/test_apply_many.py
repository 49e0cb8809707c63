"""ingest.apply_many: many flows in one transaction, the same rows and outcomes as applying
them one by one, with a query count that does not grow with the batch."""

import copy

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from atlas_review.atlas.payloads import parse_callback_data
from atlas_review.flows import ingest
from atlas_review.flows.models import CrossCheck, Document, ExtractedField, Flow
from atlas_review.review.models import ReviewItem
from tests.flows.factories import awaiting_results

pytestmark = pytest.mark.django_db

KINDS = ("invoice", "delivery_order", "aadhaar", "pan", "imei")


def make_flows(n: int, prefix: str = "M") -> list[dict]:
    """n flows stored as after their upload, and the result Atlas delivers for each."""
    return [awaiting_results(f"{prefix}-{i}", kinds=KINDS) for i in range(n)]


def stored() -> list[tuple]:
    """Every Atlas row by its natural key, ids left out (they depend on insert order)."""
    return sorted(
        [
            *(("doc", d.flow.flow_uuid, d.key, d.document_type, d.file_url, d.error_code, d.withdrawn_at is None)
              for d in Document.objects.select_related("flow")),
            *(("field", f.flow.flow_uuid, f.document.key, f.name, repr(f.value), f.confidence, f.position, f.withdrawn_at is None)
              for f in ExtractedField.objects.select_related("flow", "document")),
            *(("check", c.flow.flow_uuid, c.key, repr(c.source_value), c.similarity, c.withdrawn_at is None)
              for c in CrossCheck.objects.select_related("flow")),
        ]
    )  # fmt: skip


def test_a_batch_stores_what_applying_one_by_one_stores(db):
    raws = make_flows(4)
    for raw in raws:
        ingest.apply_callback_data(parse_callback_data(raw))
    one_by_one = stored()
    Document.objects.all().delete()
    CrossCheck.objects.all().delete()
    Flow.objects.update(results_hash="", results_as_of=None, sync_state="POLLING")

    results = ingest.apply_many([parse_callback_data(raw) for raw in raws])

    assert [r.outcome for r in results] == [ingest.APPLIED] * 4
    assert stored() == one_by_one
    assert set(Flow.objects.values_list("sync_state", flat=True)) == {"DONE"}
    assert results[0].changes.created == (
        Document.objects.filter(flow=results[0].flow).count()
        + ExtractedField.objects.filter(flow=results[0].flow).count()
        + CrossCheck.objects.filter(flow=results[0].flow).count()
    )


def test_applying_a_batch_again_writes_nothing(db, django_assert_max_num_queries):
    payloads = [parse_callback_data(raw) for raw in make_flows(3)]
    ingest.apply_many(payloads)
    before = (
        sorted(Document.objects.values_list("id", "updated_at")),
        sorted(ExtractedField.objects.values_list("id", "updated_at")),
        sorted(CrossCheck.objects.values_list("id", "updated_at")),
    )

    # Locked and compared by hash: one SELECT ... FOR UPDATE (plus the savepoint pair).
    with django_assert_max_num_queries(3):
        results = ingest.apply_many(payloads)

    assert [r.outcome for r in results] == [ingest.DUPLICATE] * 3
    assert before == (
        sorted(Document.objects.values_list("id", "updated_at")),
        sorted(ExtractedField.objects.values_list("id", "updated_at")),
        sorted(CrossCheck.objects.values_list("id", "updated_at")),
    )


def test_the_queries_do_not_grow_with_the_batch(db, django_assert_num_queries, monkeypatch):
    # Without the receivers (other apps' work, per flow): what ingest itself sends.
    for signal in (ingest.results_applied, ingest.results_created):
        monkeypatch.setattr(signal, "receivers", [])
        monkeypatch.setattr(signal, "sender_receivers_cache", {})
    small = [parse_callback_data(raw) for raw in make_flows(2, "S")]
    large = [parse_callback_data(raw) for raw in make_flows(12, "L")]
    # lock, uploads, documents, cross-checks, ids, 3 COPYs, the flows' UPDATE, savepoint pair
    with django_assert_num_queries(11):
        ingest.apply_many(small)
    with django_assert_num_queries(11):
        ingest.apply_many(large)


def test_first_results_with_checks_and_flagging_take_the_same_queries_for_2_or_12_flows(
    db, django_assert_num_queries
):
    small = [parse_callback_data(raw) for raw in make_flows(2, "S")]
    large = [parse_callback_data(raw) for raw in make_flows(12, "L")]
    with CaptureQueriesContext(connection) as first:
        ingest.apply_many(small)
    # ingest 11; checks: config, results COPY, sightings COPY, reuse look-up; review:
    # rules config (3), review rows, items COPY.
    assert len(first) <= 20, [q["sql"][:80] for q in first.captured_queries]
    with django_assert_num_queries(len(first)):
        ingest.apply_many(large)
    assert ReviewItem.objects.filter(flow__flow_uuid__in=[p.flow_uuid for p in large]).exists()


def test_a_changed_redelivery_in_a_batch_updates_in_place(db):
    raws = make_flows(2)
    ingest.apply_many([parse_callback_data(raw) for raw in raws])
    field = ExtractedField.objects.filter(flow__flow_uuid=raws[1]["flow_uuid"]).order_by("pk")[0]
    changed = copy.deepcopy(raws[1])
    item = next(i for i in changed["ocr_data"] if field.name in i["data"])
    item["data"][field.name] = {"value": "corrected by Atlas", "confidence_score": 0.99}

    first, second = ingest.apply_many([parse_callback_data(raws[0]), parse_callback_data(changed)])

    assert (first.outcome, second.outcome) == (ingest.DUPLICATE, ingest.APPLIED)
    field.refresh_from_db()
    assert (field.value, field.confidence) == ("corrected by Atlas", 0.99)
    assert second.changes.changed_field_ids == {field.pk}


def test_a_flow_twice_in_one_batch_is_applied_in_order(db):
    raw = make_flows(1)[0]
    newer = copy.deepcopy(raw)
    newer["cross_checks"] = newer["cross_checks"][:1]

    results = ingest.apply_many([parse_callback_data(raw), parse_callback_data(newer)])

    assert [r.outcome for r in results] == [ingest.APPLIED, ingest.APPLIED]
    assert CrossCheck.objects.current().count() == 1
    assert CrossCheck.objects.count() == len(raw["cross_checks"]), "the others are withdrawn"


def test_an_unknown_flow_fails_the_batch_and_writes_nothing(db):
    raws = make_flows(2)
    raws[1]["flow_uuid"] = "nobody-knows-this-flow"

    with pytest.raises(ingest.UnmatchedPayload):
        ingest.apply_many([parse_callback_data(raw) for raw in raws])

    assert not Document.objects.exists()
    assert Flow.objects.filter(sync_state="DONE").count() == 0
