"""Smoke runs of the issue-6 benchmarks (bench/ingest_bench.py, queue_bench.py, sync_bench.py)
on small sizes, so the scripts never rot. Figures are printed, not asserted: a noisy shared
machine must not fail the suite. What is asserted is what holds at any speed: every run
finishes, re-applying writes nothing, no request counts a whole table, the sweep makes one
status call per flow, and ten processes at token expiry fetch one token."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVER = os.getenv("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")


# Names of this run's own: two runs of the suite at once must not drop each other's data.
SUFFIX = f"{os.getpid()}"
DATABASES = [
    f"atlas_perf_smoke_ingest_{SUFFIX}",
    f"atlas_perf_smoke_queue_{SUFFIX}",
    f"atlas_perf_smoke_queue_{SUFFIX}_small",
    f"atlas_perf_smoke_sync_{SUFFIX}",
]


def drop_leftovers() -> None:
    """The scripts drop their databases when they finish; this covers a run that failed."""
    import psycopg

    server = SERVER.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(server, autocommit=True) as conn:
        for name in DATABASES:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def start(script: str, *args: str) -> subprocess.Popen:
    # Each script works in its own throwaway atlas_perf_smoke_* database (and drops it).
    return subprocess.Popen(
        [sys.executable, f"bench/{script}", "--small", "--database-url", SERVER, *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish(proc: subprocess.Popen) -> str:
    out, _ = proc.communicate(timeout=240)
    assert proc.returncode == 0, out[-4000:]
    return out


def measured(out: str, name: str) -> str:
    """The measured column of one row of the closing table."""
    match = re.search(rf"^{re.escape(name)}\s+(\S+)", out, re.MULTILINE)
    assert match, f"no figure {name!r} in:\n{out[-3000:]}"
    return match.group(1)


@pytest.mark.slow
def test_the_performance_benchmarks_run_small():
    # The three at once: each is mostly waiting on PostgreSQL, and together they stay
    # well under a minute.
    ingest = start("ingest_bench.py", "--db-name", DATABASES[0])
    queue = start("queue_bench.py", "--db-name", DATABASES[1], "--repopulate", "--drop")
    sync = start("sync_bench.py", "--db-name", DATABASES[3], "--redis-db", "11")
    try:
        ingest_out, queue_out, sync_out = finish(ingest), finish(queue), finish(sync)
    finally:
        for proc in (ingest, queue, sync):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        drop_leftovers()

    assert re.search(r"reference: COPY, 10 flows per transaction\s+30 ", ingest_out), ingest_out
    assert "apply_many, 10 flows per transaction" in ingest_out
    assert measured(ingest_out, "re-apply: rows/tuples written") == "none"
    assert "{'duplicate': 30}" in ingest_out
    assert measured(ingest_out, "re-diff (hash cleared): rows written besides flows") == "none"
    assert "reference: COPY of every row the sweep writes" in ingest_out

    assert measured(queue_out, "unbounded COUNT(*) per request") == "0"
    assert measured(queue_out, "queries per page, large vs small set") == "same"
    assert "Index Scan using reviewitem_open_queue_idx" in queue_out
    assert "flow review page (claims it)" in queue_out

    assert "{'GET /v3/verification/status': 100, 'POST /v3/verification/authtoken': 1}" in sync_out
    for case in ("refresh time reached", "tokens revoked (401)"):
        assert re.search(rf"{re.escape(case)}: 10/10 calls ok, new tokens issued 1\b", sync_out)
