"""Redis restarted with tasks queued, and down while callbacks arrive: the journal, not the
broker, is the source of truth, and the beat's sweeper finds and applies what was lost.

A private Redis (in memory only, so a restart empties it), this process queueing tasks as the
web app does (create_flow, the callback view), then a real Celery beat + worker."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from atlas_review.atlas.simulator import generate_flow_result, start_simulator
from atlas_review.flows import services
from atlas_review.flows.models import Flow, Payload, SyncState

from .conftest import wait_for, worker_database_url, worker_env

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

CALLBACKS, NEW_FLOWS = 12, 8
QUEUE = "celery"


def post_callbacks(client, flows: list[Flow], sim) -> list[int]:
    token = client.post(
        "/atlas/auth",
        headers={
            "Client-Id": "atlas-callback-test",
            "Client-Secret": "callback-secret-for-tests-only",
        },
    ).json()["access_token"]
    ids = []
    for flow in flows:
        files = [{"file_url": sim.file_url(f"{flow.application_id}-pan.svg"), "document_id": "1"}]
        body = generate_flow_result(42, flow.flow_uuid, files, application_id=flow.application_id)
        response = client.post(
            "/atlas/callback", json.dumps(body), content_type="application/json",
            headers={"Token": token},
        )  # fmt: skip
        assert response.status_code == 202, response.content
        ids.append(response.json()["delivery"])
    return ids


def pushed_flows(prefix: str, n: int) -> list[Flow]:
    return [
        Flow.objects.create(
            flow_uuid=f"{prefix}-{i}",
            application_id=f"{prefix}-APP-{i}",
            product_type="PROD_CDL",
            sync_state=SyncState.POLLING,
            next_sync_at=timezone.now() + timedelta(hours=1),
        )
        for i in range(n)
    ]


def age_the_journal() -> None:
    """The sweeper re-applies rows left `received` for a minute; let that minute pass."""
    Payload.objects.filter(outcome=Payload.Outcome.RECEIVED).update(
        received_at=timezone.now() - timedelta(minutes=2)
    )


def test_tasks_lost_in_a_redis_restart_are_found_by_the_sweeper(
    client, celery_broker, celery_processes
):
    redis = celery_broker
    with start_simulator(processing_seconds=0.2, callbacks=False) as sim:
        # 1. Work queued while no worker runs: flows to start, callbacks to apply.
        new = [
            services.create_flow(
                f"REDIS-NEW-{i}", [(sim.file_url(f"REDIS-NEW-{i}-aadhaar.svg"), "1")]
            )
            for i in range(NEW_FLOWS)
        ]
        pushed = pushed_flows("redis-cb", CALLBACKS)
        deliveries = post_callbacks(client, pushed, sim)
        assert redis.client().llen(QUEUE) == NEW_FLOWS + CALLBACKS
        assert set(Payload.objects.values_list("outcome", flat=True)) == {"received"}

        # 2. Redis restarts (crash, failover, a new container without persistence).
        redis.restart()
        assert redis.client().llen(QUEUE) == 0

        # 3. Workers come back. Nothing but the database remembers the work.
        started = time.monotonic()
        env = worker_env(
            DATABASE_URL=worker_database_url(),
            CELERY_BROKER_URL=redis.url(0),
            ATLAS_BASE_URL=sim.v3_url,
            ATLAS_DOCSTREAM_URL=sim.v1_url,
        )
        celery_processes("beat", env)
        celery_processes("worker", env, "-c", "2")
        age_the_journal()
        wait_for(
            lambda: not Flow.objects.exclude(sync_state=SyncState.DONE).exists(),
            timeout=60,
            interval=0.3,
            what="every flow to complete",
        )
        recovered_in = time.monotonic() - started

        outcomes = dict(Payload.objects.filter(pk__in=deliveries).values_list("pk", "outcome"))
        assert set(outcomes.values()) == {"applied"}, outcomes
        for flow in Flow.objects.filter(pk__in=[f.pk for f in pushed]):
            assert flow.results_source == "callback_v3" and flow.documents.exists()
        for flow in Flow.objects.filter(pk__in=[f.pk for f in new]):
            assert flow.results_source == "poll_v3" and flow.documents.exists()
            assert len(sim.state.flows[flow.flow_uuid].files) == 1
        print(f"\nredis restart: {NEW_FLOWS} flows + {CALLBACKS} callbacks in {recovered_in:.1f} s")


def test_callbacks_arriving_while_redis_is_down_are_accepted_and_applied_later(
    client, celery_broker, celery_processes
):
    redis = celery_broker
    with start_simulator(processing_seconds=0.2, callbacks=False) as sim:
        env = worker_env(
            DATABASE_URL=worker_database_url(),
            CELERY_BROKER_URL=redis.url(0),
            ATLAS_BASE_URL=sim.v3_url,
            ATLAS_DOCSTREAM_URL=sim.v1_url,
        )
        celery_processes("beat", env)
        worker = celery_processes("worker", env, "-c", "2")
        pushed = pushed_flows("redis-down", 4)

        redis.kill()
        started = time.monotonic()
        deliveries = post_callbacks(client, pushed, sim)  # every one answered 202 (asserted)
        accept_seconds = (time.monotonic() - started) / len(pushed)
        assert set(Payload.objects.values_list("outcome", flat=True)) == {"received"}

        redis.start()
        age_the_journal()
        wait_for(
            lambda: set(Payload.objects.values_list("outcome", flat=True)) == {"applied"},
            timeout=60,
            interval=0.3,
            what="the stored callbacks to be applied after Redis came back",
        )
        assert worker.alive, "the worker reconnects by itself"
        assert all(
            f.sync_state == SyncState.DONE
            for f in Flow.objects.filter(pk__in=[p.pk for p in pushed])
        )
        assert Payload.objects.filter(pk__in=deliveries).count() == len(pushed)
        print(f"\nredis down: a callback was accepted in {accept_seconds:.2f} s without a broker")
