"""Accepted callbacks per second on gunicorn + PostgreSQL, with a Python load generator.

    .venv/bin/python bench/callbacks_bench.py            # 2000 callbacks, inline apply
    .venv/bin/python bench/callbacks_bench.py --small    # 50 callbacks: a smoke run
    .venv/bin/python bench/callbacks_bench.py --broker redis://127.0.0.1:6379/15

What it does, all on loopback:
1. (Re)creates a dedicated database (default `atlas_bench`) on the PostgreSQL server of
   DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres) and migrates it.
2. Creates N flows, each with a realistic CallbackData body from the simulator's generator
   (6 documents, cross-checks; ~5 KB).
3. Starts gunicorn (2 sync workers, atlas_review.wsgi).
4. Gets a token at /atlas/auth, then POSTs one callback per flow from a thread pool
   (a requests.Session per thread) and times every request.
5. Reference: the same requests (same body, same pool) to a URL that Django answers 404
   without touching the database: gunicorn + middleware + body transfer, without our view.
6. Counts journal rows and outcomes: every 202 must be one stored payload, none lost.

Without --broker (the quick-start configuration) each request also applies the payload
before answering, so accepted/s is the full ingest rate. With --broker a request only
verifies, stores and queues; a Celery worker (as many processes as gunicorn workers) is
started after the load and the time it takes to apply everything is reported separately.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))

import perfkit

ROOT = perfkit.ROOT
PYTHON = sys.executable
CLIENT_ID = "atlas-bench"
CLIENT_SECRET = secrets.token_urlsafe(24)
WARM_UP = 20  # callbacks sent (and counted in the journal check) before measuring
KINDS = ("invoice", "delivery_order", "aadhaar", "pan", "imei", "open_box")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--callbacks", type=int, default=2000)
    parser.add_argument("--small", action="store_true", help="a smoke run: 50 callbacks")
    parser.add_argument(
        "-c", "--concurrency", type=int, default=4, help="client connections (threads)"
    )
    parser.add_argument("-w", "--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument(
        "--threads", type=int, default=1,
        help="threads per gunicorn worker (1: sync workers, as the Dockerfile runs them; "
        "more: the gthread worker)",
    )  # fmt: skip
    parser.add_argument(
        "--database-url",
        default=os.getenv("DATABASE_URL", perfkit.DEFAULT_SERVER),
        help="any database on the target server; only its server is used",
    )
    parser.add_argument("--db-name", default="atlas_bench", help="dedicated, dropped first")
    parser.add_argument("--broker", default="", help="Redis URL: queue applies to a worker")
    parser.add_argument(
        "--drain-timeout", type=float, default=900, help="seconds to wait for the worker"
    )
    parser.add_argument(
        "--client", choices=("auto", "wrk", "python"), default="auto",
        help="load generator: wrk (C, if installed: apt-get install wrk) leaves the two cores "
        "to the server; python (threads + requests) posts each body exactly once",
    )  # fmt: skip
    parser.add_argument("--seconds", type=float, default=15, help="wrk: seconds per run")
    args = parser.parse_args(argv)
    if args.small:
        args.callbacks = 50
        args.concurrency = min(args.concurrency, 4)
        args.client = "python" if args.client == "auto" else args.client
    if args.client == "auto":
        args.client = "wrk" if shutil.which("wrk") else "python"
    return args


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_env(database_url: str, broker: str) -> dict[str, str]:
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "atlas_review.settings",
        "DATABASE_URL": database_url,
        "SECRET_KEY": "bench-only-" + secrets.token_urlsafe(32),
        "DEBUG": "False",
        "TESTING": "True",  # plain static storage: no collectstatic needed
        "SECURE_SSL_REDIRECT": "False",
        "SECURE_COOKIES": "False",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "ATLAS_CALLBACK_CLIENT_ID": CLIENT_ID,
        "ATLAS_CALLBACK_CLIENT_SECRET": CLIENT_SECRET,
        "CELERY_BROKER_URL": broker,
        "CACHE_URL": "",
        # A log line per request (INFO apply, WARNING 404) would measure the terminal.
        "LOG_LEVEL": "ERROR",
        "PYTHONWARNINGS": "ignore::UserWarning",
    }


def setup_django(env: dict[str, str]) -> None:
    os.environ.update(env)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def make_flows(n: int) -> list[bytes]:
    """N flows in the database and, for each, the callback body Atlas would post."""
    from atlas_review.atlas.simulator import generate_flow_result
    from atlas_review.flows.models import Flow, SyncState, Upload

    bodies, flows, uploads = [], [], []
    for i in range(n):
        flow_uuid = f"bench-{i:06d}"
        files = [
            {"file_url": f"https://files.example.com/BENCH-{i}-{kind}.jpg", "document_id": str(j)}
            for j, kind in enumerate(KINDS)
        ]
        result = generate_flow_result(7, flow_uuid, files, application_id=f"BENCH-{i}")
        bodies.append(json.dumps(result).encode())
        flows.append(
            Flow(
                flow_uuid=flow_uuid,
                application_id=f"BENCH-{i}",
                product_type="PROD_CDL",
                sync_state=SyncState.POLLING,
                requested_files=files,
            )
        )
    Flow.objects.bulk_create(flows, batch_size=1000)
    for flow in Flow.objects.filter(flow_uuid__startswith="bench-"):
        uploads.append(
            Upload(batch_id=f"B-{flow.flow_uuid}", api="v3", flow=flow, files=flow.requested_files)
        )
    Upload.objects.bulk_create(uploads, batch_size=1000)
    return bodies


def wait_until_up(url: str, proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"gunicorn exited with {proc.returncode}")
        try:
            if requests.get(url + "/atlas/auth", timeout=5).status_code == 405:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise SystemExit("gunicorn did not come up")


def wait_for_worker(proc: subprocess.Popen, timeout: float = 30) -> None:
    from atlas_review.celery import app

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"celery worker exited with {proc.returncode}")
        if app.control.ping(timeout=0.5):
            return
    raise SystemExit("celery worker did not come up")


def fire(url: str, bodies: list[bytes], headers: dict, concurrency: int) -> dict:
    """POST every body once from `concurrency` threads; latencies in seconds."""
    local = threading.local()

    def session() -> requests.Session:
        if not hasattr(local, "session"):
            local.session = requests.Session()
        return local.session

    def one(body: bytes) -> tuple[int, float]:
        start = time.perf_counter()
        try:
            status = session().post(url, data=body, headers=headers, timeout=60).status_code
        except requests.RequestException:
            status = 0
        return status, time.perf_counter() - start

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        results = list(pool.map(one, bodies))
    wall = time.perf_counter() - started
    latencies = sorted(lat for _status, lat in results)
    statuses: dict[int, int] = {}
    for status, _lat in results:
        statuses[status] = statuses.get(status, 0) + 1
    return {"wall": wall, "latencies": latencies, "statuses": statuses}


_WRK_SCRIPT = """
local bodies, n, i = {}, 0, 0
local headers = {["Token"] = "%(token)s", ["Content-Type"] = "application/json"}
function init(args)
  for line in io.lines(args[1]) do n = n + 1; bodies[n] = line end
  i = tonumber(args[2])
end
function request()
  i = i + 1
  return wrk.format("POST", nil, headers, bodies[(i %% n) + 1])
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "RESULT %%d %%d %%d %%d %%d %%d %%d\\n", summary.requests, summary.duration,
    e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99)))
end
"""


def fire_wrk(url: str, bodies: list[bytes], token: str, connections: int, seconds: float) -> dict:
    """wrk posting the bodies in turn (each thread from its own offset) for `seconds`:
    the C load generator takes a fraction of the CPU the Python one does, so on a 2-core
    machine it measures the server, not the client. Latencies are wrk's percentiles."""
    with tempfile.TemporaryDirectory() as tmp:
        body_file, script = Path(tmp) / "bodies.jsonl", Path(tmp) / "post.lua"
        body_file.write_bytes(b"\n".join(bodies) + b"\n")  # one JSON document per line
        script.write_text(_WRK_SCRIPT % {"token": token})
        out = subprocess.run(
            ["wrk", "-t", "1", "-c", str(connections), "-d", f"{seconds:g}s", "-s", str(script),
             url, "--", str(body_file), "0"],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
    line = next(x for x in out.splitlines() if x.startswith("RESULT "))
    requests_, micros, status_errors, socket_errors, p50, p95, p99 = map(int, line.split()[1:])
    ok = requests_ - status_errors - socket_errors
    return {
        "wall": micros / 1e6,
        "statuses": {"2xx": ok, "other status": status_errors, "socket error": socket_errors},
        "percentiles": (p50 / 1e6, p95 / 1e6, p99 / 1e6),
    }


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return (
        statistics.quantiles(values, n=100, method="inclusive")[q - 1]
        if len(values) > 1
        else values[0]
    )


def report(label: str, run: dict, ok_status: int) -> float:
    # wrk counts responses, not statuses: a 404 is one of its "other status" answers.
    key = ok_status if "latencies" in run else ("2xx" if ok_status < 300 else "other status")
    ok = run["statuses"].get(key, 0)
    rate = ok / run["wall"] if run["wall"] else 0.0
    if "latencies" in run:
        lat = run["latencies"]
        p50, p95, p99 = pct(lat, 50), pct(lat, 95), pct(lat, 99)
    else:
        p50, p95, p99 = run["percentiles"]
    print(
        f"{label:<28} {ok:>6} x {ok_status} in {run['wall']:6.2f} s = {rate:8.1f}/s"
        f"   p50 {p50 * 1000:6.1f} ms  p95 {p95 * 1000:6.1f} ms"
        f"  p99 {p99 * 1000:6.1f} ms   statuses {dict(sorted(run['statuses'].items(), key=str))}"
    )
    return rate


def journal_counts() -> dict[str, int]:
    from django.db import connections
    from django.db.models import Count

    from atlas_review.flows.models import Payload

    connections.close_all()  # a fresh read after the server processes wrote
    return dict(
        Payload.objects.filter(source="callback_v3")
        .values_list("outcome")
        .annotate(n=Count("id"))
        .order_by()
    )


def stop(proc: subprocess.Popen | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def main(argv=None) -> int:
    args = parse_args(argv)
    database_url = perfkit.with_database(args.database_url, args.db_name)
    env = server_env(database_url, args.broker)
    mode = f"broker {args.broker}" if args.broker else "no broker: applied inline"

    print(f"database {args.db_name}: recreating and migrating", flush=True)
    perfkit.ensure_database(args.database_url, args.db_name, fresh=True)
    subprocess.run(
        [PYTHON, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True
    )
    setup_django(env)
    bodies = make_flows(args.callbacks + WARM_UP)
    warm_up, bodies = bodies[:WARM_UP], bodies[WARM_UP:]
    size = statistics.mean(len(b) for b in bodies)
    print(
        f"{args.callbacks} flows (+{WARM_UP} for warm-up) created; "
        f"callback body {size / 1024:.1f} KB on average"
    )

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    gunicorn = worker = None
    # The servers' own output goes to a file, so the figures are readable.
    log_path = Path(tempfile.gettempdir()) / f"callbacks_bench_{os.getpid()}.log"
    server_log = log_path.open("wb")
    try:
        gunicorn = subprocess.Popen(
            [PYTHON, "-m", "gunicorn", "atlas_review.wsgi", "-w", str(args.workers),
             "--threads", str(args.threads),
             "-b", f"127.0.0.1:{port}", "--log-level", "warning"],
            cwd=ROOT, env=env, stdout=server_log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        if args.broker:
            import redis

            # A dedicated, emptied queue: no task left over from an earlier run.
            redis.Redis.from_url(args.broker).flushdb()
        wait_until_up(url, gunicorn)
        auth = requests.post(
            url + "/atlas/auth",
            headers={"Client-Id": CLIENT_ID, "Client-Secret": CLIENT_SECRET},
            timeout=10,
        )
        auth.raise_for_status()
        headers = {"Token": auth.json()["access_token"], "Content-Type": "application/json"}

        client = (
            f"wrk, {args.concurrency} connections, {args.seconds:g} s per run"
            if args.client == "wrk"
            else f"{args.concurrency} Python client threads"
        )
        kind = f"gthread workers x {args.threads} threads" if args.threads > 1 else "sync workers"
        print(f"gunicorn {args.workers} {kind} on {url}; {client}; {mode}")
        # Warm-up, not measured: database and broker connections, imports, caches.
        fire(url + "/atlas/bench-reference-404", warm_up, headers, args.concurrency)
        warmed = fire(url + "/atlas/callback", warm_up, headers, args.concurrency)
        if args.client == "wrk":
            token = headers["Token"]
            reference = fire_wrk(
                url + "/atlas/bench-reference-404", bodies, token, args.concurrency, args.seconds
            )
            run = fire_wrk(url + "/atlas/callback", bodies, token, args.concurrency, args.seconds)
        else:
            reference = fire(url + "/atlas/bench-reference-404", bodies, headers, args.concurrency)
            run = fire(url + "/atlas/callback", bodies, headers, args.concurrency)

        print()
        ref_rate = report("reference (404, no DB)", reference, 404)
        rate = report("callbacks accepted", run, 202)

        counts = journal_counts()
        if args.client == "wrk" and not args.broker:
            # wrk stops with requests in flight: the server finishes applying those.
            deadline = time.monotonic() + 10
            while counts.get("received") and time.monotonic() < deadline:
                time.sleep(0.2)
                counts = journal_counts()
        if args.broker:
            # The worker starts only now, so acceptance above was measured without it
            # competing for the CPUs; this measures the apply rate on its own.
            worker = subprocess.Popen(
                [PYTHON, "-m", "celery", "-A", "atlas_review", "worker", "-l", "warning",
                 "--concurrency", str(args.workers), "--without-gossip", "--without-mingle"],
                cwd=ROOT, env=env, stdout=server_log, stderr=subprocess.STDOUT,
            )  # fmt: skip
            wait_for_worker(worker)
            drain_start = time.monotonic()
            while counts.get("received") and time.monotonic() < drain_start + args.drain_timeout:
                time.sleep(0.2)
                counts = journal_counts()
            drain = time.monotonic() - drain_start
            # A body wrk sent again is a duplicate delivery: settled, nothing to write.
            settled = counts.get("applied", 0) + counts.get("duplicate", 0)
            print(
                f"{'applied by the worker':<28} {settled:>6} x task in {drain:6.2f} s = "
                f"{settled / drain:8.1f}/s   ({args.workers} worker processes; "
                f"{counts.get('duplicate', 0)} of them duplicates)"
            )
        accepted = run["statuses"].get(202, run["statuses"].get("2xx", 0))
        accepted += warmed["statuses"].get(202, 0)
        stored = sum(counts.values())
        lost = accepted - stored
        print(
            f"\njournal: {stored} callback rows {dict(sorted(counts.items()))}; "
            f"accepted {accepted} (incl. {WARM_UP} warm-up); lost: {max(lost, 0)}"
        )
        print(f"accepted/s {rate:.1f} (reference {ref_rate:.1f}/s, {rate / ref_rate:.0%} of it)")
        if args.client == "wrk":
            # wrk cycles through the bodies (a body sent again is a duplicate delivery) and
            # stops mid-request: a request it did not wait for may be stored too.
            ok = lost <= 0 and counts.get("applied", 0) + counts.get("duplicate", 0) == stored
        else:
            ok = (
                lost == 0
                and accepted == args.callbacks + WARM_UP
                and counts.get("applied", 0) == accepted
            )
        if not ok:
            print("FAILED: some callbacks were not accepted, stored or applied", file=sys.stderr)
        return 0 if ok else 1
    finally:
        stop(worker)
        stop(gunicorn)
        server_log.close()
        print(f"server output: {log_path}")


if __name__ == "__main__":
    sys.exit(main())
