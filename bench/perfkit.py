"""Helpers shared by the issue-6 benchmarks (ingest_bench, queue_bench, sync_bench).

Each benchmark works in its own database named `atlas_perf_*` on the PostgreSQL server of
DATABASE_URL (other benchmarks use `atlas_bench*`), which it may drop and recreate: the
name check below refuses anything else, so a typo cannot drop someone's data.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
PREFIX = "atlas_perf_"
DEFAULT_SERVER = "postgres://postgres@127.0.0.1:5432/postgres"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/" + name))


def _check_name(name: str) -> None:
    if not name.startswith(PREFIX) or not name.replace("_", "").isalnum():
        raise SystemExit(f"refusing database {name!r}: benchmark databases are {PREFIX}*")


def ensure_database(server_url: str, name: str, *, fresh: bool) -> str:
    """The URL of database `name`, created if missing (dropped first when fresh)."""
    import psycopg

    _check_name(name)
    with psycopg.connect(with_database(server_url, "postgres"), autocommit=True) as conn:
        if fresh:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')
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
