"""Duplicate, concurrent and out-of-order callbacks for one flow, from several threads at
once, over HTTP to a live server (each request on its own database connection): one
consistent final state, the newest delivery's, with no duplicate rows and every delivery
journalled with an outcome that says what it did."""

from __future__ import annotations

import copy
import json
import random
import threading
from collections import Counter
from datetime import timedelta

import pytest
import requests
from django.db import connection
from django.utils import timezone
from django.utils.http import http_date

from atlas_review.atlas.payloads import parse_callback_data
from atlas_review.flows import journal
from atlas_review.flows.models import CrossCheck, Document, ExtractedField, Flow, Payload, Upload

pytestmark = pytest.mark.django_db(transaction=True)

VERSIONS, COPIES, THREADS = 5, 4, 8


def make_flow(contract_payload, uuid: str) -> Flow:
    flow = Flow.objects.create(flow_uuid=uuid, application_id=uuid.upper(), product_type="P")
    Upload.objects.create(batch_id=f"B-{uuid}", api="v3", flow=flow, files=[])
    return flow


def version(contract_payload, uuid: str, n: int) -> dict:
    """Atlas's nth answer for the flow: the customer name and a similarity change."""
    body = copy.deepcopy(contract_payload)
    body["flow_uuid"] = uuid
    body["ocr_data"][0]["data"]["customer_name"] = {"value": f"Name v{n}", "confidence_score": 0.5}
    body["cross_checks"][0]["similarity_score"] = 50 + n
    return body


def token(base: str) -> str:
    return requests.post(
        base + "/atlas/auth",
        headers={
            "Client-Id": "atlas-callback-test",
            "Client-Secret": "callback-secret-for-tests-only",
        },
    ).json()["access_token"]


def post_all(base: str, deliveries: list[tuple[bytes, str]]) -> list[int]:
    """Post every (body, Date) from THREADS threads released together."""
    tok, statuses, barrier = token(base), [], threading.Barrier(THREADS)
    pending = list(deliveries)
    lock = threading.Lock()

    def run():
        session = requests.Session()
        barrier.wait()
        while True:
            with lock:
                if not pending:
                    return
                body, date = pending.pop()
            r = session.post(
                base + "/atlas/callback", data=body, timeout=30,
                headers={"Token": tok, "Date": date, "Content-Type": "application/json"},
            )  # fmt: skip
            statuses.append(r.status_code)

    threads = [threading.Thread(target=run) for _ in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return statuses


@pytest.mark.parametrize("round_", range(3))
def test_concurrent_out_of_order_duplicates_end_in_the_newest_state(
    live_server, contract_payload, round_
):
    uuid = f"concurrent-{round_}"
    flow = make_flow(contract_payload, uuid)
    sent_at = timezone.now() - timedelta(minutes=5)
    deliveries = [
        (json.dumps(version(contract_payload, uuid, n)).encode(), http_date((sent_at + timedelta(seconds=n)).timestamp()))
        for n in range(1, VERSIONS + 1)
        for _ in range(COPIES)
    ]  # fmt: skip
    random.Random(round_).shuffle(deliveries)

    statuses = post_all(live_server.url, deliveries)

    assert Counter(statuses) == {202: VERSIONS * COPIES}
    newest = parse_callback_data(version(contract_payload, uuid, VERSIONS))
    flow.refresh_from_db()
    assert flow.results_hash == newest.content_hash()
    assert ExtractedField.objects.get(flow=flow, name="customer_name").value == f"Name v{VERSIONS}"
    assert CrossCheck.objects.get(flow=flow, position=0).similarity == 50 + VERSIONS
    # One row per document, field and check: concurrent first deliveries did not double up.
    assert Document.objects.filter(flow=flow).count() == len(newest.documents)
    assert ExtractedField.objects.filter(flow=flow).count() == sum(
        len(d.fields) for d in newest.documents
    )
    assert CrossCheck.objects.filter(flow=flow).count() == len(newest.cross_checks)

    outcomes = Counter(Payload.objects.filter(flow=flow).values_list("outcome", flat=True))
    assert sum(outcomes.values()) == VERSIONS * COPIES
    assert set(outcomes) <= {"applied", "duplicate", "stale"}, outcomes
    # The newest version took effect exactly once; an older one at most once (if it came
    # first), each later copy or older version said so.
    applied = [p.sha256 for p in Payload.objects.filter(flow=flow, outcome="applied")]
    assert len(set(applied)) == len(applied) <= VERSIONS, "no version applied twice"
    newest_body = json.dumps(version(contract_payload, uuid, VERSIONS)).encode()
    assert Payload.objects.get(flow=flow, outcome="applied", body=newest_body)


def test_two_workers_applying_one_stored_delivery_leave_it_applied_once(contract_payload):
    """A redelivered task and a sweep (or two sweeps) apply the same journal row at once."""
    flow = make_flow(contract_payload, "same-row")
    body = json.dumps(version(contract_payload, "same-row", 1)).encode()
    payload = journal.record(Payload.Source.CALLBACK_V3, body, as_of=timezone.now())
    barrier, results = threading.Barrier(4), []

    def apply():
        try:
            barrier.wait()
            results.append(journal.apply(payload.pk).outcome)
        finally:
            connection.close()

    threads = [threading.Thread(target=apply) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)

    payload.refresh_from_db()
    # Before the fix the later applies relabelled the row "duplicate": the journal then
    # showed no delivery as the one the flow's data came from.
    assert payload.outcome == "applied"
    assert len(results) == 4 and set(results) == {"applied"}
    assert Document.objects.filter(flow=flow).count() == len(contract_payload["ocr_data"])
