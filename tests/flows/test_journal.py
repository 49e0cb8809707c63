import json

import pytest

from atlas_review.flows import ingest, journal
from atlas_review.flows.models import Flow, Payload

pytestmark = pytest.mark.django_db


def stored(contract_payload) -> Payload:
    return journal.record(Payload.Source.CALLBACK_V3, json.dumps(contract_payload).encode())


def test_any_bytes_are_stored_before_parsing(db):
    payload = journal.record(Payload.Source.CALLBACK_V3, b"\xff\xfe not json")
    payload.refresh_from_db()
    assert bytes(payload.body) == b"\xff\xfe not json"
    assert payload.outcome == Payload.Outcome.RECEIVED and payload.size == 11

    journal.apply(payload.pk)
    payload.refresh_from_db()
    assert payload.outcome == Payload.Outcome.REJECTED
    assert "not valid UTF-8" in payload.error


def test_a_bug_while_applying_is_retried_then_shown_as_failed(contract_payload, monkeypatch):
    Flow.objects.create(
        flow_uuid=contract_payload["flow_uuid"], application_id="A", product_type="P"
    )
    payload = stored(contract_payload)

    def broken(*args, **kwargs):
        raise ValueError("unexpected shape in a receiver")

    monkeypatch.setattr(ingest, "apply_callback_data", broken)
    for _ in range(journal.MAX_APPLY_ATTEMPTS - 1):
        with pytest.raises(ValueError):
            journal.apply(payload.pk)
        payload.refresh_from_db()
        assert payload.outcome == Payload.Outcome.RECEIVED, "still pending: the sweeper retries it"

    journal.apply(payload.pk)

    payload.refresh_from_db()
    assert payload.outcome == Payload.Outcome.FAILED
    assert payload.attempts == journal.MAX_APPLY_ATTEMPTS
    assert "ValueError: unexpected shape" in payload.error


def test_reapplying_an_applied_payload_is_a_no_op(contract_payload):
    Flow.objects.create(
        flow_uuid=contract_payload["flow_uuid"], application_id="A", product_type="P"
    )
    first, second = stored(contract_payload), stored(contract_payload)
    assert journal.apply(first.pk).outcome == Payload.Outcome.APPLIED
    assert journal.apply(second.pk).outcome == Payload.Outcome.DUPLICATE
    # The row that took effect keeps saying so (a second apply used to relabel it).
    assert journal.apply(first.pk).outcome == Payload.Outcome.APPLIED


def _waiting(contract_payload, n: int, prefix: str) -> list[Payload]:
    """n stored callbacks, each for a flow of its own (the contract's content)."""
    rows = []
    for i in range(n):
        body = dict(contract_payload, flow_uuid=f"{prefix}-{i}")
        Flow.objects.create(
            flow_uuid=body["flow_uuid"], application_id=f"{prefix}{i}", product_type="P"
        )
        rows.append(stored(body))
    return rows


def test_one_task_applies_the_waiting_backlog_in_one_batch(contract_payload, monkeypatch):
    rows = _waiting(contract_payload, 4, "burst")
    junk = journal.record(Payload.Source.CALLBACK_V3, b"{not json")
    batches = []
    real = ingest.apply_deliveries
    monkeypatch.setattr(ingest, "apply_deliveries", lambda d: batches.append(len(d)) or real(d))

    settled = journal.apply_with_backlog(rows[2].pk)

    assert sorted(settled) == sorted([r.pk for r in rows] + [junk.pk])
    assert batches == [4]
    outcomes = dict(Payload.objects.values_list("pk", "outcome"))
    assert [outcomes[r.pk] for r in rows] == ["applied"] * 4 and outcomes[junk.pk] == "rejected"
    assert set(
        Payload.objects.filter(pk__in=[r.pk for r in rows]).values_list("attempts", flat=True)
    ) == {1}
    assert all(Flow.objects.get(flow_uuid=f"burst-{i}").documents.exists() for i in range(4))
    # The tasks of the others find their payload settled and do nothing.
    assert journal.apply_with_backlog(rows[0].pk) == [rows[0].pk]
    assert Payload.objects.get(pk=rows[0].pk).outcome == "applied"


def test_a_batch_that_fails_is_applied_one_by_one(contract_payload):
    rows = _waiting(contract_payload, 3, "mixed")
    unknown = stored(dict(contract_payload, flow_uuid="no-such-flow"))

    journal.apply_with_backlog(rows[0].pk)

    outcomes = dict(Payload.objects.values_list("pk", "outcome"))
    assert [outcomes[r.pk] for r in rows] == ["applied"] * 3
    assert outcomes[unknown.pk] == "unmatched"


def test_payloads_already_tried_are_left_to_their_own_task(contract_payload):
    first, retried = _waiting(contract_payload, 2, "tried")
    Payload.objects.filter(pk=retried.pk).update(attempts=1)

    assert journal.apply_with_backlog(first.pk) == [first.pk]
    assert Payload.objects.get(pk=retried.pk).outcome == "received"
