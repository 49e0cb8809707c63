"""Hostile and generated input at the parser (atlas_review.atlas.payloads) and at the callback
endpoints: never an unhandled exception; every rejection a 4xx with a message naming the
problem and the raw body kept in the journal; everything accepted applied for good (never
left pending or failing in the database later).

A hand-written corpus of hostile cases, then hypothesis: generated CallbackData and v1 pages,
and mutations of valid ones (a subtree replaced by any JSON, including NaN and Infinity)."""

from __future__ import annotations

import copy
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from atlas_review.atlas import payloads
from atlas_review.flows.models import CrossCheck, Flow, Payload, Upload

pytestmark = pytest.mark.django_db

FLOW_UUID = "hostile-flow-0001"
BATCH_ID = "BATCH-HOSTILE-1"
AUTH = {"Client-Id": "atlas-callback-test", "Client-Secret": "callback-secret-for-tests-only"}
SETTLED = {"applied", "duplicate", "stale"}


@pytest.fixture
def target(db, client):
    flow = Flow.objects.create(flow_uuid=FLOW_UUID, application_id="HOSTILE", product_type="P")
    Upload.objects.create(batch_id="B-HOSTILE", api="v3", flow=flow, files=[])
    Upload.objects.create(batch_id=BATCH_ID, api="v1", files=[])
    return client.post("/atlas/auth", headers=AUTH).json()["access_token"]


@pytest.fixture
def deliver(client, target, django_capture_on_commit_callbacks):
    """POST a body as Atlas would (running the apply queued on commit) and check the
    endpoint's promises; returns (status, message, journal row)."""

    def post(body: bytes, path: str = "/atlas/callback"):
        with django_capture_on_commit_callbacks(execute=True):
            response = client.post(
                path, body, content_type="application/json", headers={"Token": target}
            )
        assert response.status_code in (202, 400, 422), (response.status_code, body[:300])
        data = response.json()
        row = Payload.objects.get(pk=data["delivery"])
        assert bytes(row.body) == body, "the raw body is kept, whatever it is"
        if response.status_code == 400:
            assert data["message"] and row.outcome == "rejected"
            assert row.error == data["message"]
        elif response.status_code == 422:
            assert "unknown" in data["message"] and row.outcome == "unmatched"
        else:
            # Accepted means applied for good: not left `received` for a sweeper to retry
            # forever, not `failed` in the database or a receiver.
            assert row.outcome in SETTLED, (row.outcome, row.error, body[:300])
        return response.status_code, data.get("message", ""), row

    return post


def contract(**changes) -> dict:
    from tests.conftest import CONTRACT_EXAMPLE

    body = json.loads(CONTRACT_EXAMPLE.read_text())
    body["flow_uuid"] = FLOW_UUID
    body.update(changes)
    return body


def with_value(value_json: str) -> bytes:
    """The contract with the invoice's customer_name value replaced by raw JSON text."""
    text = json.dumps(contract())
    return text.replace('"value": "Pashangh"', f'"value": {value_json}', 1).encode()


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


HUGE = "x" * 2_000_000

# (name, body, expected status, part of the message)
CORPUS = [
    ("valid contract example", json.dumps(contract()).encode(), 202, ""),
    ("nested 99 levels in a value", with_value(nested(90)), 202, ""),
    ("nested 150 levels", with_value(nested(150)), 400, "nested more than 100 levels"),
    ("nested 200000 levels", nested(200_000).encode(), 400, "nested"),
    ("a 2 MB string value", with_value(json.dumps(HUGE)), 202, ""),
    ("a 2 MB document_id", json.dumps(contract(ocr_data=[{"document_id": HUGE}])).encode(), 400, "ocr_data[0].document_id: string is too long"),
    ("NaN", with_value("NaN"), 400, "NaN is not valid JSON"),
    ("Infinity", with_value("Infinity"), 400, "Infinity is not valid JSON"),
    ("-Infinity confidence", json.dumps(contract()).replace("0.9", "-Infinity", 1).encode(), 400, "-Infinity is not valid JSON"),
    ("1e999 (parses as infinity)", with_value("1e999"), 400, "out of range"),
    ("a 5000-digit integer", with_value("9" * 5000), 400, "malformed JSON"),
    ("a 400-digit confidence", json.dumps(contract()).replace("0.9", "1" + "0" * 400, 1).encode(), 400, "confidence_score: must be between 0 and 1"),
    ("duplicate keys", b'{"flow_uuid": "a", "flow_uuid": "b"}', 400, "duplicate key 'flow_uuid'"),
    ("invalid UTF-8", b'{"flow_uuid": "\xff\xfe"}', 400, "not valid UTF-8"),
    ("UTF-8 byte order mark", b"\xef\xbb\xbf" + json.dumps(contract()).encode(), 400, "malformed JSON"),
    ("NUL in a value", with_value('"a\\u0000b"'), 400, "cannot be stored"),
    ("NUL in a field name", json.dumps(contract()).replace('"customer_name"', '"cust\\u0000"', 1).encode(), 400, "cannot be stored"),
    ("an unpaired surrogate", with_value('"\\ud800"'), 400, "cannot be stored"),
    ("a paired surrogate (emoji)", with_value('"\\ud83d\\ude00"'), 202, ""),
    ("a 65-character document_type", json.dumps(contract(ocr_data=[{"data": {"document_type": "T" * 65}}])).encode(), 400, "ocr_data[0].data.document_type: string is too long"),
    ("a 129-character field name", json.dumps(contract(ocr_data=[{"data": {"n" * 129: {"value": 1}}}])).encode(), 400, "field name is longer than 128"),
    ("every cross-check name at its limit", json.dumps(contract(cross_checks=[{"name": "N" * 128, "source_doc": "S" * 64, "source_field_name": "F" * 128, "target_doc": "T" * 64, "target_field_name": "G" * 128, "similarity_score": 50}])).encode(), 202, ""),
    ("null", b"null", 400, "expected an object, got null"),
    ("a list", b"[]", 400, "expected an object, got a list"),
    ("no flow_uuid", b"{}", 400, "flow_uuid: is required"),
    ("flow_uuid a list", b'{"flow_uuid": []}', 400, "flow_uuid: expected a string"),
    ("ocr_data an object", json.dumps(contract(ocr_data={})).encode(), 400, "ocr_data: expected a list, got an object"),
    ("ocr_data a string", json.dumps(contract(ocr_data="x")).encode(), 400, "ocr_data: expected a list"),
    ("an item a number", json.dumps(contract(ocr_data=[1])).encode(), 400, "ocr_data[0]: expected an object"),
    ("data a list", json.dumps(contract(ocr_data=[{"data": []}])).encode(), 400, "ocr_data[0].data: expected an object"),
    ("confidence a string", json.dumps(contract()).replace("0.9", '"high"', 1).encode(), 400, "confidence_score: expected a number, got a string"),
    ("confidence true", json.dumps(contract()).replace("0.9", "true", 1).encode(), 400, "expected a number, got a boolean"),
    ("similarity 101", json.dumps(contract()).replace('"similarity_score": 60', '"similarity_score": 101').encode(), 400, "similarity_score: must be between 0 and 100"),
    ("cross_checks a number", json.dumps(contract(cross_checks=5)).encode(), 400, "cross_checks: expected a list"),
    ("document_id an object", json.dumps(contract(ocr_data=[{"document_id": {}}])).encode(), 400, "document_id: expected a string, got an object"),
    ("values of every JSON type", with_value('[1, 2.5, "x", true, null, {"a": [[]]}]'), 202, ""),
    ("unknown flow", json.dumps(contract(flow_uuid="nobody-knows")).encode(), 422, "unknown flow_uuid"),
    ("HTML and script in every string", json.dumps(contract()).replace("Pashangh", "<script>alert(1)</script>").replace("INVOICE", "<img src=x onerror=alert(1)>").encode(), 202, ""),
]  # fmt: skip


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [case[1:] for case in CORPUS],
    ids=[case[0] for case in CORPUS],
)
def test_hostile_callbacks(deliver, body, status, message):
    got, text, _row = deliver(body)
    assert (got, message in text) == (status, True), text


V1_CORPUS = [
    ("valid page", {"batch_id": BATCH_ID, "data": [{"document_id": "1", "file_data": {"document_type": "PAN", "name": {"value": "A", "confidence_score": 1}}}]}, 202, ""),
    ("data missing", {"batch_id": BATCH_ID}, 400, "data: is required"),
    ("data an object", {"batch_id": BATCH_ID, "data": {}}, 400, "data: expected a list"),
    ("page a string", {"batch_id": BATCH_ID, "data": [], "page": "1"}, 400, "page: expected an integer"),
    ("per_page huge", {"batch_id": BATCH_ID, "data": [], "per_page": 10**30}, 202, ""),
    ("file_data a list", {"batch_id": BATCH_ID, "data": [{"file_data": []}]}, 400, "data[0].file_data: expected an object"),
    ("no batch anywhere", {"data": []}, 400, "batch_id: is required"),
    ("unknown batch", {"batch_id": "BATCH-NOBODY", "data": []}, 422, "unknown batch_id"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("body", "status", "message"), [c[1:] for c in V1_CORPUS], ids=[c[0] for c in V1_CORPUS]
)
def test_hostile_v1_callbacks(deliver, body, status, message):
    got, text, _row = deliver(json.dumps(body).encode(), path="/atlas/v1/callback")
    assert (got, message in text) == (status, True), text


def test_cross_check_names_at_their_limits_are_stored_once(deliver):
    """Their natural key is longer than its column; it is stored as a digest, stably."""
    check = {"name": "N" * 128, "source_doc": "S" * 64, "source_field_name": "F" * 128,
             "target_doc": "T" * 64, "target_field_name": "G" * 128, "similarity_score": 50}  # fmt: skip
    body = contract(cross_checks=[check])
    assert deliver(json.dumps(body).encode())[0] == 202
    body["cross_checks"][0]["similarity_score"] = 70
    assert deliver(json.dumps(body).encode())[2].outcome == "applied"
    stored = CrossCheck.objects.get(flow__flow_uuid=FLOW_UUID)
    assert stored.key.startswith("sha256:") and stored.similarity == 70


# --- generated input -----------------------------------------------------------------------

# Strings and numbers that broke (or could break) storage and pages: NUL, unpaired
# surrogates, markup, formula starts, names just over their columns, huge numbers.
nasty_text = st.sampled_from(
    ["\x00", "a\x00b", "\ud800", "\udfff", "<script>alert(1)</script>", '"><img src=x>',
     "=HYPERLINK(\"x\")", "T" * 65, "n" * 129, "u" * 161, "", " ", "\u202e"]
)  # fmt: skip
text = st.text(max_size=20) | nasty_text | st.text(alphabet="<>\"'&\x00\ud800", max_size=6)
HUGE_NUMBER = "__huge_number__"  # replaced by 1e999 in the encoded text (no float is that)
numbers = (
    st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from([10**400, -(10**400), 1e308, 5e-324, HUGE_NUMBER])
)
json_scalars = st.none() | st.booleans() | numbers | text
any_json = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(text, children, max_size=4),
    max_leaves=12,
)
names = st.sampled_from(["customer_name", "imei_number", "price", "value"]) | text
values = text | numbers | st.none() | st.lists(text, max_size=3) | any_json
scores = st.floats(min_value=0, max_value=1) | st.sampled_from([0, 1, "", None]) | any_json
field = st.fixed_dictionaries({"value": values}, optional={"confidence_score": scores})
document = st.fixed_dictionaries(
    {},
    optional={
        "data": st.dictionaries(names, field | any_json, max_size=4).map(
            lambda d: {"document_type": "INVOICE", **d}
        )
        | st.fixed_dictionaries({"document_type": text}, optional={"f": field})
        | any_json,
        "document_id": text | st.integers(),
        "file_uuid": st.uuids().map(str) | text,
        "batch_id": text,
        "error_code": st.sampled_from(["", "UNRECOGNISED", "INVALID_DOC"]) | text,
        "error_reason": text,
    },
)
cross_check = st.fixed_dictionaries(
    {},
    optional={
        "name": text,
        "source_doc": text,
        "source_field_name": names,
        "source_value": values,
        "target_doc": text,
        "target_field_name": names,
        "target_value": values,
        "similarity_score": st.integers(0, 100) | st.floats(0, 100) | any_json,
    },
)
callback_data = st.fixed_dictionaries(
    {"flow_uuid": st.sampled_from([FLOW_UUID, FLOW_UUID, FLOW_UUID, "other-flow"]) | any_json},
    optional={
        "ocr_data": st.lists(document, max_size=4) | any_json,
        "cross_checks": st.lists(cross_check, max_size=3) | any_json,
        "flow_params": any_json,
    },
)


def v1_item(item: dict) -> dict:
    """A v1 data[] item: the same as an ocr_data item, with file_data for data."""
    item = dict(item)
    item["file_data"] = item.pop("data", {})
    return item


batch_page = st.fixed_dictionaries(
    {"data": st.lists(document.map(v1_item), max_size=4) | any_json},
    optional={
        "batch_id": st.sampled_from([BATCH_ID, BATCH_ID, "BATCH-OTHER"]) | any_json,
        "page": st.integers(0, 3) | any_json,
        "per_page": st.integers(1, 100),
        "total_pages": st.integers(0, 3),
        "has_next": any_json,
    },
)  # fmt: skip


def mutate(data, choices):
    """Replace one node of the structure with arbitrary JSON."""
    paths = [()]
    stack = [((), data)]
    while stack:
        path, node = stack.pop()
        children = (
            node.items()
            if isinstance(node, dict)
            else enumerate(node)
            if isinstance(node, list)
            else ()
        )
        for key, child in children:
            paths.append((*path, key))
            stack.append(((*path, key), child))
    path = choices.draw(st.sampled_from(paths))
    replacement = choices.draw(any_json)
    if not path:
        return replacement
    data = copy.deepcopy(data)
    node = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = replacement
    return data


def encode(data, ascii_only: bool = True) -> bytes:
    """JSON text as Atlas might send it: NaN and Infinity tokens (allow_nan), 1e999, and
    surrogates either as escapes or (ascii_only=False) as bytes that are not UTF-8."""
    text = json.dumps(data, allow_nan=True, ensure_ascii=ascii_only)
    return text.replace(f'"{HUGE_NUMBER}"', "1e999").encode("utf-8", "surrogatepass")


def parse_or_refuse(body: bytes, parse) -> None:
    try:
        parse(payloads.loads(body))
    except payloads.PayloadError as exc:
        assert str(exc), "a refusal names its problem"


@settings(max_examples=200, deadline=None)
@given(data=callback_data, choices=st.data(), ascii_only=st.booleans())
def test_the_parser_only_ever_refuses_with_a_payload_error(data, choices, ascii_only):
    parse_or_refuse(encode(data, ascii_only), payloads.parse_callback_data)
    parse_or_refuse(encode(mutate(data, choices), ascii_only), payloads.parse_callback_data)


@settings(max_examples=150, deadline=None)
@given(data=batch_page, choices=st.data())
def test_the_v1_parser_only_ever_refuses_with_a_payload_error(data, choices):
    parse = lambda page: payloads.parse_batch_page(page, batch_id="B")  # noqa: E731
    parse_or_refuse(encode(data), parse)
    parse_or_refuse(encode(mutate(data, choices)), parse)


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=callback_data, choices=st.data(), mutated=st.booleans(), ascii_only=st.booleans())
def test_the_callback_endpoint_answers_every_generated_body(
    deliver, data, choices, mutated, ascii_only
):
    deliver(encode(mutate(data, choices) if mutated else data, ascii_only))


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=batch_page, choices=st.data(), mutated=st.booleans())
def test_the_v1_callback_endpoint_answers_every_generated_body(deliver, data, choices, mutated):
    deliver(encode(mutate(data, choices) if mutated else data), path="/atlas/v1/callback")
