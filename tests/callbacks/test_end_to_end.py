"""The simulator pushes results to a real server: /atlas/auth, then /atlas/callback, over HTTP.

live_server runs Django in a thread against a transactional database, so everything the
views write is committed and visible here, and no poll fetches results in the meantime
(there is no beat): the documents can only have arrived by callback.
"""

import time

import pytest

from atlas_review.atlas.simulator import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, start_simulator
from atlas_review.callbacks.models import AuthAttempt
from atlas_review.flows import services as flow_services
from atlas_review.flows.models import Document, Flow, Payload, Upload

from .conftest import ENV_ID, ENV_SECRET

KINDS = ("invoice", "delivery_order", "aadhaar", "pan", "imei", "open_box")


def wait_for(predicate, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s")


@pytest.fixture
def sim(live_server, settings):
    with start_simulator(
        processing_seconds=0.5,
        callbacks=True,
        callback_client_id=ENV_ID,
        callback_client_secret=ENV_SECRET,
        callback_backoff=0.1,
        v1_auth_url=f"{live_server.url}/atlas/auth",
        v1_callback_url=f"{live_server.url}/atlas/v1/callback",
    ) as handle:
        settings.ATLAS_BASE_URL = handle.v3_url
        settings.ATLAS_DOCSTREAM_URL = handle.v1_url
        settings.ATLAS_CLIENT_ID = DEFAULT_CLIENT_ID
        settings.ATLAS_CLIENT_SECRET = DEFAULT_CLIENT_SECRET
        settings.PUBLIC_BASE_URL = live_server.url
        yield handle


@pytest.mark.django_db(transaction=True)
def test_the_simulator_delivers_a_flow_by_callback(sim):
    files = [(sim.file_url(f"APP-E2E-{kind}.svg"), str(i)) for i, kind in enumerate(KINDS)]

    flow = flow_services.create_flow("APP-E2E", files)

    flow.refresh_from_db()
    assert flow.flow_uuid and flow.sync_state == "POLLING"
    payload = wait_for(
        lambda: Payload.objects.filter(source="callback_v3", outcome="applied").first()
    )
    assert payload.flow_id == flow.pk
    assert payload.flow_uuid == flow.flow_uuid
    assert "Token" not in payload.headers
    flow.refresh_from_db()
    assert flow.sync_state == "DONE"
    assert flow.results_source == "callback_v3"
    docs = Document.objects.filter(flow=flow)
    assert docs.count() >= len(KINDS)
    assert {d.file_url for d in docs} >= {url for url, _ in files}
    assert sim.stats()["callbacks_sent"] == 1
    assert sim.stats()["callbacks_failed"] == 0
    # Atlas got exactly one delivery through: no retry, so nothing duplicated.
    assert Payload.objects.filter(source="callback_v3").count() == 1


@pytest.mark.django_db(transaction=True)
def test_the_simulator_delivers_a_v1_batch_by_callback(sim):
    files = [(sim.file_url(f"B-E2E-{kind}.svg"), str(i)) for i, kind in enumerate(KINDS[2:4])]

    batch = flow_services.create_batch(files)

    payload = wait_for(
        lambda: Payload.objects.filter(source="callback_v1", outcome="applied").first()
    )
    assert payload.upload_id == batch.pk
    assert Document.objects.filter(v1_batch=batch).count() == 2
    assert Upload.objects.get(pk=batch.pk).sync_state == "DONE"


@pytest.mark.django_db(transaction=True)
def test_wrong_callback_credentials_store_nothing(sim):
    sim.knobs.callback_client_secret = "not-the-secret"
    sim.knobs.callback_retries = 0
    files = [(sim.file_url("APP-BAD-invoice.svg"), "1")]

    flow = flow_services.create_flow("APP-BAD", files)

    wait_for(lambda: sim.stats()["callbacks_failed"] == 1)
    assert Payload.objects.count() == 0
    assert Flow.objects.get(pk=flow.pk).sync_state == "POLLING"
    assert list(AuthAttempt.objects.values_list("reason", "client_id")) == [
        ("wrong_secret", ENV_ID)
    ]
