"""Two Celery beats running by mistake (a deploy that started a second one): each sends the
sweep every second, sweeps run concurrently on a worker with three processes, and still
every flow is polled once per interval, because a sweep only dispatches the flows whose
claim (a conditional UPDATE of next_sync_at) it won.

The count is Atlas's: the simulator's own record of GET /status per flow_uuid."""

from __future__ import annotations

import time
from itertools import pairwise

import pytest
from django.utils import timezone

from atlas_review.atlas.simulator import start_simulator
from atlas_review.flows.models import Flow, SyncState

from .conftest import wait_for, worker_database_url, worker_env

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

FLOWS, INTERVAL, WINDOW = 20, 2, 12.0


def test_two_beats_still_poll_each_flow_once_per_interval(
    redis_server, celery_processes, sim_calls
):
    # stuck_rate=1: Atlas never finishes these flows, so they are polled for the whole window.
    with start_simulator(processing_seconds=1, stuck_rate=1.0, callbacks=False) as sim:
        Flow.objects.bulk_create(
            Flow(
                application_id=f"BEAT-{i}", product_type="PROD_CDL", next_sync_at=timezone.now(),
                requested_files=[{"file_url": sim.file_url(f"BEAT-{i}-pan.svg"), "document_id": "1"}],
            )
            for i in range(FLOWS)
        )  # fmt: skip
        env = worker_env(
            DATABASE_URL=worker_database_url(),
            CELERY_BROKER_URL=redis_server.url(0),
            ATLAS_BASE_URL=sim.v3_url,
            ATLAS_DOCSTREAM_URL=sim.v1_url,
            ATLAS_POLL_INTERVAL_SECONDS=str(INTERVAL),
            ATLAS_SWEEP_INTERVAL_SECONDS="1",
        )
        worker = celery_processes("worker", env, "-c", "3")
        beats = [celery_processes("beat", env), celery_processes("beat", env)]
        wait_for(
            lambda: Flow.objects.filter(sync_state=SyncState.POLLING).count() == FLOWS,
            timeout=30,
            what="every flow to be started",
        )

        start = time.monotonic()
        time.sleep(WINDOW)
        end = time.monotonic()
        for beat in beats:
            beat.stop()
        worker.stop()

    sent = [beat.log.read_text().count("Sending due task atlas-sweep") for beat in beats]
    assert all(n >= WINDOW - 1 for n in sent), f"both beats sent sweeps: {sent}"

    polls: dict[str, list[float]] = {}
    for call in sim_calls.of("/status"):
        if start <= call.at <= end:
            polls.setdefault(call.query["flow_uuid"], []).append(call.at)
    assert len(polls) == FLOWS, "every flow was polled in the window"
    counts = sorted(len(times) for times in polls.values())
    gaps = [b - a for times in polls.values() for a, b in pairwise(sorted(times))]
    # Claims at most every INTERVAL seconds fit WINDOW / INTERVAL + 1 times in the window;
    # one more if a poll claimed just before it ran just inside. Without the claims each of
    # the ~2 sweeps a second would poll every flow: ~24 times each.
    most = int(WINDOW / INTERVAL) + 2
    assert counts[-1] <= most, counts
    assert counts[0] >= most // 2, f"no flow is starved either: {counts}"
    # Claims are INTERVAL apart; a queue delay under load can shorten the gap between two
    # polls, never to the ~0.5 s (or 0 s, concurrent sweeps) of unclaimed polling.
    assert min(gaps) >= 0.5 * INTERVAL, f"closest two polls of one flow: {min(gaps):.2f} s"
    print(
        f"\ntwo beats: {sum(sent)} sweeps sent in {WINDOW:.0f} s; polls per flow {counts[0]}"
        f"..{counts[-1]} (interval {INTERVAL} s); closest polls of a flow {min(gaps):.2f} s apart"
    )
