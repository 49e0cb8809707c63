"""The races the worker-kill run found, replayed deterministically against the simulator:
a callback finishing a flow while a poll is in flight, a worker dying between Atlas taking
an upload and our commit, a sweep and create_flow both starting a new flow, and two runs
starting the same new flow."""

from datetime import timedelta

import pytest
from django.utils import timezone

from atlas_review.atlas.client import AtlasClient
from atlas_review.atlas.simulator import start_simulator
from atlas_review.flows import ingest, services, tasks
from atlas_review.flows.models import Document, Flow, SyncState, Upload

pytestmark = pytest.mark.django_db

KINDS = ("invoice", "aadhaar", "pan")


class Died(BaseException):
    """The worker process is gone: nothing after this point runs (not an AtlasError)."""


@pytest.fixture
def sim(settings):
    with start_simulator(processing_seconds=0.3, callbacks=False) as sim:
        settings.ATLAS_BASE_URL = sim.v3_url
        settings.ATLAS_DOCSTREAM_URL = sim.v1_url
        yield sim


def new_flow(sim, app: str) -> Flow:
    return Flow.objects.create(
        application_id=app, product_type="PROD_CDL", next_sync_at=timezone.now(),
        requested_files=[
            {"file_url": sim.file_url(f"{app}-{kind}.svg"), "document_id": str(n)}
            for n, kind in enumerate(KINDS)
        ],
    )  # fmt: skip


def wait_until_done_at_atlas(sim, flow_uuid: str) -> None:
    import time

    deadline = time.monotonic() + 5
    while AtlasClient.from_settings().status(flow_uuid).master_status != "SUCCESS":
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_a_callback_applied_while_a_poll_is_in_flight_leaves_the_flow_done(sim):
    flow = new_flow(sim, "RACE-CB")
    services.sync_flow(flow.pk)  # init + upload + first poll: still processing
    flow.refresh_from_db()
    assert flow.sync_state == SyncState.POLLING
    wait_until_done_at_atlas(sim, flow.flow_uuid)

    class CallbackDuringPoll(AtlasClient):
        def status(self, flow_uuid):
            answer = super().status(flow_uuid)
            # Atlas's callback lands between our status request and our write.
            _raw, data = AtlasClient.from_settings().fetch_extracts(flow_uuid)
            ingest.apply_callback_data(data, source="callback_v3")
            return answer

    services.sync_flow(flow.pk, client=CallbackDuringPoll.from_settings())

    flow.refresh_from_db()
    # Before the fix the poll saved its stale POLLING over DONE and, the results being a
    # duplicate, nothing set it back: "Processing at Atlas" forever, never swept again.
    assert (flow.sync_state, flow.next_sync_at) == (SyncState.DONE, None)
    assert flow.results_source == "callback_v3"
    assert Document.objects.filter(flow=flow).count() >= len(KINDS)


@pytest.mark.parametrize("atlas_got_it", [True, False], ids=["after-upload", "before-upload"])
def test_a_worker_dying_around_the_upload_sends_the_files_exactly_once(sim, atlas_got_it):
    flow = new_flow(sim, f"RACE-UP-{atlas_got_it}")

    class DiesAtUpload(AtlasClient):
        def upload(self, flow_uuid, files):
            if atlas_got_it:
                super().upload(flow_uuid, files)
            raise Died

    with pytest.raises(Died):
        services.sync_flow(flow.pk, client=DiesAtUpload.from_settings())
    flow.refresh_from_db()
    assert flow.sync_state == SyncState.STARTING and not flow.uploads.exists()

    services.sync_flow(flow.pk)  # the task, redelivered

    atlas_flow = sim.state.flows[flow.flow_uuid]
    assert len(atlas_flow.files) == len(KINDS), "Atlas must get the files once, not twice"
    flow.refresh_from_db()
    assert flow.sync_state == SyncState.POLLING
    wait_until_done_at_atlas(sim, flow.flow_uuid)
    services.sync_flow(flow.pk)
    flow.refresh_from_db()
    assert flow.sync_state == SyncState.DONE
    documents = Document.objects.filter(flow=flow)
    assert documents.count() == len(sim.state.flow_result(atlas_flow, atlas_flow.files)["ocr_data"])
    assert all(d.file_url.startswith(sim.url) for d in documents if d.document_id)


def test_a_sweep_does_not_start_a_flow_create_flow_has_queued(sim, settings, monkeypatch):
    settings.ATLAS_POLL_INTERVAL_SECONDS = 7
    queued, dispatched = [], []
    monkeypatch.setattr(tasks.sync_flow, "delay_on_commit", queued.append)
    monkeypatch.setattr(tasks.sync_flow, "delay", dispatched.append)

    flow = services.create_flow("RACE-NEW", [(sim.file_url("RACE-NEW-pan.svg"), "1")])
    tasks.sweep()  # the beat, a moment later, while the task waits in the queue

    assert (queued, dispatched) == ([flow.pk], [])
    # The queued task is lost (broker restarted): the sweep starts the flow after the claim.
    Flow.objects.filter(pk=flow.pk).update(next_sync_at=timezone.now() - timedelta(seconds=1))
    tasks.sweep()
    assert dispatched == [flow.pk]


def test_two_runs_starting_one_new_flow_leave_one_atlas_flow_in_use(sim, caplog):
    flow = new_flow(sim, "RACE-TWICE")

    class SlowInit(AtlasClient):
        def init_flow(self, *args, **kwargs):
            services.sync_flow(flow.pk)  # the other run gets through init and upload first
            return super().init_flow(*args, **kwargs)

    services.sync_flow(flow.pk, client=SlowInit.from_settings())

    flow.refresh_from_db()
    uploaded = [f for f in sim.state.flows.values() if f.files]
    assert [f.flow_uuid for f in uploaded] == [flow.flow_uuid]
    assert len(uploaded[0].files) == len(KINDS)
    assert Upload.objects.filter(flow=flow).count() == 1
    assert len(sim.state.flows) == 2  # the slower run's Atlas flow: unused, and logged
    assert "was started by another run" in caplog.text


def test_a_worker_dying_while_applying_leaves_the_payload_to_apply_again(contract_payload):
    """Killed after the rows were written but before the payload's outcome: both or
    neither. Before the fix the rows stayed and the payload, still `received`, was later
    re-applied and labelled a duplicate of itself: no row said where the data came from."""
    import json

    from atlas_review.flows import journal
    from atlas_review.flows.models import Payload

    flow = Flow.objects.create(
        flow_uuid=contract_payload["flow_uuid"], application_id="RACE-APPLY", product_type="P"
    )
    payload = journal.record(Payload.Source.CALLBACK_V3, json.dumps(contract_payload).encode())
    real_finish = journal._finish

    def dies(*args, **kwargs):
        raise Died

    journal._finish = dies
    try:
        with pytest.raises(Died):
            journal.apply(payload.pk)
    finally:
        journal._finish = real_finish

    flow.refresh_from_db()
    assert flow.sync_state == SyncState.NEW and not Document.objects.filter(flow=flow).exists()
    assert journal.apply(payload.pk).outcome == "applied"  # the sweeper, a minute later
