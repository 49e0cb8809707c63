import copy
import uuid

import pytest

from atlas_review.atlas.payloads import parse_callback_data
from atlas_review.flows import ingest
from atlas_review.flows.models import Flow, SyncState, Upload
from atlas_review.review import flagging, services
from atlas_review.review.models import (
    Decision,
    DecisionEvent,
    FlowReview,
    ItemStatus,
    Kind,
    MandatoryField,
    Priority,
    Queue,
    ReasonCode,
    ReviewItem,
    Scope,
    Threshold,
)
from atlas_review.review.tasks import reflag_open_flows
from tests.review.builders import PLAIN, check, deliver, document, make_flow, three_field_flow

pytestmark = pytest.mark.django_db


def items_of(flow, **filters):
    return {i.subject: i for i in ReviewItem.objects.filter(flow=flow, **filters)}


def test_the_contract_example_is_flagged_rule_by_rule(contract_payload):
    flow = Flow.objects.create(
        flow_uuid=contract_payload["flow_uuid"], application_id="12321321", product_type="PROD_CDL"
    )
    Upload.objects.create(batch_id="B1", api="v3", flow=flow, files=[])

    ingest.apply_callback_data(parse_callback_data(contract_payload))

    fields = items_of(flow, kind__in=[Kind.FIELD, Kind.VALIDATION])
    # Every readable field under 0.80: 9 of 10 invoice fields (customer_name is 0.9) and the
    # 3 IMEI fields. The INVALID_DOC document is one exception, not 2 more field items.
    assert len(fields) == 12
    # Two of them also fail a deterministic check: the check leads their reason.
    assert {s for s, i in fields.items() if i.kind == Kind.VALIDATION} == {
        "INVOICE.dealer_gst",
        "IMEI_CLOSEUP_IMAGE.imei_number",
    }
    assert fields["IMEI_CLOSEUP_IMAGE.imei_number"].reason == (
        "check failed, IMEI checksum: IMEI must have 15 digits (has 8); "
        "confidence 0.00 < 0.80 for IMEI_CLOSEUP_IMAGE.imei_number"
    )
    assert "INVOICE.customer_name" not in fields
    assert fields["INVOICE.invoice_date"].reason == (
        "confidence 0.00 < 0.80 for INVOICE.invoice_date"
    )
    # Two rules, one item: low confidence and the seeded "invoice total is mandatory".
    total = fields["INVOICE.total_invoice_amount"]
    assert total.reason == (
        "confidence 0.00 < 0.80 for INVOICE.total_invoice_amount; "
        "mandatory field INVOICE.total_invoice_amount is empty"
    )
    checks = items_of(flow, kind=Kind.CROSS_CHECK)
    assert list(checks) == ["DEALER_ADDRESS"], "the pairs at 90 are not below 90"
    assert checks["DEALER_ADDRESS"].reason == "similarity 60 < 90 (high priority)"
    assert checks["DEALER_ADDRESS"].priority == Priority.HIGH
    exceptions = sorted(i.reason for i in ReviewItem.objects.filter(kind=Kind.EXCEPTION))
    assert exceptions == ["INVALID_DOC: multiple people", "UNRECOGNISED: document not in list"]
    assert set(ReviewItem.objects.values_list("queue", flat=True)) == {
        Queue.FIELDS,
        Queue.CHECKS,
        Queue.EXCEPTIONS,
    }
    assert FlowReview.objects.filter(flow=flow).exists()


def test_flagging_again_changes_nothing(django_assert_max_num_queries):
    flow = three_field_flow()
    before = list(ReviewItem.objects.values_list("id", "status", "reason", "updated_at"))

    result = flagging.flag_flow(flow)

    assert (result.created, result.updated, result.cleared) == (0, 0, 0)
    assert list(ReviewItem.objects.values_list("id", "status", "reason", "updated_at")) == before


def test_a_confidence_override_per_document_type_and_field_wins():
    Threshold.objects.create(
        scope=Scope.CONFIDENCE, document_type=PLAIN, field_name="bank_name", value=0.99
    )
    Threshold.objects.create(scope=Scope.CONFIDENCE, document_type=PLAIN, value=0.5)

    flow = three_field_flow()

    items = items_of(flow)
    # bank_name 0.97 < its own 0.99; the type-wide 0.5 lets 0.55 and 0.61 through.
    assert set(items) == {f"{PLAIN}.bank_name", f"{PLAIN}.account_holder"}
    assert items[f"{PLAIN}.bank_name"].reason == f"confidence 0.97 < 0.99 for {PLAIN}.bank_name"
    assert items[f"{PLAIN}.bank_name"].threshold == 0.99


def test_a_similarity_override_per_check_name_and_its_high_priority_line():
    Threshold.objects.create(
        scope=Scope.SIMILARITY, check_name="DEALER_ADDRESS", value=95, high_priority_below=80
    )
    flow = make_flow(
        [document()],
        [check("DEALER_ADDRESS", "a", "b", 92), check("CUSTOMER_NAME", "a", "b", 92)],
    )

    items = items_of(flow)

    assert set(items) == {"DEALER_ADDRESS"}, "CUSTOMER_NAME keeps the default 90"
    assert items["DEALER_ADDRESS"].reason == "similarity 92 < 95"
    assert items["DEALER_ADDRESS"].priority == Priority.NORMAL


def test_a_changed_threshold_re_flags_open_flows_but_not_closed_ones(reviewer):
    open_flow = three_field_flow()
    closed_flow = three_field_flow()
    for item in ReviewItem.objects.filter(flow=closed_flow):
        services.claim(closed_flow.pk, reviewer)
        services.decide(item, reviewer, "accept")
    services.close(closed_flow.pk, reviewer, "approved")
    Threshold.objects.create(scope=Scope.CONFIDENCE, value=0.6)

    # Celery runs inline in tests; only the unclosed flow is evaluated.
    assert reflag_open_flows.delay().get() == 1

    assert set(items_of(open_flow, status=ItemStatus.OPEN)) == {
        f"{PLAIN}.account_holder",
        f"{PLAIN}.account_number",
    }, "0.61 is no longer below the new 0.60"
    assert items_of(open_flow)[f"{PLAIN}.ifsc"].status == ItemStatus.CLEARED
    assert not ReviewItem.objects.filter(flow=closed_flow, status=ItemStatus.CLEARED).exists()


def test_a_mandatory_field_that_is_missing_or_empty_is_flagged_whatever_its_confidence():
    MandatoryField.objects.create(document_type=PLAIN, field_name="account_number")
    MandatoryField.objects.create(document_type=PLAIN, field_name="ifsc")

    flow = make_flow([document(fields={"account_number": ("", 1)})])

    items = items_of(flow)
    assert items[f"{PLAIN}.account_number"].reason == (
        f"mandatory field {PLAIN}.account_number is empty"
    )
    missing = items[f"{PLAIN}.ifsc"]
    assert missing.reason == f"mandatory field {PLAIN}.ifsc is missing"
    assert missing.field is None and missing.document is not None


def test_documents_with_an_error_code_are_exceptions_with_their_reason():
    flow = make_flow(
        [
            document("", error_code="UNRECOGNISED", error_reason="document not in list"),
            document("PAN", {"name": ("X", 0.1)}, error_code="BLURRED"),
        ]
    )

    items = items_of(flow)

    assert {i.reason for i in items.values()} == {"UNRECOGNISED: document not in list", "BLURRED"}
    assert {i.queue for i in items.values()} == {Queue.EXCEPTIONS}


def test_a_flow_whose_sync_failed_goes_to_exceptions_until_results_arrive():
    flow = Flow.objects.create(flow_uuid="f-sync", application_id="A-sync", product_type="P")
    Upload.objects.create(batch_id="B-sync", api="v3", flow=flow, files=[])
    flow.sync_state = SyncState.GAVE_UP
    flow.last_error = "Still IN_PROGRESS after 360 minutes; stopped polling"
    flow.save(update_fields=["sync_state", "last_error"])

    item = ReviewItem.objects.get(flow=flow)
    assert (item.kind, item.queue) == (Kind.SYNC_FAILED, Queue.EXCEPTIONS)
    assert item.reason == "Gave up waiting: Still IN_PROGRESS after 360 minutes; stopped polling"

    deliver(flow, [document(fields={"bank_name": ("HDFC", 0.99)})])

    item.refresh_from_db()
    assert item.status == ItemStatus.CLEARED


def test_a_better_re_delivery_clears_an_open_item():
    flow = three_field_flow()

    deliver(flow, [document(fields={"account_holder": ("Pashangh Irani", 0.95)})])

    assert not ReviewItem.objects.filter(flow=flow, status=ItemStatus.OPEN).exists()


def _decide_all(flow, user, action="accept"):
    services.claim(flow.pk, user)
    for item in ReviewItem.objects.filter(flow=flow).needing_decision():
        services.decide(item, user, action)


def test_a_changed_value_supersedes_the_decision_and_returns_the_item(reviewer):
    flow = three_field_flow()
    _decide_all(flow, reviewer)
    holder = ReviewItem.objects.get(flow=flow, name="account_holder")
    decision = Decision.objects.get(item=holder)

    result = deliver(
        flow,
        [
            document(
                fields={
                    "account_holder": ("Pashang Irani", 0.42),  # a different value
                    "account_number": ("50100234567", 0.30),  # same value, new score
                    "ifsc": ("HDFC0001234", 0.61),
                    "bank_name": ("HDFC Bank", 0.97),
                }
            )
        ],
    )

    assert result.outcome == ingest.APPLIED
    decision.refresh_from_db()
    assert decision.superseded and decision.atlas_value == "Pashangh Irani"
    holder.refresh_from_db()
    assert holder.status == ItemStatus.OPEN and holder.priority == Priority.HIGH
    assert holder.reason.startswith("Atlas changed the value after it was decided; confidence")
    number = Decision.objects.get(item__name="account_number")
    assert not number.superseded, "a new score on the same value leaves the decision standing"
    event = DecisionEvent.objects.get(kind="superseded")
    assert (event.atlas_value, event.new_value, event.actor) == (
        "Pashangh Irani",
        "Pashang Irani",
        None,
    )
    # The superseded decision is kept, and a new one can be made on the new value.
    services.decide(holder, reviewer, "accept")
    assert Decision.objects.filter(item=holder).count() == 2


def test_a_change_after_closing_reopens_the_flow(reviewer):
    flow = three_field_flow()
    _decide_all(flow, reviewer)
    services.close(flow.pk, reviewer, "approved")

    deliver(flow, [document(fields={"account_holder": ("Someone Else", 0.9)})])

    review = FlowReview.objects.get(flow=flow)
    assert review.closed_at is None and review.outcome == ""
    assert DecisionEvent.objects.filter(flow=flow, kind="reopened", actor=None).exists()
    assert ReviewItem.objects.filter(flow=flow, status=ItemStatus.OPEN).count() == 1


def test_a_withdrawn_field_clears_its_item_and_supersedes_its_decision(reviewer):
    flow = three_field_flow()
    _decide_all(flow, reviewer)

    deliver(flow, [document(fields={"account_number": ("50100234567", 0.55)})])

    holder = ReviewItem.objects.get(flow=flow, name="account_holder")
    assert holder.status == ItemStatus.CLEARED
    assert Decision.objects.get(item=holder).superseded


def test_the_qa_sample_is_deterministic_and_close_to_its_share():
    flows = [Flow(flow_uuid=str(uuid.UUID(int=i)), pk=i) for i in range(1, 20_001)]

    sampled = [f for f in flows if flagging.in_qa_sample(f, 2)]

    assert 0.017 < len(sampled) / len(flows) < 0.023
    assert sampled == [f for f in flows if flagging.in_qa_sample(f, 2)]
    assert not any(flagging.in_qa_sample(f, 0) for f in flows[:1000])


def test_a_sampled_flow_with_nothing_flagged_goes_to_the_qa_queue():
    clean = [document(fields={"bank_name": ("HDFC Bank", 0.99)})]
    uuids = [f"qa-{i}" for i in range(400)]
    inside = next(u for u in uuids if flagging.in_qa_sample(Flow(flow_uuid=u), 2))
    outside = next(u for u in uuids if not flagging.in_qa_sample(Flow(flow_uuid=u), 2))

    sampled = make_flow(copy.deepcopy(clean), flow_uuid=inside)
    not_sampled = make_flow(copy.deepcopy(clean), flow_uuid=outside)

    item = ReviewItem.objects.get(flow=sampled)
    assert (item.kind, item.queue, item.priority) == (Kind.QA_SAMPLE, Queue.QA, Priority.LOW)
    assert item.reason == "QA sample (2% of flows nothing flagged)"
    assert not ReviewItem.objects.filter(flow=not_sampled).exists()


def test_a_flagged_flow_is_not_also_a_qa_sample(settings):
    settings.REVIEW_QA_SAMPLE_PERCENT = 100

    flow = three_field_flow()

    assert not ReviewItem.objects.filter(flow=flow, kind=Kind.QA_SAMPLE).exists()


def test_another_app_can_add_a_rule(monkeypatch):
    def imei_digits(data):
        for f in data.fields:
            if f.name == "account_number" and not str(f.value).isdigit():
                yield flagging.Flag(
                    key=f"field:{f.pk}", kind=Kind.FIELD, rule="validation",
                    reason="account number is not all digits", priority=Priority.HIGH,
                    field_id=f.pk, document_id=f.document_id, document_type=f.document_type,
                    name=f.name,
                )  # fmt: skip

    monkeypatch.setattr(flagging, "RULES", [*flagging.RULES, imei_digits])

    flow = make_flow([document(fields={"account_number": ("5O1OO", 0.55)})])

    item = ReviewItem.objects.get(flow=flow)
    assert item.rule == "validation" and item.priority == Priority.HIGH
    assert item.reason == (
        f"account number is not all digits; confidence 0.55 < 0.80 for {PLAIN}.account_number"
    )


def test_reason_codes_are_seeded_for_a_fresh_install():
    assert ReasonCode.objects.filter(active=True).count() >= 4
