"""Workers SIGKILLed again and again in the middle of sync tasks, over a run of many flows:
after the last restart every flow completes, the database mirrors exactly what Atlas holds
(no duplicate documents, fields or cross-checks), and Atlas was sent each flow's files once.

Real processes: the Atlas simulator (threads of this process), a private Redis as broker
and token cache, one Celery beat and one Celery worker (prefork, 3 processes) on the test
database. Kills alternate between one pool process (what the OOM killer does: the main
process sees WorkerLostError and requeues the task) and the whole worker (a node lost: the
task stays unacked in Redis until the visibility timeout, 5 s here, gives it back).

RELIABILITY_FLOWS (default 120) and RELIABILITY_KILLS (default 6) size the run; the issue's
full run is RELIABILITY_FLOWS=1000 RELIABILITY_KILLS=20.
"""

from __future__ import annotations

import itertools
import os
import random
import time
from collections import Counter

import pytest
from django.db.models import Count
from django.utils import timezone

from atlas_review.atlas.payloads import parse_callback_data
from atlas_review.atlas.simulator import start_simulator
from atlas_review.flows import journal
from atlas_review.flows.models import (
    CrossCheck,
    Document,
    ExtractedField,
    Flow,
    Payload,
    SyncState,
    Upload,
)

from .conftest import wait_for, worker_database_url, worker_env

FLOWS = int(os.getenv("RELIABILITY_FLOWS", "120"))
KILLS = int(os.getenv("RELIABILITY_KILLS", "6"))
# A longer run spreads its kills over its length (starting, polling, applying results).
SPREAD = max(1.0, FLOWS / 120 * 6 / KILLS)
KINDS = ("invoice", "delivery_order", "aadhaar", "pan")

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def new_flows(sim, n: int) -> list[Flow]:
    """What create_flow stores, without its inline start: the beat's sweep starts them."""
    now = timezone.now()
    return Flow.objects.bulk_create(
        Flow(
            application_id=f"KILL-{i:04d}", product_type="PROD_CDL", next_sync_at=now,
            requested_files=[
                {"file_url": sim.file_url(f"KILL-{i:04d}-{kind}.svg"), "document_id": str(k)}
                for k, kind in enumerate(KINDS)
            ],
        )
        for i in range(n)
    )  # fmt: skip


def per_flow(model, **filters) -> Counter:
    rows = model.objects.filter(**filters).values("flow").annotate(n=Count("pk"))
    return Counter({row["flow"]: row["n"] for row in rows})


def test_sigkilled_workers_lose_nothing_and_duplicate_nothing(
    redis_server, celery_processes, sim_calls
):
    rng = random.Random(int(os.getenv("RELIABILITY_SEED", "7")))
    with start_simulator(processing_seconds=1.0, callbacks=False, latency_ms=10) as sim:
        env = worker_env(
            DATABASE_URL=worker_database_url(),
            CELERY_BROKER_URL=redis_server.url(0),
            CACHE_URL=redis_server.url(1),
            ATLAS_BASE_URL=sim.v3_url,
            ATLAS_DOCSTREAM_URL=sim.v1_url,
            ATLAS_POLL_INTERVAL_SECONDS="2",
        )
        flows = new_flows(sim, FLOWS)
        started = time.monotonic()
        celery_processes("beat", env)
        worker = celery_processes("worker", env, "-c", "3")
        broker = redis_server.client(0)

        kills: list[dict] = []
        modes = itertools.cycle(("child", "group"))
        done = Flow.objects.filter(sync_state=SyncState.DONE).count
        deadline = time.monotonic() + 60 + KILLS * 5 * SPREAD
        while len(kills) < KILLS and done() < FLOWS and time.monotonic() < deadline:
            time.sleep(rng.uniform(1.0, 2.5) * SPREAD)
            in_flight = broker.hlen("unacked")  # reserved by a worker, not yet acked
            # The second half of the kills waits for results to be arriving.
            if not in_flight or (len(kills) >= KILLS // 2 and not done()):
                continue
            mode = next(modes)
            kills.append({"mode": mode, "in_flight": in_flight, "done": done()})
            if mode == "child":
                worker.kill_child()
            else:
                worker.kill()
                worker.start()

        wait_for(
            lambda: done() == FLOWS,
            timeout=60 + FLOWS * 0.3,
            interval=0.5,
            what=f"every flow to complete ({done()}/{FLOWS} done; "
            f"{dict(Counter(Flow.objects.values_list('sync_state', flat=True)))})",
        )
        elapsed = time.monotonic() - started
        worker.stop()

        # The kills hit work in progress, of both kinds.
        assert len(kills) == KILLS, kills
        assert {k["mode"] for k in kills} == {"child", "group"}
        assert all(k["done"] < FLOWS for k in kills)
        assert any(k["done"] for k in kills), "some kills came while results were applied"

        # Atlas got each flow's files exactly once (a second multiupload would have it
        # process and bill them twice, and deliver twice the documents).
        atlas_flows = {f.flow_uuid: f for f in sim.state.flows.values()}
        ours = {f.flow_uuid: f for f in Flow.objects.all()}
        for uuid in ours:
            assert len(atlas_flows[uuid].files) == len(KINDS), uuid
        orphans = len(atlas_flows) - FLOWS  # flow/init answered, worker killed before saving

        # The database mirrors Atlas exactly: no duplicates, nothing missing.
        documents, fields = per_flow(Document), per_flow(ExtractedField)
        checks, uploads = per_flow(CrossCheck), per_flow(Upload)
        applied = per_flow(Payload, outcome=Payload.Outcome.APPLIED)
        for flow in Flow.objects.all():
            sim_flow = atlas_flows[flow.flow_uuid]
            expected = parse_callback_data(sim.state.flow_result(sim_flow, sim_flow.files))
            assert documents[flow.pk] == len(expected.documents), flow
            assert fields[flow.pk] == sum(len(d.fields) for d in expected.documents), flow
            assert checks[flow.pk] == len(expected.cross_checks), flow
            assert applied[flow.pk] == 1, flow
            # 0 when a worker died between Atlas taking the upload and our commit: the next
            # run asked Atlas's status instead of uploading again, so the batch id is lost.
            assert uploads[flow.pk] <= 1, flow
        assert not Document.objects.filter(withdrawn_at__isnull=False).exists()
        # File links come from what we asked Atlas to process, batch id or not.
        assert not Document.objects.filter(file_url="").exclude(document_id="").exists()

        # Results fetched twice (a task redelivered after its apply) are journalled and
        # recognised as duplicates; anything still `received` is what the sweeper re-applies
        # after a minute, and it changes nothing.
        outcomes = Counter(Payload.objects.values_list("outcome", flat=True))
        assert set(outcomes) <= {"applied", "duplicate", "received"}, outcomes
        for pk in Payload.objects.filter(outcome="received").values_list("pk", flat=True):
            assert journal.apply(pk).outcome == "duplicate"

        polls = sim_calls.per_flow("/status")
        extracts = sim_calls.per_flow("/extracts")
        report = {
            "flows": FLOWS,
            "kills": kills,
            "seconds": round(elapsed, 1),
            "atlas_orphan_flows": orphans,
            "uploads_resumed_by_status": sum(1 for f in flows if not uploads[f.pk]),
            "worker_starts": worker.starts,
            "payload_outcomes": dict(outcomes),
            "max_polls_per_flow": max(polls.values()),
            "max_extracts_per_flow": max(extracts.values()),
            "requests": sim.stats()["requests"],
        }
        print("\nworker-kill run:", report)
        assert not Flow.objects.exclude(last_error="").exists(), "no flow shows an error"
