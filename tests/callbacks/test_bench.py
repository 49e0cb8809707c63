import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_the_benchmark_runs_and_loses_nothing():
    # Its own database (dropped and recreated by the script), so it never meets the test DB.
    result = subprocess.run(
        [sys.executable, "bench/callbacks_bench.py", "--small", "--db-name", "atlas_bench_smoke"],
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        capture_output=True,
        text=True,
        timeout=240,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"callbacks accepted\s+50 x 202", result.stdout), result.stdout
    assert "lost: 0" in result.stdout
    assert "accepted/s" in result.stdout
