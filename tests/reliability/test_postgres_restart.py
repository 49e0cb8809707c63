"""PostgreSQL restarted (a crash: `pg_ctl stop -m immediate`, then start) while callbacks
arrive and while the beat's sweeps poll flows: every delivery is either stored (2xx, and a
journal row with exactly the bytes sent) or refused with 5xx so Atlas retries; never
acknowledged and lost. Afterwards every flow completes.

Everything runs against a private PostgreSQL cluster on its own port (the shared one is never
touched): gunicorn serving the app, a Celery worker and beat, a private Redis; this process
plays Atlas (the simulator for the poll path, threads posting callbacks for the push path)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter

import pytest
import requests

from atlas_review.atlas.simulator import generate_flow_result, start_simulator

from .conftest import BIN, ROOT, free_port, tail, wait_for, worker_env

pytestmark = pytest.mark.slow

PUSHED, POLLED, DELIVERIES, SENDERS = 10, 8, 240, 4
CLIENT_ID, CLIENT_SECRET = "atlas-callback-test", "callback-secret-for-tests-only"

SEED = """
from datetime import timedelta
from django.utils import timezone
from atlas_review.flows.models import Flow
for uuid, app in {pushed!r}:
    Flow.objects.create(flow_uuid=uuid, application_id=app, product_type="PROD_CDL",
                        sync_state="POLLING", next_sync_at=timezone.now() + timedelta(hours=1))
for app, url in {polled!r}:
    Flow.objects.create(application_id=app, product_type="PROD_CDL", next_sync_at=timezone.now(),
                        requested_files=[{{"file_url": url, "document_id": "1"}}])
"""


def sql(url: str, query: str, *params):
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(query, params).fetchall()


def manage(env: dict, *args: str) -> None:
    result = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env,
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.fixture
def gunicorn(tmp_path):
    procs = []

    def start(env: dict) -> str:
        port = free_port()
        log = tmp_path / "gunicorn.log"
        with log.open("ab") as out:
            proc = subprocess.Popen(
                [
                    str(BIN / "gunicorn"), "atlas_review.wsgi", "-b", f"127.0.0.1:{port}",
                    "-w", "2", "--threads", "4", "--timeout", "30",
                ],
                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        procs.append(proc)
        url = f"http://127.0.0.1:{port}"

        def up():
            if proc.poll() is not None:
                raise AssertionError(f"gunicorn exited:\n{tail(log)}")
            try:
                return requests.get(url + "/accounts/login/", timeout=2).status_code == 200
            except requests.RequestException:
                return False

        wait_for(up, 30, 0.2, "gunicorn to serve")
        return url

    if not (BIN / "gunicorn").exists():
        pytest.skip("gunicorn is not installed")
    yield start
    for proc in procs:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # gunicorn's workers too
        proc.wait(10)


def test_postgres_restarts_lose_no_delivery_and_no_flow(
    private_postgres, redis_server, celery_processes, gunicorn
):
    pg = private_postgres
    db = pg.create_database("atlas_restart")
    with start_simulator(processing_seconds=3, callbacks=False) as sim:
        env = worker_env(
            DATABASE_URL=db,
            CELERY_BROKER_URL=redis_server.url(0),
            ATLAS_BASE_URL=sim.v3_url,
            ATLAS_DOCSTREAM_URL=sim.v1_url,
            ATLAS_CALLBACK_CLIENT_ID=CLIENT_ID,
            ATLAS_CALLBACK_CLIENT_SECRET=CLIENT_SECRET,
            LOG_LEVEL="WARNING",
        )
        manage(env, "migrate", "--noinput", "-v0")
        pushed = [(f"pg-push-{i}", f"PG-PUSH-{i}") for i in range(PUSHED)]
        polled = [(f"PG-POLL-{i}", sim.file_url(f"PG-POLL-{i}-invoice.svg")) for i in range(POLLED)]
        manage(env, "shell", "-c", SEED.format(pushed=pushed, polled=polled))

        base = gunicorn(env)
        celery_processes("beat", env)
        worker = celery_processes("worker", env, "-c", "2")

        # What Atlas will send: each pushed flow's result, many times over (its retries);
        # an ignored top-level key makes every body distinct, so each is traceable.
        results = {
            uuid: generate_flow_result(
                42,
                uuid,
                [{"file_url": "https://files.example/x.jpg", "document_id": "1"}],
                application_id=app,
            )
            for uuid, app in pushed
        }
        bodies = [
            json.dumps({**results[pushed[k % PUSHED][0]], "delivery": k}).encode()
            for k in range(DELIVERIES)
        ]
        token = requests.post(
            base + "/atlas/auth", headers={"Client-Id": CLIENT_ID, "Client-Secret": CLIENT_SECRET}
        ).json()["access_token"]
        wait_for(
            lambda: (
                sql(db, "select count(*) from flows_flow where sync_state = 'POLLING'")[0][0]
                == PUSHED + POLLED
            ),
            timeout=30,
            what="the polled flows to be started at Atlas",
        )

        outcomes: list[tuple[int, int | str, int | None]] = []
        next_index = iter(range(DELIVERIES))
        lock = threading.Lock()

        def send():
            session = requests.Session()
            while True:
                with lock:
                    k = next(next_index, None)
                if k is None:
                    return
                try:
                    r = session.post(
                        base + "/atlas/callback", data=bodies[k], timeout=15,
                        headers={"Token": token, "Content-Type": "application/json"},
                    )  # fmt: skip
                    delivery = r.json().get("delivery") if r.status_code < 300 else None
                    outcomes.append((k, r.status_code, delivery))
                except requests.RequestException as exc:
                    outcomes.append((k, type(exc).__name__, None))
                time.sleep(0.04)

        senders = [threading.Thread(target=send) for _ in range(SENDERS)]
        for t in senders:
            t.start()
        wait_for(lambda: len(outcomes) >= DELIVERIES // 3, 30, 0.01, "a third of the deliveries")
        down_at = time.monotonic()
        pg.stop("immediate")  # a crash: every connection is cut mid-whatever
        time.sleep(1.5)
        pg.start()
        outage = time.monotonic() - down_at
        for t in senders:
            t.join(60)

        statuses = Counter(status for _k, status, _d in outcomes)
        acked = {k: d for k, status, d in outcomes if isinstance(status, int) and status < 300}
        refused = [k for k, status, _d in outcomes if k not in acked]
        assert len(outcomes) == DELIVERIES
        assert refused, f"the restart hit no delivery: {statuses}"
        assert all(s == 202 or s == 503 for s in statuses), statuses  # no 4xx, no 500

        # Every acknowledged delivery is in the journal, byte for byte.
        stored = dict(sql(db, "select id, sha256 from flows_payload"))
        for k, delivery in acked.items():
            assert stored.get(delivery) == hashlib.sha256(bodies[k]).hexdigest(), k

        # Atlas retries what was refused; the poll path goes on by itself.
        for k in refused:
            response = requests.post(
                base + "/atlas/callback", data=bodies[k], timeout=15,
                headers={"Token": token, "Content-Type": "application/json"},
            )  # fmt: skip
            assert response.status_code == 202, response.content
        # Applies that failed while the database was down stay `received`: the sweeper
        # re-applies them after a minute; let that minute pass.
        sql(
            db,
            "update flows_payload set received_at = now() - interval '2 minutes' "
            "where outcome = 'received' returning id",
        )

        def all_done():
            rows = sql(db, "select sync_state, count(*) from flows_flow group by sync_state")
            return dict(rows) == {"DONE": PUSHED + POLLED}

        wait_for(all_done, 60, 0.5, "every flow to complete after the restart")
        wait_for(
            lambda: not sql(db, "select 1 from flows_payload where outcome = 'received'"),
            30,
            0.5,
            "every stored delivery to be applied",
        )
        assert worker.alive
        # Sweeps ran on through the restart. Whether one was mid-query at the instant of the
        # crash is timing (it usually is, and then fails on the cut connection); what must
        # hold either way is that later sweeps succeed, which the completed flows above prove
        # end to end and the worker's log shows directly.
        log = worker.log.read_text()
        assert any("tasks.sweep[" in line and "succeeded" in line for line in log.splitlines())

        journal = Counter(
            dict(sql(db, "select outcome, count(*) from flows_payload group by outcome"))
        )
        assert set(journal) <= {"applied", "duplicate"}, journal
        per_flow = dict(
            sql(
                db,
                "select f.flow_uuid, count(d.id) from flows_flow f "
                "join flows_document d on d.flow_id = f.id group by f.flow_uuid",
            )
        )
        for uuid, _app in pushed:
            assert per_flow[uuid] == len(results[uuid]["ocr_data"]), uuid
        applied = dict(
            sql(
                db,
                "select flow_id, count(*) from flows_payload where outcome = 'applied' "
                "group by flow_id",
            )
        )
        assert sorted(applied.values()) == [1] * (PUSHED + POLLED), "one applied per flow"
        for (uuid,) in sql(
            db, "select flow_uuid from flows_flow where application_id like 'PG-POLL-%%'"
        ):
            assert len(sim.state.flows[uuid].files) == 1
        print(
            f"\npostgres restart: outage {outage:.1f} s; deliveries {dict(statuses)}; "
            f"journal {dict(journal)}; {len(refused)} refused and retried"
        )
