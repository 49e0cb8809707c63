import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_the_apply_benchmark_runs_in_smoke_mode():
    server = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "apply_bench.py"), "--small",
         "--db-name", "atlas_bench_apply_smoke", "--database-url", server],
        capture_output=True, text=True, timeout=240, cwd=ROOT,
    )  # fmt: skip

    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "first apply: 20 payloads" in out and "'applied': 20" in out
    assert "in receiver review.flag_first" in out and "in receiver checks.on_results_created" in out
    assert "'duplicate': 20" in out and "writes on re-apply: 0" in out
