"""Atlas misbehaving, through the simulator's fault knobs: 5xx bursts, timeouts, 429 with
Retry-After, tokens expiring in the middle of a sweep, flows stuck IN_PROGRESS past the
give-up time, FAILED flows, refused credentials.

The beat is played by calling the real sweep every 0.2 s (tasks run inline), with a 1 s poll
interval and backoff from 1 s, so a hot loop would show as dozens of requests per second.
Each case checks the state the dashboard shows (flows list, flow page, review exceptions
queue) and counts what Atlas was sent (the simulator's log of every request)."""

from __future__ import annotations

import time

import pytest
from django.core.cache import cache
from django.utils import timezone

from atlas_review.atlas.simulator import start_simulator
from atlas_review.flows import services, tasks
from atlas_review.flows.models import Flow, SyncState
from tests.conftest import make_user

pytestmark = [pytest.mark.slow, pytest.mark.django_db]

KINDS = ("invoice", "aadhaar")
TICK = 0.2


@pytest.fixture(autouse=True)
def fast_schedule(settings, monkeypatch):
    settings.ATLAS_POLL_INTERVAL_SECONDS = 1
    settings.ATLAS_MAX_RETRIES = 2
    settings.ATLAS_TIMEOUT_SECONDS = 5
    monkeypatch.setattr(services, "MIN_BACKOFF_SECONDS", 1)
    # One client per thread is cached with its settings; tokens live in the cache.
    services._local.client = None
    cache.clear()
    yield
    services._local.client = None


@pytest.fixture
def sim(settings, sim_calls):
    with start_simulator(processing_seconds=0.5, callbacks=False) as handle:
        settings.ATLAS_BASE_URL = handle.v3_url
        settings.ATLAS_DOCSTREAM_URL = handle.v1_url
        handle.calls = sim_calls
        yield handle


@pytest.fixture
def dashboard(client, db):
    client.force_login(make_user("watcher", "supervisor"))

    def page(url: str) -> str:
        response = client.get(url)
        assert response.status_code == 200, url
        return response.content.decode()

    return page


def new_flow(sim, app: str, **extra) -> Flow:
    return Flow.objects.create(
        application_id=app, product_type="PROD_CDL", next_sync_at=timezone.now(),
        requested_files=[
            {"file_url": sim.file_url(f"{app}-{kind}.svg"), "document_id": str(n)}
            for n, kind in enumerate(KINDS)
        ],
        **extra,
    )  # fmt: skip


def sweep_for(seconds: float, until=None) -> float:
    """The beat: sweep every TICK until `until()` holds or time is up; returns seconds."""
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        tasks.sweep()
        if until is not None and until():
            break
        time.sleep(TICK)
    return time.monotonic() - start


def state(flow: Flow) -> str:
    flow.refresh_from_db()
    return flow.sync_state


def test_a_5xx_burst_backs_off_then_completes(sim, dashboard):
    flow = new_flow(sim, "FAULT-5XX")
    sim.knobs.update({"error_rate": 1.0})
    burst = 3.0
    sweep_for(burst)

    flow.refresh_from_db()
    during = len(sim.calls.calls)
    assert flow.sync_state == SyncState.NEW and flow.error_count >= 1
    assert "gave up after 3 attempts" in flow.last_error
    assert "gave up after 3 attempts" in dashboard(f"/flows/{flow.pk}/")
    # Backoff 1 s, 2 s, 4 s...: at most 3 sync attempts of 3 requests each in 3 s. A hot
    # loop (a sync per sweep) would be 15 attempts, 45 requests.
    assert during <= 9, during

    sim.knobs.update({"error_rate": 0.0})
    sweep_for(15, until=lambda: state(flow) == SyncState.DONE)

    assert (flow.sync_state, flow.error_count, flow.last_error) == (SyncState.DONE, 0, "")
    assert flow.documents.exists()
    assert "FAULT-5XX" in dashboard("/flows/")


def test_timeouts_are_retried_a_bounded_number_of_times(sim, settings, dashboard):
    flow = new_flow(sim, "FAULT-SLOW")
    sweep_for(2, until=lambda: state(flow) == SyncState.POLLING)  # started before the trouble
    settings.ATLAS_TIMEOUT_SECONDS = 0.3
    services._local.client = None
    sim.knobs.update({"latency_ms": 1000, "processing_seconds": 0})
    slow_from = len(sim.calls.calls)

    sweep_for(4)

    flow.refresh_from_db()
    assert flow.sync_state == SyncState.POLLING and "ReadTimeout" in flow.last_error
    assert "ReadTimeout" in dashboard(f"/flows/{flow.pk}/")
    # Each sync: 3 attempts of 0.3 s plus jittered backoff, then 1 s, 2 s... before the next.
    slow_polls = [c for c in sim.calls.calls[slow_from:] if c.path.endswith("/status")]
    assert len(slow_polls) <= 9, len(slow_polls)

    sim.knobs.update({"latency_ms": 0})
    sweep_for(15, until=lambda: state(flow) == SyncState.DONE)
    assert flow.sync_state == SyncState.DONE and flow.last_error == ""


def test_a_new_flow_whose_init_timed_out_is_uploaded_once_atlas_answers(sim, settings):
    flow = new_flow(sim, "FAULT-INIT")
    services.atlas_client().authtoken()  # a token from before the trouble (it is cached)
    services._local.client = None
    settings.ATLAS_TIMEOUT_SECONDS = 0.3
    sim.knobs.update({"latency_ms": 600})
    sweep_for(2)
    flow.refresh_from_db()
    # flow/init is not idempotent: a read timeout is not retried blindly.
    assert flow.last_error.startswith("outcome unknown") and not flow.flow_uuid

    settings.ATLAS_TIMEOUT_SECONDS = 5
    services._local.client = None
    sim.knobs.update({"latency_ms": 0})
    sweep_for(15, until=lambda: state(flow) == SyncState.DONE)

    assert flow.sync_state == SyncState.DONE
    uploaded = [f for f in sim.state.flows.values() if f.files]
    assert [f.flow_uuid for f in uploaded] == [flow.flow_uuid]
    assert len(uploaded[0].files) == len(KINDS)
    # Flows Atlas created for the timed-out inits: unused, never uploaded to, never billed.
    print(f"\ninit timeouts: {len(sim.state.flows) - 1} unused flows at Atlas")


def test_429_retry_after_is_honoured(sim):
    sim.knobs.update({"rate_limit_every": 3})  # every 3rd call: 429, Retry-After: 1
    flow = new_flow(sim, "FAULT-429")

    sweep_for(20, until=lambda: state(flow) == SyncState.DONE)

    assert flow.sync_state == SyncState.DONE
    calls = sorted(sim.calls.calls, key=lambda c: c.at)
    limited = [i for i, c in enumerate(calls) if c.status == 429]
    assert len(limited) >= 2
    for i in limited:
        if i + 1 < len(calls):
            # The simulator sleeps no latency here: the gap is our client's wait.
            assert calls[i + 1].at - calls[i].at >= 0.95, "retried before Retry-After"
    # auth, init, upload, a few polls, extracts, and a retry per 429: no spiral of retries.
    assert len(calls) <= 20, len(calls)


def test_tokens_expiring_in_the_middle_of_a_sweep_are_renewed_once(sim):
    flows = [new_flow(sim, f"FAULT-TOKEN-{i}") for i in range(8)]
    sweep_for(3, until=lambda: all(state(f) == SyncState.POLLING for f in flows))
    time.sleep(0.6)  # Atlas finishes them all
    issued = sim.stats()["tokens_issued"]
    Flow.objects.update(next_sync_at=timezone.now())
    seen = len(sim.calls.of("/status"))

    def expire_after_third_poll(record):
        if len(sim.calls.of("/status")) == seen + 3 and not getattr(sim, "expired", False):
            sim.expired = sim.expire_tokens()
        return True

    sim.calls.addFilter(expire_after_third_poll)
    tasks.sweep()  # one sweep syncs all eight flows inline

    assert sim.expired >= 1, "a token was live when the sweep was cut"
    assert all(state(f) == SyncState.DONE for f in flows)
    assert sim.stats()["tokens_issued"] == issued + 1, "renewed once, not per call"
    assert sim.calls.statuses()[401] == 1


def test_a_flow_stuck_in_progress_is_given_up_and_then_left_alone(sim, settings, dashboard):
    settings.ATLAS_GIVE_UP_SECONDS = 2
    sim.knobs.update({"stuck_rate": 1.0})
    flow = new_flow(sim, "FAULT-STUCK")

    sweep_for(6, until=lambda: state(flow) == SyncState.GAVE_UP)
    polls = len(sim.calls.of("/status"))
    sweep_for(2)

    assert flow.sync_state == SyncState.GAVE_UP and "stopped polling" in flow.last_error
    assert polls <= 2 / 1 + 2, polls  # once a second until the deadline
    assert len(sim.calls.of("/status")) == polls, "no polling after giving up"
    assert sim.calls.of("/extracts") == []
    assert "FAULT-STUCK" in dashboard("/flows/?state=failed")
    assert "stopped polling" in dashboard(f"/flows/{flow.pk}/")
    assert "FAULT-STUCK" in dashboard("/review/queue/exceptions/")


def test_a_failed_flow_is_shown_failed_and_not_polled_again(sim, dashboard):
    sim.knobs.update({"fail_rate": 1.0})
    flow = new_flow(sim, "FAULT-FAILED")

    sweep_for(5, until=lambda: state(flow) == SyncState.FAILED)
    requests = len(sim.calls.calls)
    sweep_for(1.5)

    assert (flow.sync_state, flow.master_status) == (SyncState.FAILED, "FAILED")
    assert len(sim.calls.calls) == requests and sim.calls.of("/extracts") == []
    assert "FAULT-FAILED" in dashboard("/flows/?state=failed")
    assert "FAULT-FAILED" in dashboard("/review/queue/exceptions/")


def test_refused_credentials_stop_the_flow_at_once(sim, settings, dashboard):
    settings.ATLAS_CLIENT_SECRET = "not-the-secret"
    flow = new_flow(sim, "FAULT-AUTH")

    sweep_for(2)

    flow.refresh_from_db()
    assert flow.sync_state == SyncState.ERROR and "credentials rejected" in flow.last_error
    assert len(sim.calls.calls) == 1, "a 401 on /authtoken is not retried"
    assert "FAULT-AUTH" in dashboard("/flows/?state=failed")
    assert "not-the-secret" not in dashboard(f"/flows/{flow.pk}/")


def test_a_retry_after_longer_than_the_inline_wait_postpones_the_next_poll(
    sim, monkeypatch, settings
):
    """Atlas asks for more patience than a worker should spend asleep: the flow's next poll
    is put off by that long, not by the (shorter) error backoff."""
    flow = new_flow(sim, "FAULT-WAIT")
    settings.ATLAS_POLL_INTERVAL_SECONDS = 0
    monkeypatch.setattr(services, "MIN_BACKOFF_SECONDS", 0.2)
    monkeypatch.setattr(services.AtlasClient, "from_settings", patient_client(cap=0.5))
    sim.knobs.update({"rate_limit_every": 1})  # every call: 429, Retry-After: 1

    before = timezone.now()
    services.sync_flow(flow.pk)

    flow.refresh_from_db()
    assert "retry after 1 s" in flow.last_error
    assert len(sim.calls.calls) == 1, "not retried inline"
    # The error backoff alone would be 0.2 s here.
    assert (flow.next_sync_at - before).total_seconds() >= 1


def patient_client(cap: float):
    real = services.AtlasClient.from_settings.__func__

    def from_settings(cls, **overrides):
        return real(cls, retry_after_cap=cap, **overrides)

    return classmethod(from_settings)
