"""Sync sweep: one beat sweep over 10k unfinished flows against the Atlas simulator, with
the Atlas requests it made, and ten worker processes renewing an expired token at once.

    .venv/bin/python bench/sync_bench.py               # 10k flows, tasks inline
    .venv/bin/python bench/sync_bench.py --small       # 100 flows: a smoke run
    .venv/bin/python bench/sync_bench.py --celery      # also with a real Celery worker

What it does, on loopback, in its own database `atlas_perf_sync` (dropped and recreated):
1. Starts the simulator in this process with processing_seconds so large that every flow
   stays IN_PROGRESS, and registers N flows in it (init + upload, straight on its state).
2. Stores the same N flows here as Atlas would have them after our upload (POLLING, with
   their upload), all due.
3. Runs `flows.tasks.sweep` once with tasks inline (CELERY_TASK_ALWAYS_EAGER, as without
   a broker): it claims every due flow and runs sync_flow for each (one status call).
   Reports the time, flows/s, Atlas requests per endpoint (the simulator's own counters),
   tokens issued, and database queries per flow; then a second sweep right after, which
   must find nothing due.
4. With --celery: the same sweep with a real worker (`celery worker -c 2`, Redis broker
   redis://127.0.0.1:6379/<--redis-db>), timed until every flow has been polled.
5. Tokens, with Django's cache on Redis (CACHE_URL=redis://127.0.0.1:6379/<--redis-db>,
   a private key prefix) so that processes share the token store (CacheTokenStore):
   ten processes, released together by a barrier, make one status call each
   (a) just after the cached token reached its refresh time (token_ttl 4 s), and
   (b) after the simulator revoked every token (each process gets a 401);
   each time exactly one new token must be requested.

Reference: the same number of status calls made straight with one requests.Session
(no database, no task machinery): what the simulator itself can answer.
Targets (issue 6): at most one status call per due flow; one token for the sweep (a token
lives an hour); ten processes at expiry fetch exactly one new token.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import perfkit

WORKERS = 10
KEY_PREFIX = "atlas_perf_sync"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--flows", type=int, default=10_000)
    parser.add_argument("--small", action="store_true", help="a smoke run: 100 flows")
    parser.add_argument("--celery", action="store_true", help="also sweep with a real worker")
    parser.add_argument("--redis-db", type=int, default=11, help="Redis database (cache+broker)")
    parser.add_argument("--database-url", default=os.getenv("DATABASE_URL", perfkit.DEFAULT_SERVER))
    parser.add_argument("--db-name", default="atlas_perf_sync")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    args = parser.parse_args(argv)
    if args.small:
        args.flows = 100
    return args


def register(sim, n: int) -> list[tuple[str, str, list[dict]]]:
    """N flows known to the simulator, uploaded and processing: (uuid, batch_id, files)."""
    out = []
    for i in range(n):
        app = f"SYNC-{i:06d}"
        flow_uuid = sim.state.init_flow({"product_type": "PROD_CDL", "application_id": app})[
            "flow_uuid"
        ]
        files = [{"file_url": f"https://files.example.com/{app}-invoice.jpg", "document_id": "1"}]
        batch_id = sim.state.upload({"flow_uuid": flow_uuid, "file_urls": list(files)})["batch_id"]
        out.append((flow_uuid, batch_id, files))
    return out


def store(flows) -> None:
    from django.db import connection
    from django.utils import timezone

    from atlas_review.flows.models import Flow, SyncState, Upload

    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE flows_flow, flows_upload RESTART IDENTITY CASCADE")
    now = timezone.now()
    rows = Flow.objects.bulk_create(
        [
            Flow(
                flow_uuid=flow_uuid, application_id=f"SYNC-{i:06d}", product_type="PROD_CDL",
                requested_files=files, sync_state=SyncState.POLLING, upload_status="SUCCESS",
                processing_status="IN_PROGRESS", master_status="IN_PROGRESS",
                processing_started_at=now, next_sync_at=now - timedelta(seconds=1 + i % 60),
            )
            for i, (flow_uuid, _b, files) in enumerate(flows)
        ],
        batch_size=2000,
    )  # fmt: skip
    Upload.objects.bulk_create(
        [
            Upload(batch_id=batch_id, api="v3", flow=row, files=files, sync_state="DONE")
            for row, (_u, batch_id, files) in zip(rows, flows, strict=True)
        ],
        batch_size=2000,
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE flows_flow")


def api_calls(before: dict, after: dict) -> dict[str, int]:
    keys = set(before["requests"]) | set(after["requests"])
    delta = {k: after["requests"].get(k, 0) - before["requests"].get(k, 0) for k in keys}
    return {
        k: v for k, v in sorted(delta.items()) if v and not k.split(" ", 1)[-1].startswith("/_sim")
    }


def sweep_inline(sim, n: int) -> dict:
    from django.conf import settings
    from django.db import connection

    from atlas_review.celery import app
    from atlas_review.flows import tasks
    from atlas_review.flows.models import Flow

    queries = 0

    def count(execute, sql, params, many, context):
        nonlocal queries
        queries += 1
        return execute(sql, params, many, context)

    app.conf.task_always_eager = True  # as without a broker: each task runs in the sweep
    before = sim.stats()
    with connection.execute_wrapper(count):
        started = time.perf_counter()
        summary = tasks.sweep()
        took = time.perf_counter() - started
    after = sim.stats()
    polled = Flow.objects.filter(last_synced_at__isnull=False).count()
    # The sweep claims each flow for one poll interval; a sweep that ran longer than that
    # (inline, every task in it) leaves the first flows due again, so only then is a
    # second sweep expected to find something.
    interval = settings.ATLAS_POLL_INTERVAL_SECONDS
    second = (
        tasks.sweep()
        if took < interval
        else f"skipped: the sweep took longer than the {interval} s poll interval"
    )
    return {
        "seconds": took, "summary": summary, "calls": api_calls(before, after),
        "tokens": after["tokens_issued"] - before["tokens_issued"], "queries": queries,
        "second": second, "polled": polled, "n": n,
    }  # fmt: skip


def reference(sim, flows) -> float:
    """The same status calls straight from one requests.Session: the simulator's own rate."""
    import requests

    session = requests.Session()
    token = session.post(
        sim.v3_url + "/authtoken",
        headers={"Client-Id": sim.knobs.client_id, "Client-Secret": sim.knobs.client_secret},
        timeout=10,
    ).json()["access_token"]
    started = time.perf_counter()
    for flow_uuid, _b, _f in flows:
        response = session.get(
            sim.v3_url + "/status", params={"flow_uuid": flow_uuid}, headers={"Token": token},
            timeout=10,
        )  # fmt: skip
        assert response.status_code == 200, response.text
    return time.perf_counter() - started


def sweep_celery(args, sim, env: dict[str, str], n: int) -> dict:
    """The sweep dispatching to Redis (timed alone: no worker yet, so the simulator in this
    process is idle), then `celery worker -c 2` draining it, timed until every flow has been
    polled."""
    from django.utils import timezone

    from atlas_review.celery import app
    from atlas_review.flows import tasks
    from atlas_review.flows.models import Flow

    Flow.objects.update(next_sync_at=timezone.now() - timedelta(seconds=1), last_synced_at=None)
    app.conf.task_always_eager = False
    app.control.purge()
    before = sim.stats()
    started = time.perf_counter()
    summary = tasks.sweep()
    dispatched = time.perf_counter() - started
    log = tempfile.NamedTemporaryFile("w+", prefix="perf-sync-worker-", suffix=".log")  # noqa: SIM115 (closed in the finally below)
    started = time.perf_counter()
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "atlas_review", "worker", "-c", "2",
         "--pool", "prefork", "--without-heartbeat", "--without-gossip", "--without-mingle",
         "-l", "WARNING", "-n", f"perf-sync-{os.getpid()}@%h"],
        cwd=perfkit.ROOT, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 600
        while Flow.objects.filter(last_synced_at__isnull=True).exists():
            if worker.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                raise SystemExit(f"the worker did not poll every flow:\n{log.read()[-3000:]}")
            time.sleep(0.2)
        took = time.perf_counter() - started
        after = sim.stats()
    finally:
        worker.terminate()
        worker.wait(30)
        log.close()
        app.control.purge()
    return {
        "seconds": took, "dispatch": dispatched, "summary": summary,
        "calls": api_calls(before, after),
        "tokens": after["tokens_issued"] - before["tokens_issued"], "n": n,
    }  # fmt: skip


def _token_worker(barrier, flow_uuid: str, results) -> None:
    """One worker process: wait for the others, then one status call through the client."""
    from atlas_review.atlas.client import AtlasClient

    client = AtlasClient.from_settings()
    barrier.wait(timeout=60)
    try:
        client.status(flow_uuid)
        results.put(("ok", dict(client.request_counts)))
    except Exception as exc:  # reported, not raised: the parent counts outcomes
        results.put(("error", type(exc).__name__))


def tokens_at_expiry(sim, flow_uuid: str) -> dict:
    """Ten processes at once, (a) at the token's refresh time, (b) after revocation."""
    from atlas_review.atlas.client import AtlasClient

    ctx = multiprocessing.get_context("fork")
    out = {}
    sim.knobs.update({"token_ttl": 4})
    from django.conf import settings

    from atlas_review.atlas.tokens import token_key

    key = token_key(
        f"{settings.ATLAS_BASE_URL}/authtoken",
        settings.ATLAS_CLIENT_ID,
        settings.ATLAS_CLIENT_SECRET,
    )
    AtlasClient.from_settings().token_store.cache.delete_many([key, f"{key}:lock"])
    for case in ("refresh time reached", "tokens revoked (401)"):
        AtlasClient.from_settings().status(flow_uuid)  # a cached token, valid for 4 s
        if case.startswith("refresh"):
            time.sleep(4 - 0.4 + 0.2)  # past the refresh margin (10% of 4 s)
        else:
            sim.expire_tokens()
        before = sim.stats()["tokens_issued"]
        barrier, results = ctx.Barrier(WORKERS), ctx.Queue()
        procs = [
            ctx.Process(target=_token_worker, args=(barrier, flow_uuid, results))
            for _ in range(WORKERS)
        ]
        for p in procs:
            p.start()
        outcomes = [results.get(timeout=120) for _ in procs]
        for p in procs:
            p.join(30)
        fetched = sum(o[1].get("v3 POST /authtoken", 0) for o in outcomes if o[0] == "ok")
        out[case] = {
            "issued": sim.stats()["tokens_issued"] - before,
            "fetched_by_workers": fetched,
            "ok": sum(1 for o in outcomes if o[0] == "ok"),
        }
    sim.knobs.update({"token_ttl": 3600})
    return out


def main(argv=None) -> None:
    args = parse_args(argv)
    from atlas_review.atlas.simulator import start_simulator

    sim = start_simulator(processing_seconds=10**7, callbacks=False)
    redis = f"redis://127.0.0.1:6379/{args.redis_db}"
    # The broker's queue is in the same Redis database: its keys have no prefix, so the
    # database must be this benchmark's own (--redis-db).
    env = {
        "ATLAS_BASE_URL": sim.v3_url,
        "ATLAS_DOCSTREAM_URL": sim.v1_url,
        "ATLAS_CLIENT_ID": sim.knobs.client_id,
        "ATLAS_CLIENT_SECRET": sim.knobs.client_secret,
        "CACHE_URL": redis,
        "ATLAS_POLL_INTERVAL_SECONDS": "7",
        # Only --celery sends tasks to Redis; the inline sweep switches eager on itself.
        "CELERY_BROKER_URL": redis if args.celery else "",
    }
    url = perfkit.ensure_database(args.database_url, args.db_name, fresh=True)
    # A private key prefix (bench/perf_settings.py), here and in the Celery worker: the
    # Redis database may be shared with other runs.
    env.update(
        DJANGO_SETTINGS_MODULE="perf_settings",
        PERF_CACHE_PREFIX=KEY_PREFIX,
        PYTHONPATH=os.pathsep.join([str(Path(__file__).resolve().parent), str(perfkit.ROOT)]),
    )
    perfkit.setup_django(url, **env)
    print(f"sync bench: {args.flows:,} flows, simulator {sim.url}; {perfkit.loadavg()}")

    try:
        t = time.perf_counter()
        flows = register(sim, args.flows)
        store(flows)
        print(f"registered and stored {args.flows:,} flows in {time.perf_counter() - t:.1f}s")

        ref = reference(sim, flows)
        inline = sweep_inline(sim, args.flows)
        n = args.flows
        print(
            f"\nsweep, tasks inline: {inline['summary']} in {inline['seconds']:.2f}s = "
            f"{n / inline['seconds']:.0f} flows/s; {inline['polled']:,} flows polled"
        )
        print(f"  Atlas requests: {inline['calls']}; tokens issued: {inline['tokens']}")
        print(f"  database queries: {inline['queries']:,} = {inline['queries'] / n:.1f} per flow")
        print(f"  a second sweep right after: {inline['second']}")
        print(f"reference: {n:,} status calls on one Session: {ref:.2f}s = {n / ref:.0f}/s")

        # Before the Celery run: forking is safest while this process has few threads.
        expiry = tokens_at_expiry(sim, flows[0][0])
        print(f"\n{WORKERS} processes at once, token store on Redis ({KEY_PREFIX}:*):")
        for case, r in expiry.items():
            print(f"  {case}: {r['ok']}/{WORKERS} calls ok, new tokens issued {r['issued']}")

        celery = None
        if args.celery:
            celery = sweep_celery(args, sim, perfkit.django_env(url, **env), n)
            print(
                f"\nsweep, celery worker -c 2 on Redis: the sweep dispatched {celery['summary']} "
                f"in {celery['dispatch']:.2f}s; a worker started then polled them all in "
                f"{celery['seconds']:.2f}s (start-up included) = {n / celery['seconds']:.0f} flows/s"
            )
            print(f"  Atlas requests: {celery['calls']}; tokens issued: {celery['tokens']}")

        fig = perfkit.Figures(f"sync figures ({n:,} unfinished flows)")
        status = inline["calls"].get("GET /v3/verification/status", 0)
        fig.add(
            "one sweep, inline: seconds", f"{inline['seconds']:.2f}",
            f"bare status calls {ref:.2f}", "-", None,
        )  # fmt: skip
        fig.add("  flows/s", f"{n / inline['seconds']:.0f}", f"{n / ref:.0f}/s", "-", None)
        fig.add(
            "  status calls per due flow", f"{status / n:.2f}", f"{status:,} for {n:,}",
            "<= 1", status <= n,
        )  # fmt: skip
        fig.add(
            "  flows polled by one sweep", f"{inline['polled']:,}", f"{n:,} due", "all",
            inline["polled"] == n,
        )  # fmt: skip
        fig.add(
            "  tokens issued", str(inline["tokens"]), "1 per hour", "<= 1", inline["tokens"] <= 1
        )
        fig.add("  database queries per flow", f"{inline['queries'] / n:.1f}", "-", "-", None)
        if celery:
            cs = celery["calls"].get("GET /v3/verification/status", 0)
            fig.add(
                "the sweep itself (dispatch to Redis): seconds", f"{celery['dispatch']:.2f}",
                f"{1000 * celery['dispatch'] / n:.2f} ms per flow", "-", None,
            )  # fmt: skip
            fig.add(
                "celery worker -c 2 polling them all: seconds", f"{celery['seconds']:.2f}",
                f"{n / celery['seconds']:.0f} flows/s", "-", None,
            )  # fmt: skip
            fig.add("  status calls per due flow", f"{cs / n:.2f}", f"{cs:,}", "<= 1", cs <= n)
            fig.add("  tokens issued", str(celery["tokens"]), "1 per hour", "<= 1", celery["tokens"] <= 1)  # fmt: skip
        for case, r in expiry.items():
            fig.add(
                f"{WORKERS} processes, {case}: new tokens", str(r["issued"]),
                f"{r['ok']}/{WORKERS} calls ok", "exactly 1",
                r["issued"] == 1 and r["ok"] == WORKERS,
            )  # fmt: skip
        fig.print()
    finally:
        sim.stop()
        if not args.keep:
            from django.db import connections

            connections.close_all()
            perfkit.drop_database(args.database_url, args.db_name)


if __name__ == "__main__":
    main()
