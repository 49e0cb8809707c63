import json

import pytest
from django.core.cache import cache

from atlas_review.flows.models import Flow, Upload

ENV_ID = "atlas-callback-test"
ENV_SECRET = "callback-secret-for-tests-only"


@pytest.fixture(autouse=True)
def _fresh_cache():
    # Failure counters live in the cache; LocMemCache outlives a test.
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def flow(db, contract_payload) -> Flow:
    flow = Flow.objects.create(
        flow_uuid=contract_payload["flow_uuid"], application_id="12321321", product_type="PROD_CDL"
    )
    Upload.objects.create(batch_id="BATCH-1", api="v3", flow=flow, files=[])
    return flow


def get_token(client, client_id=ENV_ID, secret=ENV_SECRET) -> str:
    response = client.post("/atlas/auth", headers={"Client-Id": client_id, "Client-Secret": secret})
    assert response.status_code == 200, response.content
    return response.json()["access_token"]


@pytest.fixture
def token(client, db) -> str:
    return get_token(client)


@pytest.fixture
def post_callback(client, token, django_capture_on_commit_callbacks):
    """POST a body to a callback endpoint the way Atlas does, running the apply that the
    view queues on commit (tests run inside a transaction that never commits)."""

    def post(body, *, path="/atlas/callback", token=token, headers=None, **extra):
        if not isinstance(body, bytes | str):
            body = json.dumps(body)
        sent = {"Token": token} if token is not None else {}
        sent.update(headers or {})
        with django_capture_on_commit_callbacks(execute=True):
            return client.post(path, body, content_type="application/json", headers=sent, **extra)

    return post
