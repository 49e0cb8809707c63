"""AtlasClient against a mocked Atlas (responses): tokens, retries, errors, pagination, secrets."""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
import responses
from django.core.cache.backends.locmem import LocMemCache

from atlas_review.atlas import payloads
from atlas_review.atlas.client import (
    AtlasAuthError,
    AtlasClient,
    AtlasError,
    AtlasPayloadError,
    AtlasRequestError,
    AtlasUnavailable,
)
from atlas_review.atlas.tokens import CacheTokenStore, MemoryTokenStore, token_key

V3 = "https://atlas.test/v3/verification"
V1 = "https://atlas.test/v1/docstream"
CLIENT_ID = "lender-client-7"
SECRET = "Sup3r-S3cret-Value-9f8e7d"
TOKEN = "eyJhbGciOiJIUzI1NiJ9.TOKEN-AAA.sig"
FLOW = "ec57821d-d766-4e24-81ef-a2768094511b"
STATUS_OK = {
    "upload_status": "SUCCESS",
    "processing_status": "SUCCESS",
    "crossheck_status": "COMPLETED",
    "master_status": "SUCCESS",
}


class FakeClock:
    def __init__(self, now: float = 1_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class TokenIssuer:
    """Token endpoint callback handing out tok-1, tok-2, ... and recording the headers."""

    def __init__(self, expires_in: int = 3600, delay: float = 0.0, prefix: str = "tok"):
        self.expires_in = expires_in
        self.delay = delay
        self.prefix = prefix
        self.issued: list[str] = []
        self.headers: list[dict] = []
        self._lock = threading.Lock()

    def __call__(self, request):
        if self.delay:
            time.sleep(self.delay)
        with self._lock:
            token = f"{self.prefix}-{len(self.issued) + 1}"
            self.issued.append(token)
            self.headers.append(dict(request.headers))
        return 200, {}, json.dumps({"access_token": token, "expires_in": self.expires_in})


@pytest.fixture
def rsps():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def sleeps():
    return []


@pytest.fixture
def make_client(clock, sleeps):
    def make(**kwargs) -> AtlasClient:
        options = {
            "timeout": (3.0, 10.0),
            "max_retries": 3,
            "token_store": MemoryTokenStore(clock=clock),
            "sleep": sleeps.append,
            "rng": lambda: 1.0,
        }
        options.update(kwargs)
        return AtlasClient(V3, V1, CLIENT_ID, SECRET, **options)

    return make


@pytest.fixture
def client(make_client):
    return make_client()


def add_token(rsps, root=V3, token=TOKEN, expires_in=3600):
    rsps.post(f"{root}/authtoken", json={"access_token": token, "expires_in": expires_in})


def sent(rsps, path: str) -> list:
    return [c for c in rsps.calls if c.request.path_url.split("?")[0].endswith(path)]


# --- tokens ----------------------------------------------------------------------------------


def test_one_token_is_reused_for_many_calls(rsps, client):
    add_token(rsps)
    rsps.get(f"{V3}/status", json=STATUS_OK)

    for _ in range(5):
        assert client.status(FLOW).finished

    token_calls = sent(rsps, "/authtoken")
    assert len(token_calls) == 1
    assert token_calls[0].request.headers["Client-Id"] == CLIENT_ID
    assert token_calls[0].request.headers["Client-Secret"] == SECRET
    assert all(c.request.headers["Token"] == TOKEN for c in sent(rsps, "/status"))
    assert client.request_counts == {"v3 POST /authtoken": 1, "v3 GET /status": 5}


def test_v1_and_v3_have_separate_tokens(rsps, client):
    v3_tokens, v1_tokens = TokenIssuer(prefix="v3"), TokenIssuer(prefix="v1")
    rsps.add_callback("POST", f"{V3}/authtoken", callback=v3_tokens)
    rsps.add_callback("POST", f"{V1}/authtoken", callback=v1_tokens)
    rsps.get(f"{V3}/status", json=STATUS_OK)
    rsps.post(f"{V1}/multiupload", json={"batch_id": "B1"})

    client.status(FLOW)
    client.v1_upload("POC_CDL", [("https://f/1.jpg", "1")])
    client.status(FLOW)
    client.v1_upload("POC_CDL", [("https://f/2.jpg", "2")])

    assert v3_tokens.issued == ["v3-1"]
    assert v1_tokens.issued == ["v1-1"]
    assert {c.request.headers["Token"] for c in sent(rsps, "/multiupload")} == {"v1-1"}


def test_token_is_renewed_shortly_before_expiry(rsps, client, clock):
    issuer = TokenIssuer(expires_in=3600)
    rsps.add_callback("POST", f"{V3}/authtoken", callback=issuer)
    rsps.get(f"{V3}/status", json=STATUS_OK)

    client.status(FLOW)
    clock.advance(3500)  # 100 s left: still outside the 60 s margin
    client.status(FLOW)
    assert issuer.issued == ["tok-1"]

    clock.advance(45)  # 55 s left
    client.status(FLOW)
    assert issuer.issued == ["tok-1", "tok-2"]
    assert [c.request.headers["Token"] for c in sent(rsps, "/status")] == [
        "tok-1",
        "tok-1",
        "tok-2",
    ]


def test_short_lived_token_keeps_a_proportional_margin(rsps, client, clock):
    issuer = TokenIssuer(expires_in=30)
    rsps.add_callback("POST", f"{V3}/authtoken", callback=issuer)
    rsps.get(f"{V3}/status", json=STATUS_OK)

    client.status(FLOW)
    clock.advance(20)
    client.status(FLOW)
    assert len(issuer.issued) == 1
    clock.advance(8)  # 2 s left, inside the 10% margin of a 30 s token
    client.status(FLOW)
    assert len(issuer.issued) == 2


def test_401_fetches_one_new_token_and_retries_once(rsps, client):
    issuer = TokenIssuer()
    rsps.add_callback("POST", f"{V3}/authtoken", callback=issuer)
    rsps.get(f"{V3}/status", json={"message": "Invalid or expired token"}, status=401)
    rsps.get(f"{V3}/status", json=STATUS_OK)

    assert client.status(FLOW).master_status == "SUCCESS"

    assert issuer.issued == ["tok-1", "tok-2"]
    assert [c.request.headers["Token"] for c in sent(rsps, "/status")] == ["tok-1", "tok-2"]
    # The fresh token is the one kept.
    client.status(FLOW)
    assert len(issuer.issued) == 2


def test_401_on_upload_is_retried_with_a_new_token(rsps, client):
    issuer = TokenIssuer()
    rsps.add_callback("POST", f"{V3}/authtoken", callback=issuer)
    rsps.post(f"{V3}/multiupload", status=401, json={"message": "expired"})
    rsps.post(f"{V3}/multiupload", json={"batch_id": "B1"})

    assert client.upload(FLOW, [("https://f/1.jpg", "1")]) == ["B1"]
    assert len(sent(rsps, "/multiupload")) == 2


def test_second_401_raises_auth_error(rsps, client):
    issuer = TokenIssuer()
    rsps.add_callback("POST", f"{V3}/authtoken", callback=issuer)
    rsps.get(f"{V3}/status", json={"message": "Invalid or expired token"}, status=401)

    with pytest.raises(AtlasAuthError) as info:
        client.status(FLOW)

    assert info.value.status == 401
    assert not info.value.transient
    assert len(issuer.issued) == 2
    assert len(sent(rsps, "/status")) == 2


def test_rejected_credentials_raise_auth_error_without_retrying(rsps, client):
    rsps.post(f"{V3}/authtoken", status=401, json={"message": "invalid client"})

    with pytest.raises(AtlasAuthError, match="invalid client"):
        client.status(FLOW)
    assert client.request_counts == {"v3 POST /authtoken": 1}


def test_ten_threads_at_expiry_fetch_exactly_one_token(rsps, make_client, clock):
    issuer = TokenIssuer(expires_in=3600, delay=0.05)
    rsps.add_callback("POST", f"{V3}/authtoken", callback=issuer)
    rsps.get(f"{V3}/status", json=STATUS_OK)
    client = make_client()
    client.status(FLOW)
    clock.advance(3600)  # every thread now finds the token expired

    barrier = threading.Barrier(10)
    errors: list[BaseException] = []

    def work():
        try:
            barrier.wait()
            client.status(FLOW)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert errors == []
    assert issuer.issued == ["tok-1", "tok-2"]
    assert [c.request.headers["Token"] for c in sent(rsps, "/status")[1:]] == ["tok-2"] * 10


def test_memory_store_serialises_renewal():
    store = MemoryTokenStore()
    fetches = []
    barrier = threading.Barrier(10)

    def fetch():
        fetches.append(1)
        time.sleep(0.05)
        return payloads.Token(f"tok-{len(fetches)}", 3600)

    results = []

    def work():
        barrier.wait()
        results.append(store.get_token("k", fetch))

    threads = [threading.Thread(target=work) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(fetches) == 1
    assert results == ["tok-1"] * 10


def test_rejected_token_is_replaced_only_once():
    """Two callers that both saw tok-1 refused: the second reuses the first's renewal."""
    store = MemoryTokenStore()
    issued = iter(["tok-1", "tok-2", "tok-3"])

    def fetch():
        return payloads.Token(next(issued), 3600)

    assert store.get_token("k", fetch) == "tok-1"
    assert store.get_token("k", fetch, reject="tok-1") == "tok-2"
    assert store.get_token("k", fetch, reject="tok-1") == "tok-2"


# --- Django cache store ----------------------------------------------------------------------


@pytest.fixture
def locmem():
    cache = LocMemCache(f"atlas-test-{random.random()}", {})
    yield cache
    cache.clear()


def test_cache_store_reuses_and_renews(locmem):
    clock = FakeClock()
    store = CacheTokenStore(locmem, clock=clock)
    issued = iter(["tok-1", "tok-2"])

    def fetch():
        return payloads.Token(next(issued), 3600)

    assert store.get_token("k", fetch) == "tok-1"
    assert store.get_token("k", fetch) == "tok-1"
    clock.advance(3541)
    assert store.get_token("k", fetch) == "tok-2"
    assert locmem.get("k:lock") is None  # the renewal lock is released


def test_cache_store_threads_at_expiry_fetch_exactly_one_token(locmem):
    store = CacheTokenStore(locmem, poll_interval=0.01)
    fetches = []
    barrier = threading.Barrier(10)

    def fetch():
        fetches.append(1)
        time.sleep(0.1)
        return payloads.Token(f"tok-{len(fetches)}", 3600)

    results = []

    def work():
        barrier.wait()
        results.append(store.get_token("k", fetch))

    threads = [threading.Thread(target=work) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(fetches) == 1
    assert results == ["tok-1"] * 10


def test_cache_store_gives_up_waiting_for_a_stuck_lock(locmem, rsps, make_client, sleeps):
    key = token_key(f"{V3}/authtoken", CLIENT_ID, SECRET)
    locmem.add(f"{key}:lock", "someone-else", 60)
    store = CacheTokenStore(locmem, sleep=sleeps.append, wait_timeout=1, poll_interval=0.1)
    client = make_client(token_store=store)

    with pytest.raises(AtlasUnavailable, match="renew the token"):
        client.status(FLOW)
    assert len(sleeps) == 10
    assert client.request_counts == {}


def test_token_key_hides_credentials():
    key = token_key(f"{V3}/authtoken", CLIENT_ID, SECRET)
    assert SECRET not in key
    assert CLIENT_ID not in key
    assert key != token_key(f"{V1}/authtoken", CLIENT_ID, SECRET)
    assert key != token_key(f"{V3}/authtoken", CLIENT_ID, "other-secret")


_REDIS_WORKER = """
import sys, time
import redis
from django.core.cache.backends.redis import RedisCache
from atlas_review.atlas.payloads import Token
from atlas_review.atlas.tokens import CacheTokenStore

sock = sys.argv[1]
r = redis.Redis(unix_socket_path=sock)
store = CacheTokenStore(RedisCache("unix://" + sock, {}), poll_interval=0.01)
while not r.get("go"):
    time.sleep(0.002)

def fetch():
    n = r.incr("fetches")
    time.sleep(0.3)
    return Token(f"tok-{n}", 3600)

print(store.get_token("atlas:token:k", fetch))
"""


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")
def test_cache_store_processes_at_expiry_fetch_exactly_one_token(tmp_path):
    redis = pytest.importorskip("redis")
    sock = str(tmp_path / "redis.sock")
    server = subprocess.Popen(
        ["redis-server", "--port", "0", "--unixsocket", sock, "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    try:
        conn = redis.Redis(unix_socket_path=sock)
        for _ in range(200):
            try:
                conn.ping()
                break
            except redis.exceptions.ConnectionError:
                time.sleep(0.02)
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
        workers = [
            subprocess.Popen(
                [sys.executable, "-c", _REDIS_WORKER, sock],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
            )
            for _ in range(6)
        ]
        time.sleep(1.0)  # let every worker reach the start line
        conn.set("go", 1)
        outputs = [w.communicate(timeout=30) for w in workers]
        assert [w.returncode for w in workers] == [0] * 6, [err for _, err in outputs]
        assert [out.strip() for out, _ in outputs] == ["tok-1"] * 6
        assert int(conn.get("fetches")) == 1
    finally:
        server.terminate()
        server.wait(timeout=10)


# --- retries and timeouts --------------------------------------------------------------------


def test_5xx_backs_off_exponentially_then_succeeds(rsps, client, sleeps):
    add_token(rsps)
    rsps.get(f"{V3}/status", status=500)
    rsps.get(f"{V3}/status", status=502)
    rsps.get(f"{V3}/status", status=504)
    rsps.get(f"{V3}/status", json=STATUS_OK)

    assert client.status(FLOW).finished
    assert sleeps == [0.5, 1.0, 2.0]
    assert client.request_counts["v3 GET /status"] == 4


def test_backoff_is_full_jitter_within_growing_bounds(rsps, make_client, sleeps):
    add_token(rsps)
    for _ in range(6):
        rsps.get(f"{V3}/status", status=503)
    rsps.get(f"{V3}/status", json=STATUS_OK)
    rng = random.Random(1234)
    client = make_client(max_retries=6, rng=rng.random, backoff_cap=8.0)

    client.status(FLOW)

    bounds = [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]
    assert len(sleeps) == 6
    assert all(0 <= s <= bound for s, bound in zip(sleeps, bounds, strict=True))
    assert len(set(sleeps)) == 6  # jittered, not a fixed schedule


def test_429_retry_after_is_honoured(rsps, client, sleeps):
    add_token(rsps)
    rsps.get(f"{V3}/status", status=429, headers={"Retry-After": "7"})
    rsps.get(f"{V3}/status", json=STATUS_OK)

    client.status(FLOW)
    assert sleeps == [7.0]


def test_503_retry_after_on_upload_is_retried(rsps, client, sleeps):
    add_token(rsps)
    rsps.post(f"{V3}/multiupload", status=503, headers={"Retry-After": "2"})
    rsps.post(f"{V3}/multiupload", json={"batch_id": "B1"})

    assert client.upload(FLOW, [("https://f/1.jpg", "1")]) == ["B1"]
    assert sleeps == [2.0]


def test_retry_after_beyond_the_cap_is_left_to_the_caller(rsps, client, sleeps):
    add_token(rsps)
    rsps.get(f"{V3}/status", status=429, headers={"Retry-After": "600"})

    with pytest.raises(AtlasUnavailable) as info:
        client.status(FLOW)
    assert info.value.retry_after == 600
    assert info.value.status == 429
    assert sleeps == []


def test_retries_exhausted_raise_unavailable(rsps, client, sleeps):
    add_token(rsps)
    rsps.get(f"{V3}/status", status=503, body="upstream down")

    with pytest.raises(AtlasUnavailable) as info:
        client.status(FLOW)

    assert info.value.transient
    assert info.value.status == 503
    assert isinstance(info.value, AtlasError)
    assert client.request_counts["v3 GET /status"] == 4  # 1 + max_retries
    assert len(sleeps) == 3


def test_token_endpoint_failures_are_retried_too(rsps, client, sleeps):
    rsps.post(f"{V3}/authtoken", status=502)
    add_token(rsps)
    rsps.get(f"{V3}/status", json=STATUS_OK)

    client.status(FLOW)
    assert client.request_counts["v3 POST /authtoken"] == 2
    assert sleeps == [0.5]


def test_timeouts_are_retried_and_always_set(rsps, client, sleeps):
    add_token(rsps)
    rsps.get(f"{V3}/status", body=requests.exceptions.ConnectTimeout())
    rsps.get(f"{V3}/status", body=requests.exceptions.ReadTimeout())
    rsps.get(f"{V3}/status", body=requests.exceptions.ConnectionError())
    rsps.get(f"{V3}/status", json=STATUS_OK)

    assert client.status(FLOW).finished
    assert len(sleeps) == 3
    assert all(c.request.req_kwargs["timeout"] == (3.0, 10.0) for c in rsps.calls)


def test_persistent_timeouts_raise_unavailable(rsps, client):
    add_token(rsps)
    rsps.get(f"{V3}/status", body=requests.exceptions.ReadTimeout())

    with pytest.raises(AtlasUnavailable, match="ReadTimeout") as info:
        client.status(FLOW)
    assert info.value.status is None
    assert client.request_counts["v3 GET /status"] == 4


def test_ambiguous_failure_of_a_post_is_not_repeated(rsps, client, sleeps):
    """A read timeout or 500 after sending multiupload may have been processed already."""
    add_token(rsps)
    rsps.post(f"{V3}/multiupload", body=requests.exceptions.ReadTimeout())
    rsps.post(f"{V3}/flow/init", status=500)

    with pytest.raises(AtlasUnavailable) as info:
        client.upload(FLOW, [("https://f/1.jpg", "1")])
    assert info.value.outcome_unknown
    with pytest.raises(AtlasUnavailable) as info:
        client.init_flow("APP-1", "PROD_CDL", "https://us/auth", "https://us/cb")
    assert info.value.outcome_unknown and info.value.status == 500
    assert client.request_counts["v3 POST /multiupload"] == 1
    assert client.request_counts["v3 POST /flow/init"] == 1
    assert sleeps == []


def test_post_that_never_connected_is_retried(rsps, client):
    add_token(rsps)
    rsps.post(f"{V3}/multiupload", body=requests.exceptions.ConnectTimeout())
    rsps.post(f"{V3}/multiupload", json={"batch_id": "B1"})

    assert client.upload(FLOW, [("https://f/1.jpg", "1")]) == ["B1"]


# --- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        (400, {"message": "batch_id is required"}, "batch_id is required"),
        (404, {"detail": "flow not found"}, "flow not found"),
        (422, {"error": "bad product_type"}, "bad product_type"),
        (409, "plain text " + "x" * 500, "plain text " + "x" * 189),
    ],
)
def test_other_4xx_raise_request_error_with_atlas_message(
    rsps, client, sleeps, status, body, message
):
    add_token(rsps)
    if isinstance(body, dict):
        rsps.get(f"{V3}/status", status=status, json=body)
    else:
        rsps.get(f"{V3}/status", status=status, body=body)

    with pytest.raises(AtlasRequestError) as info:
        client.status(FLOW)

    assert info.value.status == status
    assert info.value.message == message
    assert not info.value.transient
    assert "v3 GET /status" in str(info.value)
    assert sleeps == []


def test_redirects_are_not_followed(rsps, client):
    add_token(rsps)
    rsps.get(f"{V3}/status", status=302, headers={"Location": "https://elsewhere.test/grab"})

    with pytest.raises(AtlasRequestError) as info:
        client.status(FLOW)
    assert info.value.status == 302
    assert all("elsewhere" not in c.request.url for c in rsps.calls)


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"<html>gateway</html>", "malformed JSON"),
        (b'{"upload_status": "SUCCESS"}', "master_status"),
        (b"[]", "expected an object"),
    ],
)
def test_unparseable_body_raises_payload_error(rsps, client, body, problem):
    add_token(rsps)
    rsps.get(f"{V3}/status", body=body, content_type="application/json")

    with pytest.raises(AtlasPayloadError, match=problem) as info:
        client.status(FLOW)
    assert info.value.endpoint == "v3 GET /status"
    assert "v3 GET /status" in str(info.value)
    assert not info.value.transient


def test_oversized_response_is_refused(rsps, make_client):
    add_token(rsps)
    rsps.get(f"{V3}/extracts", body=b"x" * 5000)
    client = make_client(max_response_bytes=1000)

    with pytest.raises(AtlasPayloadError, match="exceeds"):
        client.extracts(FLOW)


# --- v3 calls --------------------------------------------------------------------------------


def test_init_flow_sends_the_contract_body(rsps, client):
    add_token(rsps)
    rsps.post(f"{V3}/flow/init", json={"flow_uuid": FLOW})

    flow = client.init_flow(
        "12321321", "PROD_CDL", "https://us/auth", "https://us/cb", {"branch": "BLR"}
    )

    assert flow == FLOW
    assert json.loads(sent(rsps, "/flow/init")[0].request.body) == {
        "product_type": "PROD_CDL",
        "application_id": "12321321",
        "auth_url": "https://us/auth",
        "callback_url": "https://us/cb",
        "flow_params": {"branch": "BLR"},
    }


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ({"batch_id": "BATCH-1"}, ["BATCH-1"]),
        ([{"batch_id": "BATCH-1"}, {"batch_id": "BATCH-2"}], ["BATCH-1", "BATCH-2"]),
    ],
)
def test_upload_accepts_one_object_or_a_list(rsps, client, answer, expected):
    add_token(rsps)
    rsps.post(f"{V3}/multiupload", json=answer)

    files = [("https://f/invoice.jpg", "1"), ("https://f/do.jpg", "2")]
    assert client.upload(FLOW, files) == expected
    assert json.loads(sent(rsps, "/multiupload")[0].request.body) == {
        "flow_uuid": FLOW,
        "file_urls": [
            {"file_url": "https://f/invoice.jpg", "document_id": "1"},
            {"file_url": "https://f/do.jpg", "document_id": "2"},
        ],
    }


@pytest.mark.parametrize("key", ["crossheck_status", "crosscheck_status"])
def test_status_reads_both_spellings_of_crosscheck(rsps, client, key):
    add_token(rsps)
    rsps.get(
        f"{V3}/status",
        json={
            "upload_status": "SUCCESS",
            "processing_status": "IN_PROGRESS",
            key: "PENDING",
            "master_status": "IN_PROGRESS",
        },
    )

    status = client.status(FLOW)
    assert status.crosscheck_status == "PENDING"
    assert not status.finished
    assert sent(rsps, "/status")[0].request.params == {"flow_uuid": FLOW}


def test_fetch_extracts_returns_the_raw_body_and_parsed_data(rsps, client):
    add_token(rsps)
    raw = json.dumps(
        {
            "flow_uuid": FLOW,
            "ocr_data": [
                {
                    "data": {
                        "document_type": "INVOICE",
                        "customer_name": {"value": "Pashangh", "confidence_score": 0.9},
                    },
                    "document_id": "d1",
                    "error_code": "",
                    "error_reason": "",
                    "file_uuid": "f-1",
                }
            ],
            "cross_checks": [
                {
                    "name": "CUSTOMER_NAME",
                    "source_doc": "DELIVERY_ORDER",
                    "target_doc": "INVOICE",
                    "similarity_score": 90,
                }
            ],
        }
    ).encode()
    rsps.get(f"{V3}/extracts", body=raw, content_type="application/json")

    body, data = client.fetch_extracts(FLOW)

    assert body == raw
    assert isinstance(data, payloads.CallbackData)
    assert data.documents[0].document_type == "INVOICE"
    assert data.cross_checks[0].similarity == 90
    assert client.extracts(FLOW) == data


def test_extracts_for_another_flow_are_refused(rsps, client):
    add_token(rsps)
    rsps.get(f"{V3}/extracts", json={"flow_uuid": "someone-else", "ocr_data": []})

    with pytest.raises(AtlasPayloadError, match="different flow_uuid"):
        client.fetch_extracts(FLOW)


# --- v1 calls --------------------------------------------------------------------------------


def v1_page(number: int, total_pages: int, docs: list[str], has_next: bool | None = None) -> dict:
    return {
        "data": [
            {
                "document_id": d,
                "file_data": {
                    "document_type": "AADHAAR",
                    "name": {"value": d, "confidence_score": 1},
                },
            }
            for d in docs
        ],
        "page": number,
        "per_page": 2,
        "total_pages": total_pages,
        "total_items": 5,
        "has_next": number < total_pages if has_next is None else has_next,
        "has_prev": number > 1,
    }


def test_v1_upload_returns_the_batch_id(rsps, client):
    add_token(rsps, root=V1)
    rsps.post(f"{V1}/multiupload", json={"batch_id": "BATCH-9"})

    assert client.v1_upload("POC_CDL", [("https://f/pan.jpg", "001")]) == "BATCH-9"
    assert json.loads(sent(rsps, "/multiupload")[0].request.body) == {
        "product_type": "POC_CDL",
        "file_urls": [{"file_url": "https://f/pan.jpg", "document_id": "001"}],
    }


def test_v1_extracts_reads_every_page(rsps, client):
    add_token(rsps, root=V1)
    for number, docs in ((1, ["a", "b"]), (2, ["c", "d"]), (3, ["e"])):
        rsps.get(
            f"{V1}/extracts",
            json=v1_page(number, 3, docs),
            match=[
                responses.matchers.query_param_matcher(
                    {"batch_id": "BATCH-9", "page": str(number), "per_page": "2"}
                )
            ],
        )

    pages = client.v1_extracts("BATCH-9", per_page=2)

    assert [p.page for _, p in pages] == [1, 2, 3]
    assert [d.document_id for _, p in pages for d in p.documents] == ["a", "b", "c", "d", "e"]
    assert all(p.batch_id == "BATCH-9" for _, p in pages)
    assert json.loads(pages[2][0]) == v1_page(3, 3, ["e"])
    assert client.request_counts == {"v1 POST /authtoken": 1, "v1 GET /extracts": 3}


def test_v1_extracts_follows_total_pages_when_has_next_is_missing(rsps, client):
    add_token(rsps, root=V1)
    for number in (1, 2):
        page = v1_page(number, 2, [f"d{number}"])
        del page["has_next"]
        rsps.get(
            f"{V1}/extracts",
            json=page,
            match=[
                responses.matchers.query_param_matcher({"page": str(number)}, strict_match=False)
            ],
        )

    assert len(client.v1_extracts("BATCH-9")) == 2


def test_v1_extracts_refuses_a_server_that_ignores_the_page(rsps, client):
    add_token(rsps, root=V1)
    rsps.get(f"{V1}/extracts", json=v1_page(1, 5, ["a"], has_next=True))

    with pytest.raises(AtlasPayloadError, match="asked for page 2, got page 1"):
        client.v1_extracts("BATCH-9")


def test_v1_extracts_refuses_a_repeated_page(rsps, client):
    add_token(rsps, root=V1)

    def same_data_any_page(request):
        number = int(request.params["page"])
        return 200, {}, json.dumps(v1_page(number, 99, ["a", "b"]))

    rsps.add_callback("GET", f"{V1}/extracts", callback=same_data_any_page)

    with pytest.raises(AtlasPayloadError, match="page 2 repeats"):
        client.v1_extracts("BATCH-9")


def test_v1_extracts_stops_at_the_page_cap(rsps, client):
    add_token(rsps, root=V1)

    def endless(request):
        number = int(request.params["page"])
        return 200, {}, json.dumps(v1_page(number, 10**9, [f"d{number}"], has_next=True))

    rsps.add_callback("GET", f"{V1}/extracts", callback=endless)

    with pytest.raises(AtlasPayloadError, match="more than 5 pages"):
        client.v1_extracts("BATCH-9", max_pages=5)
    assert client.request_counts["v1 GET /extracts"] == 5


def test_v1_extracts_stops_at_an_empty_page(rsps, client):
    add_token(rsps, root=V1)
    rsps.get(
        f"{V1}/extracts",
        json=v1_page(1, 3, ["a"]),
        match=[responses.matchers.query_param_matcher({"page": "1"}, strict_match=False)],
    )
    rsps.get(
        f"{V1}/extracts",
        json=v1_page(2, 3, []),
        match=[responses.matchers.query_param_matcher({"page": "2"}, strict_match=False)],
    )

    assert [p.page for _, p in client.v1_extracts("BATCH-9")] == [1, 2]


# --- secrets ---------------------------------------------------------------------------------


def test_secret_and_token_never_logged_or_in_errors(rsps, make_client, caplog):
    caplog.set_level(logging.DEBUG)
    leak = f"bad token {TOKEN} for secret {SECRET}"
    client = make_client(max_retries=1)
    errors: list[AtlasError] = []

    def expect_error(call):
        try:
            call()
        except AtlasError as exc:
            errors.append(exc)
        else:
            raise AssertionError("expected an AtlasError")

    # Token endpoint echoes the secret while refusing it.
    rsps.post(f"{V3}/authtoken", status=401, json={"message": leak})
    expect_error(lambda: client.status(FLOW))
    rsps.reset()

    add_token(rsps)
    rsps.get(f"{V3}/status", json=STATUS_OK)
    client.status(FLOW)
    rsps.get(f"{V3}/extracts", status=400, json={"message": leak})
    expect_error(lambda: client.extracts(FLOW))
    rsps.post(f"{V3}/multiupload", status=401, json={"detail": leak})
    expect_error(lambda: client.upload(FLOW, [("https://f/1.jpg", "1")]))
    rsps.post(f"{V3}/flow/init", body=requests.exceptions.ConnectionError(leak))
    expect_error(lambda: client.init_flow("A", "PROD_CDL", "https://a", "https://c"))
    rsps.get(f"{V1}/extracts", body=requests.exceptions.ReadTimeout(leak))
    add_token(rsps, root=V1)
    expect_error(lambda: client.v1_extracts("B"))
    rsps.post(f"{V1}/multiupload", status=200, body=f'{{"batch_id": {{"x": "{SECRET}"}}}}')
    expect_error(lambda: client.v1_upload("POC_CDL", [("https://f/1.jpg", "1")]))

    assert len(errors) == 6
    assert "v3 GET /status -> 200" in caplog.text
    texts = [caplog.text, repr(client), repr(client.token_store), repr(vars(client))]
    texts += [str(e) for e in errors] + [repr(e) for e in errors] + [e.message for e in errors]
    for text in texts:
        assert SECRET not in text
        assert TOKEN not in text
    assert "***" in errors[1].message


def test_log_line_names_method_path_status_and_time(rsps, client, caplog):
    caplog.set_level(logging.DEBUG, logger="atlas_review.atlas.client")
    add_token(rsps)
    rsps.get(f"{V3}/status", json=STATUS_OK)

    client.status(FLOW)

    lines = [r.getMessage() for r in caplog.records]
    assert any(
        line.startswith("atlas v3 GET /status -> 200 in ") and " ms" in line for line in lines
    )
    assert any(line.startswith("atlas v3 POST /authtoken -> 200") for line in lines)


# --- construction ----------------------------------------------------------------------------


def test_from_settings(settings):
    settings.ATLAS_BASE_URL = V3
    settings.ATLAS_DOCSTREAM_URL = V1
    settings.ATLAS_CLIENT_ID = CLIENT_ID
    settings.ATLAS_CLIENT_SECRET = SECRET
    settings.ATLAS_TIMEOUT_SECONDS = 12.5
    settings.ATLAS_MAX_RETRIES = 2

    client = AtlasClient.from_settings()

    assert isinstance(client.token_store, CacheTokenStore)
    assert client.timeout == (12.5, 12.5)
    assert client.max_retries == 2
    assert client.v3.root == V3 and client.v1.root == V1
    assert SECRET not in repr(client)


def test_from_settings_shares_tokens_through_the_cache(settings, rsps):
    settings.ATLAS_BASE_URL = V3
    settings.ATLAS_DOCSTREAM_URL = V1
    settings.ATLAS_CLIENT_ID = f"{CLIENT_ID}-{random.random()}"  # a fresh cache key
    settings.ATLAS_CLIENT_SECRET = SECRET
    add_token(rsps)
    rsps.get(f"{V3}/status", json=STATUS_OK)

    AtlasClient.from_settings().status(FLOW)
    AtlasClient.from_settings().status(FLOW)

    assert len(sent(rsps, "/authtoken")) == 1


def test_invalid_construction_is_refused():
    with pytest.raises(ValueError):
        AtlasClient(V3, V1, CLIENT_ID, SECRET, max_retries=-1)
    with pytest.raises(ValueError):
        AtlasClient(V3, V1, CLIENT_ID, SECRET, timeout=0)
    with pytest.raises(ValueError):
        AtlasClient(V3, "", CLIENT_ID, SECRET)
