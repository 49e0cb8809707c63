"""Reuse look-up time at scale: find_reuse over a million identifier sightings.

    .venv/bin/python bench/reuse_bench.py             # 200k flows x 5 identifiers = 1M
    .venv/bin/python bench/reuse_bench.py --small     # 2k flows: a smoke run
    .venv/bin/python bench/reuse_bench.py --repopulate

What it does:
1. Creates the benchmark database (default `atlas_bench`) on the PostgreSQL server of
   DATABASE_URL if it is missing, and migrates it (DATABASE_URL pointed at it).
2. Unless it already holds exactly this data set, empties the flow tables and loads with
   COPY: N flows, 4 documents and 6 fields each (1.2M fields at full size), and 5
   sightings per flow (IMEI on invoice and close-up, Aadhaar, PAN, invoice number +
   GSTIN) spread over the last year. About 3% of flows carry an IMEI from a small pool of
   shared handsets, 0.5% another flow's Aadhaar, 0.5% another flow's invoice.
3. Times `find_reuse(flow)` (the code the pages and the queue call) for random flows:
   p50/p95/max in ms, through the (kind, value) index.
4. Reference: the same calls with `SET enable_indexscan = off; SET enable_bitmapscan = off`,
   i.e. what the look-up costs as sequential scans.
5. Prints EXPLAIN (ANALYZE, BUFFERS) of the reuse query both ways.

It refuses to empty a database other sessions are connected to (another benchmark).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import perfkit

ROOT = perfkit.ROOT
IDS_PER_FLOW = 5
DOCUMENT_TYPES = ("INVOICE", "IMEI_CLOSEUP_IMAGE", "AADHAAR", "PAN")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--flows", type=int, default=200_000)
    parser.add_argument("--lookups", type=int, default=1000, help="timed find_reuse calls")
    parser.add_argument("--reference-lookups", type=int, default=20, help="seq-scan calls")
    parser.add_argument("--small", action="store_true", help="a smoke run: 2k flows")
    parser.add_argument(
        "--database-url",
        default=os.getenv("DATABASE_URL", perfkit.DEFAULT_SERVER),
        help="any database on the target server; only its server is used",
    )
    parser.add_argument("--db-name", default="atlas_bench")
    parser.add_argument("--repopulate", action="store_true", help="reload even if present")
    parser.add_argument("--seed", type=int, default=9)
    args = parser.parse_args(argv)
    if args.small:
        args.flows = min(args.flows, 2000)
        args.lookups = min(args.lookups, 100)
        args.reference_lookups = min(args.reference_lookups, 10)
    return args


def setup_django(url: str) -> None:
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("SECRET_KEY", "reuse-bench-only-secret-key-0123456789abcdef")
    os.environ.setdefault("TESTING", "True")  # plain static storage, nothing to collect
    os.environ.setdefault("CELERY_BROKER_URL", "")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    os.environ["DJANGO_SETTINGS_MODULE"] = "atlas_review.settings"
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


# --- data ----------------------------------------------------------------------------------


def luhn_digit(body: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            d -= 9 if d > 9 else 0
        total += d
    return str((10 - total % 10) % 10)


def dealer_gstin(n: int) -> str:
    dealer = (n * 7) % 500  # 500 dealers, each invoicing many flows
    return f"{10 + dealer % 27:02d}AAPFU{dealer:04d}F1Z5"


def identifiers(n: int, r: random.Random, shared_imeis: list[str]) -> dict:
    """The five identifiers of flow number n (1-based), with deliberate reuse."""
    imei = f"35{n:012d}"
    imei += luhn_digit(imei)
    aadhaar = f"{2 + n % 8}{n:011d}"
    pan = "".join(chr(65 + (n // 26**i) % 26) for i in range(5)) + f"{n % 10000:04d}P"
    gstin = dealer_gstin(n)
    invoice = f"INV/{n}"
    u = r.random()
    if u < 0.03:
        imei = r.choice(shared_imeis)
    elif u < 0.035 and n > 1:
        aadhaar = f"{2 + (m := r.randrange(1, n)) % 8}{m:011d}"
    elif u < 0.04 and n > 1:
        m = r.randrange(1, n)
        invoice, gstin = f"INV/{m}", dealer_gstin(m)
    return {"imei": imei, "aadhaar": aadhaar, "pan": pan, "gstin": gstin, "invoice": invoice}


def is_populated(cursor, flows: int) -> bool:
    cursor.execute("SELECT count(*) FROM flows_flow")
    (n_flows,) = cursor.fetchone()
    cursor.execute("SELECT count(*) FROM checks_identifiersighting")
    (n_sightings,) = cursor.fetchone()
    return n_flows == flows and n_sightings == flows * IDS_PER_FLOW


FIELDS = (  # (document type, field name, identifier it holds, sighting kind)
    ("INVOICE", "invoice_number", "invoice", "invoice"),
    ("INVOICE", "dealer_gst", "gstin", None),
    ("INVOICE", "imei_number", "imei", "imei"),
    ("IMEI_CLOSEUP_IMAGE", "imei_number", "imei", "imei"),
    ("AADHAAR", "aadhaar_number", "aadhaar", "aadhaar"),
    ("PAN", "pan_number", "pan", "pan"),
)


def flow_data(flows: int, seed: int):
    """(n, seen_at, identifiers) for every flow: deterministic, so each COPY pass (one
    table at a time: a connection runs one COPY at once) regenerates the same data."""
    r = random.Random(seed)
    now = datetime(2026, 1, 1, tzinfo=UTC)
    shared_imeis = []
    for i in range(max(flows // 100, 10)):
        body = f"86{i:012d}"
        shared_imeis.append(body + luhn_digit(body))
    for n in range(1, flows + 1):
        seen = now - timedelta(seconds=r.randrange(365 * 86400))
        yield n, seen, identifiers(n, r, shared_imeis)


def flow_rows(flows, seed):
    for n, seen, _ids in flow_data(flows, seed):
        yield (n, f"bench-{n:08d}", f"APP-{n:08d}", "PROD_CDL", "{}", "[]", "SUCCESS",
               "SUCCESS", "COMPLETED", "SUCCESS", "DONE", "", 0, "", "bench", seen, seen)  # fmt: skip


def document_rows(flows, seed):
    for n, seen, _ids in flow_data(flows, seed):
        for position, doc_type in enumerate(DOCUMENT_TYPES):
            yield ((n - 1) * len(DOCUMENT_TYPES) + position + 1, n, f"pos:{position}", position,
                   str(position), "", "", "", doc_type, "", "", "{}", seen, seen)  # fmt: skip


def _document_id(n: int, doc_type: str) -> int:
    return (n - 1) * len(DOCUMENT_TYPES) + DOCUMENT_TYPES.index(doc_type) + 1


def field_rows(flows, seed):
    for n, seen, ids in flow_data(flows, seed):
        for i, (doc_type, name, key, _kind) in enumerate(FIELDS):
            value = [ids[key]] if key == "imei" else ids[key]
            yield ((n - 1) * len(FIELDS) + i + 1, _document_id(n, doc_type), n, doc_type, name,
                   i, json.dumps(value), 0.9, seen)  # fmt: skip


def sighting_rows(flows, seed):
    sighting_id = 0
    for n, seen, ids in flow_data(flows, seed):
        for i, (_doc_type, _name, key, kind) in enumerate(FIELDS):
            if kind is None:
                continue
            sighting_id += 1
            value = f"{ids['gstin']}/{ids['invoice']}" if kind == "invoice" else ids[key]
            yield (sighting_id, kind, value, n, (n - 1) * len(FIELDS) + i + 1, seen)


TABLES = (
    ("flows_flow", "id, flow_uuid, application_id, product_type, flow_params, requested_files, "
     "upload_status, processing_status, crosscheck_status, master_status, sync_state, "
     "last_error, error_count, results_hash, results_source, created_at, updated_at", flow_rows),
    ("flows_document", "id, flow_id, key, position, document_id, file_uuid, batch_id, file_url, "
     "document_type, error_code, error_reason, extra, created_at, updated_at", document_rows),
    ("flows_extractedfield", "id, document_id, flow_id, document_type, name, position, value, "
     "confidence, updated_at", field_rows),
    ("checks_identifiersighting", "id, kind, value, flow_id, field_id, seen_at", sighting_rows),
)  # fmt: skip


def populate(conn, flows: int, seed: int) -> None:
    """COPY flows, documents, fields and sightings; explicit ids, sequences set after."""
    with conn.cursor() as cur:
        others = cur.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid()"
        ).fetchone()[0]
        if others:
            raise SystemExit(f"{others} other session(s) use this database; not emptying it")
        # A scratch database: every table that points at flows is emptied too.
        cur.execute("TRUNCATE flows_flow, flows_upload, flows_payload RESTART IDENTITY CASCADE")
    for table, columns, rows in TABLES:
        t0, count = time.perf_counter(), 0
        with conn.cursor() as cur, cur.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
            for row in rows(flows, seed):
                copy.write_row(row)
                count += 1
        with conn.cursor() as cur:
            cur.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                f"(SELECT coalesce(max(id), 1) FROM {table}))"
            )
        print(f"COPY {table}: {count:,} rows in {time.perf_counter() - t0:.1f}s")
    conn.commit()


# --- measuring -------------------------------------------------------------------------------


def time_lookups(flows, find_reuse) -> tuple[list[float], int]:
    times, with_alerts = [], 0
    for flow in flows:
        t = time.perf_counter()
        found = find_reuse(flow)
        times.append((time.perf_counter() - t) * 1000)
        with_alerts += bool(found)
    return times, with_alerts


def summary(label: str, times: list[float], with_alerts: int) -> str:
    return (
        f"{label:<34} n={len(times):<5} p50={statistics.median(times):8.2f} ms  "
        f"p95={perfkit.pct(times, 95):8.2f} ms  max={max(times):8.2f} ms  "
        f"({with_alerts} with reuse)"
    )


def explain(flow) -> str:
    from atlas_review.checks.reuse import default_window_days, my_identifiers, reuse_queryset

    qs = reuse_queryset(flow, my_identifiers(flow), default_window_days())
    return qs.explain(analyze=True, buffers=True)


def main(argv=None) -> int:
    args = parse_args(argv)
    url = perfkit.ensure_database(args.database_url, args.db_name, fresh=False, announce=print)
    setup_django(url)

    from django.core.management import call_command
    from django.db import connection, transaction

    from atlas_review.checks.models import IdentifierSighting
    from atlas_review.checks.reuse import find_reuse
    from atlas_review.flows.models import Flow

    t = time.perf_counter()
    call_command("migrate", verbosity=0)
    print(f"migrated {args.db_name} in {time.perf_counter() - t:.1f}s")

    connection.ensure_connection()
    raw = connection.connection
    with raw.cursor() as cur:
        populated = is_populated(cur, args.flows)
    if args.repopulate or not populated:
        populate(raw, args.flows, args.seed)
        with raw.cursor() as cur:
            cur.execute("ANALYZE")
        raw.commit()
    else:
        print(f"reusing the {args.flows:,} flows already loaded in {args.db_name}")

    with connection.cursor() as cur:
        cur.execute(
            "SELECT pg_size_pretty(pg_total_relation_size('checks_identifiersighting')), "
            "pg_size_pretty(pg_relation_size('sighting_kind_value_idx')), "
            "(SELECT count(*) FROM checks_identifiersighting)"
        )
        table_size, index_size, count = cur.fetchone()
    print(
        f"sightings: {count:,} rows, table+indexes {table_size}, (kind, value) index {index_size}"
    )

    r = random.Random(args.seed + 1)
    ids = [r.randrange(1, args.flows + 1) for _ in range(args.lookups)]
    flows = list(Flow.objects.filter(pk__in=ids))
    r.shuffle(flows)
    # Warm the cache the same way for both runs: one pass untimed.
    time_lookups(flows[:20], find_reuse)
    times, hits = time_lookups(flows, find_reuse)
    print(summary("find_reuse (indexes)", times, hits))

    reference_flows = flows[: args.reference_lookups]
    with transaction.atomic():
        with connection.cursor() as cur:
            cur.execute("SET LOCAL enable_indexscan = off")
            cur.execute("SET LOCAL enable_bitmapscan = off")
        ref_times, ref_hits = time_lookups(reference_flows, find_reuse)
        print(summary("reference (sequential scans)", ref_times, ref_hits))
        sample = next(
            (f for f in flows if IdentifierSighting.objects.filter(flow=f, kind="imei")
             .filter(value__startswith="86").exists()),
            flows[0],
        )  # fmt: skip
        seq_plan = explain(sample)
    print(f"speed-up at p50: {statistics.median(ref_times) / statistics.median(times):.0f}x")
    print(f"\nEXPLAIN ANALYZE, flow {sample.pk} (indexes):\n{explain(sample)}")
    print(f"\nEXPLAIN ANALYZE, flow {sample.pk} (sequential scans):\n{seq_plan}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
