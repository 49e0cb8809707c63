import copy
import json
from datetime import UTC, datetime, timedelta
from unittest import mock

import pytest
from django.db import OperationalError
from django.utils import timezone
from django.utils.http import http_date

from atlas_review.callbacks import services
from atlas_review.callbacks.models import AuthAttempt, CallbackToken
from atlas_review.flows import journal
from atlas_review.flows import services as flow_services
from atlas_review.flows.models import Document, ExtractedField, Flow, Payload, Upload

from .conftest import get_token

pytestmark = pytest.mark.django_db

V3 = "/atlas/callback"
V1 = "/atlas/v1/callback"


def snapshot():
    return (
        sorted(Document.objects.values_list("id", "key", "document_type", "updated_at")),
        sorted(ExtractedField.objects.values_list("id", "name", "value", "updated_at")),
    )


def field_value(document_type, name):
    return ExtractedField.objects.get(document_type=document_type, name=name).value


def rfc1123(moment: datetime) -> str:
    return http_date(moment.timestamp())


# --- authentication -------------------------------------------------------------------------


@pytest.mark.parametrize("path", [V3, V1])
@pytest.mark.parametrize(
    ("token", "reason", "message"),
    [
        (None, "missing_token", "the Token header is required"),
        ("", "missing_token", "the Token header is required"),
        ("not-a-token-we-issued", "invalid_token", "invalid token"),
    ],
)
def test_a_callback_without_a_valid_token_is_refused_and_not_stored(
    post_callback, contract_payload, flow, path, token, reason, message, caplog
):
    response = post_callback(contract_payload, path=path, token=token)

    assert response.status_code == 401
    assert response.json()["message"].startswith(message)
    assert Payload.objects.count() == 0
    assert Document.objects.count() == 0
    attempt = AuthAttempt.objects.get()
    assert attempt.reason == reason
    assert attempt.endpoint == ("callback" if path == V3 else "callback_v1")
    assert reason in caplog.text
    if token:
        assert token not in caplog.text


def test_an_expired_token_is_refused(post_callback, contract_payload, flow, token):
    CallbackToken.objects.update(expires_at=timezone.now() - timedelta(seconds=1))

    response = post_callback(contract_payload)

    assert response.status_code == 401
    assert "expired" in response.json()["message"]
    assert Payload.objects.count() == 0
    assert AuthAttempt.objects.get().reason == "expired_token"


def test_a_token_of_a_changed_environment_pair_is_refused(
    post_callback, contract_payload, flow, settings
):
    settings.ATLAS_CALLBACK_CLIENT_SECRET = "a-new-secret-after-a-leak"

    response = post_callback(contract_payload)

    assert response.status_code == 401
    assert Payload.objects.count() == 0


def test_get_is_not_allowed(client, token):
    assert client.get(V3, headers={"Token": token}).status_code == 405
    assert client.get(V1, headers={"Token": token}).status_code == 405


# --- size ----------------------------------------------------------------------------------


def test_a_body_over_the_limit_is_413_and_not_stored(post_callback, settings, flow):
    settings.ATLAS_CALLBACK_MAX_BYTES = 100

    response = post_callback(b'{"flow_uuid": "' + b"x" * 100 + b'"}')

    assert response.status_code == 413
    assert "100 bytes" in response.json()["message"]
    assert Payload.objects.count() == 0


def test_a_declared_length_over_the_limit_is_refused_before_reading(post_callback, settings):
    settings.ATLAS_CALLBACK_MAX_BYTES = 100

    response = post_callback(b"{}", CONTENT_LENGTH="5000000")

    assert response.status_code == 413
    assert Payload.objects.count() == 0


def test_a_body_without_content_length_is_411(post_callback):
    response = post_callback(b"{}", CONTENT_LENGTH="")

    assert response.status_code == 411
    assert Payload.objects.count() == 0


# --- validation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b'{"flow_uuid": "abc", ', "malformed JSON"),
        (b"\xff\xfe not utf-8", "not valid UTF-8"),
        (b"[1, 2]", "expected an object, got a list"),
        (b'{"ocr_data": []}', "flow_uuid: is required"),
        (b'{"flow_uuid": "f-1", "ocr_data": {}}', "ocr_data: expected a list"),
        (
            b'{"flow_uuid": "f-1", "ocr_data": [{"data": {"x": {"value": 1, "confidence_score": 7}}}]}',
            "ocr_data[0].data.x.confidence_score: must be between 0 and 1",
        ),
    ],
)
def test_an_invalid_body_is_400_naming_the_problem_and_kept_as_rejected(
    post_callback, body, problem
):
    response = post_callback(body)

    assert response.status_code == 400
    assert problem in response.json()["message"]
    payload = Payload.objects.get()
    assert response.json()["delivery"] == payload.pk
    assert payload.outcome == "rejected"
    assert problem in payload.error
    assert bytes(payload.body) == body
    assert payload.source == "callback_v3"
    assert Document.objects.count() == 0


def test_an_empty_body_is_rejected(post_callback):
    response = post_callback(b"", CONTENT_LENGTH="0")

    assert response.status_code == 400
    assert "malformed JSON" in response.json()["message"]
    assert Payload.objects.get().outcome == "rejected"


def test_a_v1_body_without_a_batch_id_is_rejected(post_callback):
    response = post_callback({"data": [{"document_id": "1", "file_data": {}}]}, path=V1)

    assert response.status_code == 400
    assert "batch_id" in response.json()["message"]
    assert Payload.objects.get().outcome == "rejected"


def test_a_v1_body_mixing_batches_is_rejected(post_callback):
    body = {
        "batch_id": "B-1",
        "data": [{"document_id": "1", "batch_id": "B-2", "file_data": {}}],
    }

    response = post_callback(body, path=V1)

    assert response.status_code == 400
    assert "data[0].batch_id" in response.json()["message"]


# --- accepted deliveries ----------------------------------------------------------------------


def test_a_valid_callback_is_stored_then_applied(post_callback, contract_payload, flow, token):
    body = json.dumps(contract_payload).encode()
    sent = datetime(2026, 3, 1, 10, 30, tzinfo=UTC)

    response = post_callback(
        body,
        headers={"Date": rfc1123(sent), "User-Agent": "Atlas/3", "X-Request-Id": "req-77"},
    )

    assert response.status_code == 202
    payload = Payload.objects.get()
    assert response.json() == {"status": "accepted", "delivery": payload.pk}
    assert bytes(payload.body) == body
    assert payload.size == len(body)
    assert payload.source == "callback_v3"
    assert payload.outcome == "applied"
    assert payload.flow == flow
    assert payload.as_of == sent
    assert payload.headers == {
        "Content-Type": "application/json",
        "User-Agent": "Atlas/3",
        "Date": rfc1123(sent),
        "Content-Length": str(len(body)),
        "X-Request-Id": "req-77",
    }
    assert token not in json.dumps(payload.headers)
    assert Document.objects.filter(flow=flow).count() == 4
    flow.refresh_from_db()
    assert flow.results_source == "callback_v3"
    assert flow.sync_state == "DONE"


def test_receipt_costs_three_queries_before_the_apply(
    client, token, contract_payload, flow, django_assert_num_queries
):
    # token look-up, journal insert, "is the flow known"; the apply runs on commit.
    with django_assert_num_queries(3):
        response = client.post(
            V3, contract_payload, content_type="application/json", headers={"Token": token}
        )
    assert response.status_code == 202
    assert Payload.objects.get().outcome == "received"


def test_the_same_delivery_twice_changes_nothing(post_callback, contract_payload, flow):
    post_callback(contract_payload)
    before = snapshot()

    response = post_callback(contract_payload)

    assert response.status_code == 202
    assert snapshot() == before
    assert list(Payload.objects.order_by("id").values_list("outcome", flat=True)) == [
        "applied",
        "duplicate",
    ]


def test_a_callback_after_a_poll_of_the_same_content_changes_nothing(
    post_callback, contract_payload, flow
):
    polled = journal.record(
        Payload.Source.POLL_V3,
        json.dumps(contract_payload, indent=2).encode(),
        as_of=timezone.now(),
    )
    assert journal.apply(polled.pk).outcome == "applied"
    before = snapshot()

    response = post_callback(contract_payload)

    assert response.status_code == 202
    assert snapshot() == before
    assert Payload.objects.get(source="callback_v3").outcome == "duplicate"
    flow.refresh_from_db()
    assert flow.results_source == "poll_v3"


def test_an_older_delivery_arriving_late_never_replaces_newer_data(
    post_callback, contract_payload, flow
):
    newer = copy.deepcopy(contract_payload)
    newer["ocr_data"][0]["data"]["customer_name"]["value"] = "Pashangh Irani"
    now = timezone.now().replace(microsecond=0)
    post_callback(newer, headers={"Date": rfc1123(now)})
    before = snapshot()

    response = post_callback(
        contract_payload, headers={"Date": rfc1123(now - timedelta(minutes=5))}
    )

    assert response.status_code == 202
    late = Payload.objects.order_by("id").last()
    assert late.outcome == "stale"
    assert snapshot() == before
    assert field_value("INVOICE", "customer_name") == "Pashangh Irani"


def test_without_a_usable_date_header_receipt_time_orders_deliveries(
    post_callback, contract_payload, flow
):
    before = timezone.now()
    post_callback(contract_payload, headers={"Date": "yesterday-ish"})
    after = timezone.now()

    assert before <= Payload.objects.get().as_of <= after


def test_a_date_in_the_future_counts_as_receipt_time():
    received = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
    ahead = rfc1123(received + timedelta(hours=2))

    assert services.as_of_from(ahead, received) == received
    assert services.as_of_from(rfc1123(received - timedelta(seconds=30)), received) == (
        received - timedelta(seconds=30)
    )


# --- unknown flows -------------------------------------------------------------------------


def test_an_unknown_flow_is_kept_as_unmatched_and_applied_once_the_flow_exists(
    post_callback, contract_payload, django_capture_on_commit_callbacks
):
    response = post_callback(contract_payload)

    assert response.status_code == 422
    assert "unknown flow_uuid" in response.json()["message"]
    payload = Payload.objects.get()
    assert (payload.outcome, payload.flow_uuid) == ("unmatched", contract_payload["flow_uuid"])
    assert Document.objects.count() == 0

    # flow/init returns and we store the flow_uuid (services._init does exactly this).
    Flow.objects.create(flow_uuid=contract_payload["flow_uuid"], application_id="A-1")
    with django_capture_on_commit_callbacks(execute=True):
        journal.retry_unmatched_for(contract_payload["flow_uuid"])

    payload.refresh_from_db()
    assert payload.outcome == "applied"
    assert Document.objects.count() == 4


def test_a_flow_stored_while_the_delivery_is_marked_unmatched_is_not_lost(
    post_callback, contract_payload
):
    real_set_outcome = services._set_outcome

    def flow_init_finishes_meanwhile(payload, outcome, *, error):
        real_set_outcome(payload, outcome, error=error)
        Flow.objects.create(flow_uuid=contract_payload["flow_uuid"], application_id="A-1")

    with mock.patch.object(services, "_set_outcome", flow_init_finishes_meanwhile):
        post_callback(contract_payload)

    assert Payload.objects.get().outcome == "applied"
    assert Document.objects.count() == 4


# --- v1 ---------------------------------------------------------------------------------------


@pytest.fixture
def v1_batch(db) -> Upload:
    return Upload.objects.create(
        batch_id="BATCH-V1-1",
        api="v1",
        files=[{"file_url": "https://files.example.com/a.jpg", "document_id": "001"}],
    )


def v1_page(batch_id_at_top=True):
    items = [
        {
            "document_id": "001",
            "file_data": {"document_type": "AADHAAR", "name": {"value": "Asha", "confidence_score": 1}},
        },
        {
            "document_id": "002",
            "file_data": {"document_type": "PAN", "pan": {"value": "ABCDE1234F", "confidence_score": 0.7}},
        },
    ]  # fmt: skip
    if batch_id_at_top:
        return {"batch_id": "BATCH-V1-1", "data": items, "page": 1, "per_page": 50,
                "total_pages": 1, "total_items": 2, "has_next": False, "has_prev": False}  # fmt: skip
    for item in items:
        item["batch_id"] = "BATCH-V1-1"
    return {"data": items}


@pytest.mark.parametrize("batch_id_at_top", [True, False])
def test_a_v1_callback_is_applied_to_its_batch(post_callback, v1_batch, batch_id_at_top):
    response = post_callback(v1_page(batch_id_at_top), path=V1)

    assert response.status_code == 202
    payload = Payload.objects.get()
    assert (payload.source, payload.outcome, payload.upload) == ("callback_v1", "applied", v1_batch)
    docs = Document.objects.filter(v1_batch=v1_batch).order_by("position")
    assert [d.document_type for d in docs] == ["AADHAAR", "PAN"]
    assert docs[0].file_url == "https://files.example.com/a.jpg"


def test_a_page_of_a_multi_page_v1_batch_is_rejected_not_applied_alone(post_callback, v1_batch):
    body = v1_page() | {"page": 2, "total_pages": 3, "has_next": True}

    response = post_callback(body, path=V1)

    assert response.status_code == 400
    assert "page 2 of 3" in response.json()["message"]
    assert Payload.objects.get().outcome == "rejected"
    assert Document.objects.count() == 0


def test_a_v1_callback_delivered_twice_changes_nothing(post_callback, v1_batch):
    post_callback(v1_page(), path=V1)
    before = snapshot()

    post_callback(v1_page(), path=V1)

    assert snapshot() == before
    assert Payload.objects.order_by("id").last().outcome == "duplicate"


def test_a_v1_callback_for_an_unknown_batch_is_unmatched(post_callback):
    response = post_callback(v1_page(), path=V1)

    assert response.status_code == 422
    payload = Payload.objects.get()
    assert (payload.outcome, payload.batch_id) == ("unmatched", "BATCH-V1-1")


# --- failures on our side --------------------------------------------------------------------


def test_a_database_outage_when_storing_is_a_503_so_atlas_retries(
    post_callback, contract_payload, flow
):
    with mock.patch.object(journal, "record", side_effect=OperationalError("server closed")):
        response = post_callback(contract_payload)

    assert response.status_code == 503
    assert response["Retry-After"]
    assert Payload.objects.count() == 0


def test_a_database_outage_when_checking_the_token_is_a_503_not_a_401(
    post_callback, contract_payload
):
    with mock.patch.object(
        services, "authenticate_token", side_effect=OperationalError("server closed")
    ):
        response = post_callback(contract_payload)

    assert response.status_code == 503
    assert AuthAttempt.objects.count() == 0


def test_a_lost_task_is_still_accepted_and_left_for_the_sweeper(
    post_callback, contract_payload, flow
):
    from atlas_review.flows.tasks import apply_payload

    with mock.patch.object(apply_payload, "delay", side_effect=ConnectionError("broker down")):
        response = post_callback(contract_payload)

    assert response.status_code == 202
    payload = Payload.objects.get()
    assert payload.outcome == "received"
    assert payload.pk in flow_services.pending_payload_ids(older_than_seconds=0)


def test_a_token_from_an_admin_credential_works(client, post_callback, contract_payload, flow):
    credential, secret = services.create_credential(label="second pair")
    token = get_token(client, credential.client_id, secret)

    assert post_callback(contract_payload, token=token).status_code == 202
