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
