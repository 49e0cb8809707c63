"""The Atlas simulator: contract fidelity over real HTTP, deterministic content, faults, callbacks.

No database: the simulator is plain stdlib HTTP. Timing-dependent tests use fractions of a
second of processing time and poll with a deadline instead of sleeping blindly.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
from stdnum import imei as imei_number
from stdnum.in_ import aadhaar, pan

from atlas_review.atlas import payloads
from atlas_review.atlas.simulator import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    generate_batch_items,
    generate_flow_result,
    make_persona,
    start_simulator,
)

ROOT = Path(__file__).resolve().parents[2]
CONTRACT = json.loads((ROOT / "tests" / "data" / "contract_callback.json").read_text())
CREDS = {"Client-Id": DEFAULT_CLIENT_ID, "Client-Secret": DEFAULT_CLIENT_SECRET}
KINDS = ("invoice", "delivery_order", "aadhaar", "pan", "imei", "open_box")


@pytest.fixture
def sim():
    with start_simulator(processing_seconds=0, callback_backoff=0.05) as handle:
        yield handle


def token(sim, family: str = "v3") -> str:
    base = sim.v3_url if family == "v3" else sim.v1_url
    response = requests.post(f"{base}/authtoken", headers=CREDS, timeout=5)
    assert response.status_code == 200, response.text
    return payloads.parse_token(response.json()).access_token


def call(sim, method: str, path: str, tok: str | None = None, **kwargs) -> requests.Response:
    headers = {"Token": tok} if tok else {}
    return requests.request(method, sim.url + path, headers=headers, timeout=5, **kwargs)


def files_for(app: str, kinds=KINDS, base: str = "http://127.0.0.1:8765") -> list[dict]:
    return [
        {"file_url": f"{base}/files/{app}-{kind}.svg", "document_id": str(i)}
        for i, kind in enumerate(kinds)
    ]


def flow_get(sim, tok: str, what: str, flow_uuid: str) -> requests.Response:
    """GET /v3/verification/<what>?flow_uuid=..."""
    return call(sim, "GET", f"/v3/verification/{what}?flow_uuid={flow_uuid}", tok)


def new_flow(sim, tok: str, app: str = "APP-1", **extra) -> str:
    body = {"product_type": "PROD_CDL", "application_id": app, "flow_params": {}, **extra}
    response = call(sim, "POST", "/v3/verification/flow/init", tok, json=body)
    assert response.status_code == 200, response.text
    return payloads.parse_flow_init(response.json())


def upload(sim, tok: str, flow_uuid: str, files) -> str:
    body = {"flow_uuid": flow_uuid, "file_urls": files}
    response = call(sim, "POST", "/v3/verification/multiupload", tok, json=body)
    assert response.status_code == 200, response.text
    return payloads.parse_upload(response.json())[0]


def wait_for(predicate, timeout: float = 5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


def many_flows(seed: int = 42, n: int = 150) -> list[dict]:
    return [
        generate_flow_result(seed, f"flow-{i}", files_for(f"APP-{i}"), application_id=f"APP-{i}")
        for i in range(n)
    ]


# --- authentication --------------------------------------------------------------------------


def test_tokens_for_both_families_and_bad_credentials(sim):
    for base in (sim.v3_url, sim.v1_url):
        ok = requests.post(f"{base}/authtoken", headers=CREDS, timeout=5)
        assert ok.status_code == 200
        assert ok.json()["expires_in"] == 3600
        assert ok.json()["access_token"].count(".") == 2  # JWT-shaped
        bad = requests.post(
            f"{base}/authtoken", headers={**CREDS, "Client-Secret": "wrong"}, timeout=5
        )
        assert (bad.status_code, bad.json()) == (401, {"message": "invalid credentials"})
        missing = requests.post(f"{base}/authtoken", timeout=5)
        assert missing.status_code == 401
    assert sim.stats()["tokens_issued"] == 2


def test_calls_without_a_valid_token_get_401(sim):
    for tok in (None, "not-a-token"):
        response = call(sim, "GET", "/v3/verification/status?flow_uuid=x", tok)
        assert (response.status_code, response.json()) == (
            401,
            {"message": "invalid or expired token"},
        )
    assert call(sim, "GET", "/v1/docstream/extracts?batch_id=x").status_code == 401


def test_tokens_expire_by_ttl_and_on_demand(sim):
    sim.knobs.token_ttl = 0.5
    short = token(sim)
    assert call(sim, "GET", "/v3/verification/status?flow_uuid=x", short).status_code == 404
    time.sleep(0.55)
    assert call(sim, "GET", "/v3/verification/status?flow_uuid=x", short).status_code == 401

    sim.knobs.token_ttl = 3600
    tok = token(sim, "v1")  # one token store serves both families
    assert call(sim, "GET", "/v3/verification/status?flow_uuid=x", tok).status_code == 404
    assert call(sim, "POST", "/_sim/expire-tokens").json() == {"expired": 1}
    assert call(sim, "GET", "/v3/verification/status?flow_uuid=x", tok).status_code == 401


# --- request validation ----------------------------------------------------------------------


def test_missing_and_unknown_parameters(sim):
    tok = token(sim)
    init = "/v3/verification/flow/init"
    r = call(sim, "POST", init, tok, json={"application_id": "A"})
    assert (r.status_code, r.json()["message"]) == (400, "product_type is required")
    r = call(sim, "POST", init, tok, json={"product_type": "PROD_CDL"})
    assert (r.status_code, r.json()["message"]) == (400, "application_id is required")
    r = call(sim, "POST", init, tok, data=b"{not json")
    assert r.status_code == 400 and "JSON" in r.json()["message"]

    up = "/v3/verification/multiupload"
    files = files_for("A", ("invoice",))
    r = call(sim, "POST", up, tok, json={"file_urls": files})
    assert (r.status_code, r.json()["message"]) == (400, "flow_uuid is required")
    flow = new_flow(sim, tok, "A")
    r = call(sim, "POST", up, tok, json={"flow_uuid": flow})
    assert (r.status_code, r.json()["message"]) == (400, "file_urls is required")
    r = call(sim, "POST", up, tok, json={"flow_uuid": flow, "file_urls": [{"document_id": "1"}]})
    assert (r.status_code, r.json()["message"]) == (400, "file_urls[0].file_url is required")
    r = call(sim, "POST", up, tok, json={"flow_uuid": "nope", "file_urls": files})
    assert (r.status_code, r.json()["message"]) == (404, "flow not found")

    for path in ("/v3/verification/status", "/v3/verification/extracts"):
        assert call(sim, "GET", path, tok).json() == {"message": "flow_uuid is required"}
        assert call(sim, "GET", path, tok).status_code == 400
        assert call(sim, "GET", f"{path}?flow_uuid=nope", tok).status_code == 404

    r = call(sim, "POST", "/v1/docstream/multiupload", tok, json={"file_urls": files})
    assert (r.status_code, r.json()["message"]) == (400, "product_type is required")
    r = call(sim, "GET", "/v1/docstream/extracts", tok)
    assert (r.status_code, r.json()) == (400, {"message": "batch_id is required"})
    assert call(sim, "GET", "/v1/docstream/extracts?batch_id=B", tok).status_code == 404
    assert call(sim, "GET", "/v3/verification/nowhere", tok).status_code == 404
    assert call(sim, "GET", "/v3/verification/flow/init", tok).status_code == 405


# --- v3 flow ---------------------------------------------------------------------------------


def test_status_progresses_and_extracts_wait_for_it(sim):
    sim.knobs.processing_seconds = 0.8
    tok = token(sim)
    flow = new_flow(sim, tok)
    status = f"/v3/verification/status?flow_uuid={flow}"
    extracts = f"/v3/verification/extracts?flow_uuid={flow}"
    first = payloads.parse_status(call(sim, "GET", status, tok).json())
    assert (first.upload_status, first.master_status) == ("NOT_STARTED", "NOT_STARTED")
    r = call(sim, "GET", extracts, tok)
    assert (r.status_code, r.json()["message"]) == (409, "no documents uploaded for this flow")

    batch_id = upload(sim, tok, flow, files_for("APP-1"))
    assert payloads.parse_upload({"batch_id": batch_id})
    assert len(batch_id.split("-")) == 4 and batch_id.startswith("BATCH-")
    _, digits, letters, stamp = batch_id.split("-")
    assert (len(digits), len(letters), len(stamp)) == (5, 5, 14)
    assert digits.isdigit() and letters.isalpha() and letters.isupper() and stamp.isdigit()
    raw = call(sim, "GET", status, tok).json()
    assert raw["master_status"] == "IN_PROGRESS" and "crossheck_status" in raw  # sic
    r = call(sim, "GET", extracts, tok)
    assert (r.status_code, r.json()["message"]) == (409, "flow is still processing")

    done = wait_for(
        lambda: (s := call(sim, "GET", status, tok).json())["master_status"] == "SUCCESS" and s
    )
    assert done == {
        "upload_status": "SUCCESS",
        "processing_status": "SUCCESS",
        "crossheck_status": "COMPLETED",
        "master_status": "SUCCESS",
    }
    result = payloads.parse_callback_data(call(sim, "GET", extracts, tok).json())
    assert result.flow_uuid == flow
    assert {d.batch_id for d in result.documents} == {batch_id}
    assert len({d.file_uuid for d in result.documents}) == len(result.documents) >= 6


def test_extracts_have_the_contract_shape(sim):
    tok = token(sim)
    flow = new_flow(sim, tok)
    upload(sim, tok, flow, files_for("APP-1"))
    body = flow_get(sim, tok, "extracts", flow).json()
    assert set(body) == set(CONTRACT)
    item_keys = {"data", "document_id", "error_code", "error_reason", "batch_id", "file_uuid"}
    assert {key for item in CONTRACT["ocr_data"] for key in item} <= item_keys
    for item in body["ocr_data"]:
        assert set(item) == item_keys
        for name, value in item["data"].items():
            if name != "document_type":
                assert set(value) == {"value", "confidence_score"}
    check_keys = set(CONTRACT["cross_checks"][0])
    assert body["cross_checks"] and all(set(c) == check_keys for c in body["cross_checks"])
    payloads.parse_callback_data(body)


def test_single_object_upload_and_several_uploads_per_flow(sim):
    tok = token(sim)
    flow = new_flow(sim, tok)
    first = upload(sim, tok, flow, files_for("APP-1", ("invoice",))[0])  # one object
    second = upload(sim, tok, flow, files_for("APP-1", ("aadhaar", "pan")))
    assert first != second
    wait_for(lambda: flow_get(sim, tok, "status", flow).json()["master_status"] == "SUCCESS")
    result = payloads.parse_callback_data(flow_get(sim, tok, "extracts", flow).json())
    batches = [d.batch_id for d in result.documents]
    assert batches[0] == first and batches[-1] == second and batches[-2] == second


def test_fail_and_stuck_rates(sim):
    tok = token(sim)
    sim.knobs.fail_rate = 1
    failed = new_flow(sim, tok, "F-1")
    upload(sim, tok, failed, files_for("F-1", ("invoice",)))
    sim.knobs.fail_rate, sim.knobs.stuck_rate = 0, 1
    stuck = new_flow(sim, tok, "S-1")
    upload(sim, tok, stuck, files_for("S-1", ("invoice",)))
    time.sleep(0.05)
    status = flow_get(sim, tok, "status", failed).json()
    assert (status["processing_status"], status["master_status"]) == ("FAILED", "FAILED")
    r = flow_get(sim, tok, "extracts", failed)
    assert (r.status_code, r.json()["message"]) == (422, "flow processing failed")
    status = flow_get(sim, tok, "status", stuck).json()
    assert status["master_status"] == "IN_PROGRESS"
    assert flow_get(sim, tok, "extracts", stuck).status_code == 409


# --- v1 docstream ----------------------------------------------------------------------------


def test_v1_batches_paginate(sim):
    sim.knobs.processing_seconds = 0.6
    tok = token(sim, "v1")
    files = files_for("V1-1", ("aadhaar", "pan", "imei", "do", "open_box"))
    r = call(sim, "POST", "/v1/docstream/multiupload", tok, json={"product_type": "POC_CDL", "file_urls": files})  # fmt: skip
    batch_id = r.json()["batch_id"]
    first_page = f"/v1/docstream/extracts?batch_id={batch_id}&page=1&per_page=2"
    r = call(sim, "GET", first_page, tok)
    assert (r.status_code, r.json()["message"]) == (409, "batch is still processing")
    wait_for(lambda: call(sim, "GET", first_page, tok).status_code == 200)

    pages = []
    for number in (1, 2, 3):
        body = call(sim, "GET", f"/v1/docstream/extracts?batch_id={batch_id}&page={number}&per_page=2", tok).json()  # fmt: skip
        assert set(body) == {"data", "page", "per_page", "total_pages", "total_items", "has_next", "has_prev"}  # fmt: skip
        pages.append(payloads.parse_batch_page(body, batch_id))
        assert (body["has_prev"], body["has_next"]) == (number > 1, number < 3)
    assert [len(p.documents) for p in pages] == [2, 2, 1]
    assert {(p.total_items, p.total_pages) for p in pages} == {(5, 3)}
    documents = [d for p in pages for d in p.documents]
    assert [d.document_id for d in documents] == ["0", "1", "2", "3", "4"]
    assert all(d.batch_id == batch_id and d.file_uuid for d in documents)
    assert len({d.file_uuid for d in documents}) == 5
    types = [d.document_type for d in documents if not d.error_code]
    assert set(types) <= {"AADHAAR", "PAN", "IMEI_CLOSEUP_IMAGE", "DELIVERY_ORDER", "ASSET_OPEN_BOX_IMAGE"}  # fmt: skip
    r = call(sim, "GET", f"/v1/docstream/extracts?batch_id={batch_id}&page=0", tok)
    assert r.status_code == 400


# --- generated content -----------------------------------------------------------------------


def test_results_are_deterministic_per_seed():
    files = files_for("APP-9")
    same = generate_flow_result(7, "f-1", files, application_id="APP-9")
    assert generate_flow_result(7, "f-1", files, application_id="APP-9") == same
    assert generate_flow_result(8, "f-1", files, application_id="APP-9") != same
    assert generate_batch_items(7, "B-1", files) == generate_batch_items(7, "B-1", files)

    def content(sim) -> list:
        tok = token(sim)
        flow = new_flow(sim, tok, "APP-9")
        upload(sim, tok, flow, files)
        body = flow_get(sim, tok, "extracts", flow).json()
        return [
            [(i["data"], i["document_id"], i["error_code"]) for i in body["ocr_data"]],
            body["cross_checks"],
        ]

    with (
        start_simulator(seed=7, processing_seconds=0) as a,
        start_simulator(seed=7, processing_seconds=0) as b,
        start_simulator(seed=8, processing_seconds=0) as c,
    ):
        assert content(a) == content(b) != content(c)


def test_error_documents_unknown_fields_and_confidence_spread():
    flows = many_flows(n=120)
    items = [item for flow in flows for item in flow["ocr_data"]]
    errors = Counter(item["error_code"] for item in items)
    assert 0.04 < (errors["UNRECOGNISED"] + errors["INVALID_DOC"]) / len(items) < 0.15
    unrecognised = [i for i in items if i["error_code"] == "UNRECOGNISED"]
    assert unrecognised and all(i["data"] == {} for i in unrecognised)
    assert {i["error_reason"] for i in unrecognised} == {"document not in list"}
    invalid = [i for i in items if i["error_code"] == "INVALID_DOC"]
    assert invalid and all(i["error_reason"] and i["data"]["document_type"] for i in invalid)
    assert "multiple people" in {i["error_reason"] for i in invalid}

    known = {"warranty_card_present", "scheme_code", "qr_code_present", "signature_present",
             "serial_number", "box_seal_intact"}  # fmt: skip
    assert known & {name for i in items for name in i["data"]}
    # one upload yielding two documents that share a document_id
    assert any(len(f["ocr_data"]) > len(KINDS) for f in flows)

    fields = [v for i in items for k, v in i["data"].items() if k != "document_type"]
    scores = [f["confidence_score"] for f in fields]
    assert 0.25 < sum(s < 0.8 for s in scores) / len(scores) < 0.5
    assert any(s == 0.0 and isinstance(s, float) for s in scores)
    assert any(s == 1 and isinstance(s, int) for s in scores)
    assert any(f == {"value": "", "confidence_score": 0.0} for f in fields)
    assert all(0 <= s <= 1 for s in scores)
    for flow in flows:
        payloads.parse_callback_data(flow)


def test_cross_check_scores_are_spread_between_40_and_100():
    checks = [c for flow in many_flows(n=120) for c in flow["cross_checks"]]
    scores = [c["similarity_score"] for c in checks]
    assert all(isinstance(s, int) and 40 <= s <= 100 for s in scores)
    assert sum(s >= 90 for s in scores) > 0.3 * len(scores)
    assert sum(70 <= s < 90 for s in scores) > 0.1 * len(scores)
    assert sum(s < 70 for s in scores) > 0.05 * len(scores)
    assert len(set(scores)) > 30
    names = {c["name"] for c in checks}
    assert {"CUSTOMER_NAME", "DEALER_ADDRESS", "CUSTOMER_DELIVERY_ADDRESS",
            "CUSTOMER_MOBILE_NUMBER", "IMEI_NUMBER", "LOAN_AMOUNT"} <= names  # fmt: skip
    exact = [c for c in checks if c["source_value"] == c["target_value"] and c["source_value"]]
    assert exact and all(c["similarity_score"] == 100 for c in exact)


def test_identifiers_mostly_valid_some_invalid_and_imeis_reused():
    def values(flows, doc_type, field):
        for flow in flows:
            for item in flow["ocr_data"]:
                if item["data"].get("document_type") == doc_type and item["data"].get(field):
                    yield flow["flow_uuid"], item["data"][field]["value"]

    flows = many_flows(n=200)
    aadhaars = [v for _, v in values(flows, "AADHAAR", "aadhaar_number") if v]
    assert all(len(a) == 12 and a.isdigit() for a in aadhaars)
    valid = sum(aadhaar.is_valid(a) for a in aadhaars)
    assert 0.8 * len(aadhaars) < valid < len(aadhaars)

    pans = [v for _, v in values(flows, "PAN", "pan_number") if v]
    assert 0.8 * len(pans) < sum(pan.is_valid(p) for p in pans) < len(pans)
    assert all(p[3] == "P" for p in pans if pan.is_valid(p))

    owners = defaultdict(set)
    imeis = []
    for flow_uuid, value in values(flows, "IMEI_CLOSEUP_IMAGE", "imei_number"):
        for number in value if isinstance(value, list) else []:
            imeis.append(number)
            owners[number].add(flow_uuid)
    assert all(len(n) == 15 and n.isdigit() for n in imeis)
    assert 0.75 * len(imeis) < sum(imei_number.is_valid(n) for n in imeis) < len(imeis)
    assert any(len(flows_with) > 1 for flows_with in owners.values())
    prices = [v for _, v in values(flows, "IMEI_CLOSEUP_IMAGE", "price") if v != ""]
    assert prices and all(isinstance(p, int) for p in prices)


# --- faults ----------------------------------------------------------------------------------


def test_error_rate_and_rate_limit(sim):
    tok = token(sim)
    path = "/v3/verification/status?flow_uuid=x"
    sim.knobs.error_rate = 1
    codes = {call(sim, "GET", path, tok).status_code for _ in range(12)}
    assert codes and codes <= {500, 503}
    sim.knobs.error_rate = 0
    assert call(sim, "GET", path, tok).status_code == 404

    sim.knobs.rate_limit_every = 3
    responses = [call(sim, "GET", path, tok) for _ in range(6)]
    limited = [r for r in responses if r.status_code == 429]
    assert len(limited) == 2 and all(r.headers["Retry-After"] == "1" for r in limited)
    assert {r.status_code for r in responses} == {404, 429}
    stats = sim.stats()
    assert stats["rate_limited"] == 2 and stats["faults_injected"] == 12
    # control endpoints are never faulted
    sim.knobs.error_rate = 1
    assert call(sim, "GET", "/_sim/stats").status_code == 200


def test_faults_are_deterministic_for_a_seed():
    def sequence(seed: int) -> list[int]:
        with start_simulator(seed=seed, error_rate=0.5) as s:
            return [call(s, "GET", "/v3/verification/status").status_code for _ in range(20)]

    first = sequence(3)
    assert first == sequence(3)
    assert 401 in first and {500, 503} & set(first)  # faults mixed with real answers


def test_knobs_endpoint_and_stats(sim):
    r = call(sim, "POST", "/_sim/knobs", json={"processing_seconds": 2.5, "callbacks": False})
    assert r.status_code == 200
    assert r.json()["processing_seconds"] == 2.5 and r.json()["client_secret"] == "***"
    assert sim.knobs.processing_seconds == 2.5 and sim.knobs.callbacks is False
    r = call(sim, "POST", "/_sim/knobs", json={"no_such_knob": 1})
    assert r.status_code == 400 and "no_such_knob" in r.json()["message"]
    assert call(sim, "POST", "/_sim/knobs", json={"fail_rate": 2}).status_code == 400
    stats = call(sim, "GET", "/_sim/stats").json()
    assert stats["requests"]["POST /_sim/knobs"] == 3
    with pytest.raises(ValueError):
        start_simulator(bogus=1)


def test_scans_are_served_without_auth(sim):
    r = requests.get(f"{sim.url}/files/APP-1-invoice.svg", timeout=5)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("image/svg+xml")
    assert r.text.startswith("<svg") and "TAX INVOICE" in r.text
    # the scan shows the printed truth behind the application's extracted values
    assert make_persona(42, "APP-1").name in r.text
    pan_scan = requests.get(f"{sim.url}/files/APP-1-pan.svg", timeout=5).text
    assert "PERMANENT ACCOUNT NUMBER" in pan_scan
    odd = requests.get(f"{sim.url}/files/%3Cscript%3E.png", timeout=5)
    assert odd.status_code == 200 and "<script>" not in odd.text
    assert sim.stats()["requests"]["GET /files"] == 3


# --- callbacks -------------------------------------------------------------------------------


class Receiver:
    """A tiny lender: /auth issues a token, /callback records what Atlas posts."""

    def __init__(self, callback_statuses=()):
        self.requests: list[tuple[str, dict, bytes]] = []
        self.statuses = list(callback_statuses)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.requests.append((self.path, dict(self.headers), body))
                if self.path == "/auth":
                    status, answer = 200, {"access_token": "lender-token-1", "expires_in": 60}
                else:
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                    answer = {"ok": status == 200}
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()

    def callbacks(self) -> list[tuple[str, dict, bytes]]:
        return [r for r in self.requests if r[0] == "/callback"]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def test_v3_callback_authenticates_then_posts_callback_data(sim, receiver):
    sim.knobs.callback_client_id, sim.knobs.callback_client_secret = "atlas-cb", "cb-secret"
    tok = token(sim)
    flow = new_flow(
        sim, tok, "CB-1", auth_url=receiver.url + "/auth", callback_url=receiver.url + "/callback",
        flow_params={"branch": "BLR-01"},
    )  # fmt: skip
    upload(sim, tok, flow, files_for("CB-1"))
    wait_for(receiver.callbacks)
    (auth_path, auth_headers, _), (path, headers, body) = receiver.requests
    assert auth_path == "/auth"
    assert (auth_headers["Client-Id"], auth_headers["Client-Secret"]) == ("atlas-cb", "cb-secret")
    assert path == "/callback" and headers["Token"] == "lender-token-1"
    assert headers["Content-Type"] == "application/json"
    payload = json.loads(body)
    assert payload["flow_params"] == {"branch": "BLR-01"}
    data = payloads.parse_callback_data(payload)
    assert data.flow_uuid == flow and len(data.documents) >= 6
    extracts = flow_get(sim, tok, "extracts", flow).json()
    assert payloads.parse_callback_data(extracts).content_hash() == data.content_hash()
    wait_for(lambda: sim.stats()["callbacks_sent"] == 1)
    time.sleep(0.3)  # the ticker must not send it twice
    assert len(receiver.callbacks()) == 1


def test_callbacks_retry_then_give_up(sim, receiver):
    receiver.statuses = [500, 200]
    tok = token(sim)
    urls = {"auth_url": receiver.url + "/auth", "callback_url": receiver.url + "/callback"}
    upload(sim, tok, new_flow(sim, tok, "R-1", **urls), files_for("R-1", ("invoice",)))
    wait_for(lambda: sim.stats()["callbacks_sent"] == 1)
    assert len(receiver.callbacks()) == 2 and sim.stats()["callback_attempts"] == 2

    sim.knobs.callback_retries = 1
    receiver.statuses = [503, 503, 503]
    upload(sim, tok, new_flow(sim, tok, "R-2", **urls), files_for("R-2", ("pan",)))
    wait_for(lambda: sim.stats()["callbacks_failed"] == 1)
    assert sim.stats()["deliveries"][-1]["ok"] is False

    # an unreachable auth_url counts as a failure too; no callbacks at all when switched off
    dead = {"auth_url": "http://127.0.0.1:9/auth", "callback_url": "http://127.0.0.1:9/cb"}
    upload(sim, tok, new_flow(sim, tok, "R-3", **dead), files_for("R-3", ("pan",)))
    wait_for(lambda: sim.stats()["callbacks_failed"] == 2)
    sim.knobs.callbacks = False
    before = len(receiver.requests)
    upload(sim, tok, new_flow(sim, tok, "R-4", **urls), files_for("R-4", ("pan",)))
    time.sleep(0.3)
    assert len(receiver.requests) == before


def test_v1_callback_posts_the_paginated_shape(sim, receiver):
    sim.knobs.v1_auth_url = receiver.url + "/auth"
    sim.knobs.v1_callback_url = receiver.url + "/callback"
    tok = token(sim, "v1")
    files = files_for("V1-CB", ("aadhaar", "pan", "imei"))
    r = call(sim, "POST", "/v1/docstream/multiupload", tok, json={"product_type": "POC_CDL", "file_urls": files})  # fmt: skip
    batch_id = r.json()["batch_id"]
    (_, headers, body) = wait_for(receiver.callbacks)[0]
    assert headers["Token"] == "lender-token-1"
    payload = json.loads(body)
    assert payload["batch_id"] == batch_id
    assert (payload["page"], payload["total_pages"], payload["has_next"]) == (1, 1, False)
    page = payloads.parse_batch_page(payload)
    assert page.batch_id == batch_id and page.total_items == len(page.documents) == 3


# --- management command ----------------------------------------------------------------------


def test_management_command_serves_until_interrupted():
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "manage.py", "atlas_simulator", "--port", "0", "--seed", "5"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        lines = []
        while not any("listening on" in line for line in lines):
            line = process.stdout.readline()
            assert line, "".join(lines)
            lines.append(line)
        url = lines[-1].rsplit(" ", 1)[-1].strip()
        ok = requests.post(f"{url}/v3/verification/authtoken", headers=CREDS, timeout=5)
        assert ok.status_code == 200
        assert requests.get(f"{url}/_sim/knobs", timeout=5).json()["seed"] == 5
    finally:
        process.send_signal(signal.SIGINT)
        output = process.communicate(timeout=10)[0]
    logged = "".join(lines) + output
    assert "POST /v3/verification/authtoken -> 200" in logged
    assert DEFAULT_CLIENT_SECRET not in logged and ok.json()["access_token"] not in logged
    assert process.returncode == 0
