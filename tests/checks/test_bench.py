import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_the_reuse_benchmark_runs_in_smoke_mode():
    server = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "reuse_bench.py"), "--small", "--repopulate",
         "--db-name", "atlas_bench_checks_smoke", "--database-url", server],
        capture_output=True, text=True, timeout=240, cwd=ROOT,
    )  # fmt: skip

    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "COPY checks_identifiersighting: 10,000 rows" in out
    assert "find_reuse (indexes)" in out and "reference (sequential scans)" in out
    assert "Bitmap Index Scan on sighting_kind_value_idx" in out
    # Shared handsets exist in the data, and the look-up finds them.
    indexed = next(line for line in out.splitlines() if line.startswith("find_reuse"))
    assert "(0 with reuse)" not in indexed
