"""A smoke run of bench/export_bench.py, so the benchmark never rots (figures are not
asserted: a noisy machine must not fail the suite)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_the_export_bench_runs_small():
    server = os.getenv("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
    result = subprocess.run(
        [sys.executable, "bench/export_bench.py", "--small", "--json",
         "--database-url", server, "--db-name", "atlas_bench_export_smoke"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    runs = json.loads(result.stdout.strip().splitlines()[-1])
    assert [(r["mode"], r["rows"]) for r in runs] == [
        ("command", 2000), ("job", 2000), ("copy", 2000),
    ]  # fmt: skip
    assert all(r["seconds"] > 0 and r["peak_rss_mb"] > 0 for r in runs)
