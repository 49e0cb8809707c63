"""Helpers shared by the benchmarks in bench/: database set-up, percentiles, load average,
COPY loading, timing of requests, and the closing table of figures.

Each benchmark works in its own database on the PostgreSQL server of DATABASE_URL, which it
may create, drop and recreate: `atlas_perf_*` (ingest, queue, sync), `atlas_bench*`
(callbacks, export, reuse, apply), `atlas_ovw_bench*` (overview) and `review_bench*`
(review). The name check below refuses any other name (`postgres`, `test`, ...), so a typo
cannot drop someone's data.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
PREFIX = "atlas_perf_"
# The names the benchmarks really use (see the docstring); nothing else is touched.
PREFIXES = (PREFIX, "atlas_bench", "atlas_ovw_bench", "review_bench")
DEFAULT_SERVER = "postgres://postgres@127.0.0.1:5432/postgres"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/" + name))


def _check_name(name: str) -> None:
    if not name.startswith(PREFIXES) or not name.replace("_", "").isalnum():
        allowed = ", ".join(f"{p}*" for p in PREFIXES)
        raise SystemExit(f"refusing database {name!r}: benchmark databases are {allowed}")


def ensure_database(
    server_url: str, name: str, *, fresh: bool, announce: Callable[[str], object] | None = None
) -> str:
    """The URL of database `name`, created if missing (dropped first when fresh); `announce`,
    if given, is called with "created database NAME" when it was created."""
    import psycopg

    _check_name(name)
    with psycopg.connect(with_database(server_url, "postgres"), autocommit=True) as conn:
        if fresh:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')
            if announce is not None:
                announce(f"created database {name}")
    return with_database(server_url, name)


def drop_database(server_url: str, name: str) -> None:
    import psycopg

    _check_name(name)
    with psycopg.connect(with_database(server_url, "postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def django_env(database_url: str, **extra: str) -> dict[str, str]:
    return {
        "DJANGO_SETTINGS_MODULE": "atlas_review.settings",
        "DATABASE_URL": database_url,
        "SECRET_KEY": "bench-only-secret-key-0123456789-abcdefghij",
        "DEBUG": "False",
        "TESTING": "True",  # plain static storage: no collectstatic needed
        "SECURE_SSL_REDIRECT": "False",
        "SECURE_COOKIES": "False",
        "ALLOWED_HOSTS": "testserver,localhost,127.0.0.1",
        "AXES_ENABLED": "False",
        "CELERY_BROKER_URL": "",  # tasks inline unless a benchmark says otherwise
        "CACHE_URL": "",
        "LOG_LEVEL": "ERROR",
        **extra,
    }


def setup_django(database_url: str, *, migrate: bool = True, **extra: str) -> None:
    os.environ.update(django_env(database_url, **extra))
    import django

    django.setup()
    if migrate:
        from django.core.management import call_command

        call_command("migrate", verbosity=0)


def loadavg() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} cores"


def pct(samples: list[float], p: float) -> float:
    """The p-th percentile (0..100), nearest rank on the sorted samples."""
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))]


def timed(fn, runs: int, *, expect_status: int | None = None) -> tuple[float, float, int]:
    """(p50 ms, p95 ms, queries) of fn() over runs calls; the queries are counted on one
    untimed call first, whose response must have expect_status when that is given."""
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections, connection, reset_queries
    from django.test.utils import CaptureQueriesContext

    # As in tests: keep the query log and the connection across requests while counting.
    request_started.disconnect(reset_queries)
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)

    with CaptureQueriesContext(connection) as ctx:
        response = fn()
    if expect_status is not None:
        assert response.status_code == expect_status, response.status_code
    samples = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        samples.append(1000 * (time.perf_counter() - t))
    samples.sort()
    return (
        statistics.median(samples),
        samples[int(0.95 * (len(samples) - 1))],
        len(ctx.captured_queries),
    )


class Loader:
    """COPY rows into a model's table; columns not given take the model's default (or now
    for auto_now fields, NULL for nullable ones), so new columns do not break the bench."""

    def __init__(self, model, now):
        from django.db import models

        self.table = model._meta.db_table
        self.fields = list(model._meta.concrete_fields)
        self.json = {f.attname for f in self.fields if isinstance(f, models.JSONField)}
        self.defaults = {}
        for f in self.fields:
            if getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False):
                self.defaults[f.attname] = now
            elif f.has_default():
                self.defaults[f.attname] = f.get_default()
            elif f.null:
                self.defaults[f.attname] = None
            elif f.blank and isinstance(f, models.CharField | models.TextField):
                self.defaults[f.attname] = ""
        self.columns = ", ".join(f'"{f.column}"' for f in self.fields)
        self.attnames = [f.attname for f in self.fields]

    def copy(self, cursor, rows) -> int:
        """COPY the rows (dicts by attname); the number copied."""
        n = 0
        with cursor.copy(f'COPY "{self.table}" ({self.columns}) FROM STDIN') as copy:
            for row in rows:
                values = []
                for a in self.attnames:
                    v = row[a] if a in row else self.defaults[a]
                    if a in self.json and v is not None:
                        v = json.dumps(v, ensure_ascii=False)
                    values.append(v)
                copy.write_row(values)
                n += 1
        return n


@dataclass
class Figures:
    """The closing table: each figure beside its reference and target."""

    title: str
    rows: list[tuple[str, str, str, str, str]] = field(default_factory=list)

    def add(self, figure: str, measured: str, reference: str, target: str, met: bool | None):
        verdict = "-" if met is None else ("met" if met else "NOT met")
        self.rows.append((figure, measured, reference, target, verdict))

    def print(self) -> None:
        head = ("figure", "measured", "reference", "target", "")
        widths = [max(len(r[i]) for r in [head, *self.rows]) for i in range(5)]
        line = "  ".join(f"{{:{w}}}" for w in widths)
        print(f"\n== {self.title} ({loadavg()})")
        print(line.format(*head))
        print(line.format(*("-" * w for w in widths)))
        for row in self.rows:
            print(line.format(*row))


def table_writes(tables: list[str]) -> dict[str, tuple[int, int, int]]:
    """(n_tup_ins, n_tup_upd, n_tup_del) per table, including this backend's latest writes."""
    from django.db import connection

    with connection.cursor() as cursor:
        # Statistics are flushed when a backend goes idle; force ours out, then read afresh.
        cursor.execute("SELECT pg_stat_force_next_flush()")
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute(
            "SELECT relname, n_tup_ins, n_tup_upd, n_tup_del FROM pg_stat_user_tables "
            "WHERE relname = ANY(%s)",
            [tables],
        )
        return {name: (ins, upd, dele) for name, ins, upd, dele in cursor.fetchall()}


def row_counts(tables: list[str]) -> dict[str, int]:
    from django.db import connection

    counts = {}
    with connection.cursor() as cursor:
        for table in tables:
            # Table names come from our own list of model tables, never from input.
            cursor.execute(f'SELECT COUNT(*) FROM "{table}"')
            counts[table] = cursor.fetchone()[0]
    return counts
