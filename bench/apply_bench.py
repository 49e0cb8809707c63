"""One payload applied end to end: time and queries per first-time apply and per re-apply.

    .venv/bin/python bench/apply_bench.py            # 300 payloads
    .venv/bin/python bench/apply_bench.py -n 50      # fewer
    .venv/bin/python bench/apply_bench.py --small    # 20 payloads: a smoke run

Creates (dropping it first) the database `atlas_bench_apply` on the server of DATABASE_URL,
migrates it, creates N flows, then applies each flow's simulator payload (6 documents,
~60 rows) through the ingest service exactly as a callback does
(`apply_callback_data(parse_callback_data(...))`), with every receiver of
`results_created` (checks, reuse sightings, review flagging: set-based, as a first
delivery is) inside. Reports p50/p95 per
apply (and this process's CPU time, which other load on the machine disturbs less), the
time spent in each receiver, queries per apply by statement and table with the time the
driver saw for them, and the same for re-applying the same payloads, which must write
nothing (a duplicate returns before the receivers).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import perfkit

ROOT = perfkit.ROOT
KINDS = ("invoice", "delivery_order", "aadhaar", "pan", "imei", "open_box")
WRITES = ("INSERT", "UPDATE", "DELETE", "COPY")
_TABLE = re.compile(r'(?:FROM|INTO|UPDATE|DELETE FROM|COPY)\s+"(\w+)"', re.IGNORECASE)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--payloads", type=int, default=300)
    parser.add_argument("--small", action="store_true", help="a smoke run: 20 payloads")
    parser.add_argument(
        "--database-url",
        default=os.getenv("DATABASE_URL", perfkit.DEFAULT_SERVER),
    )
    parser.add_argument("--db-name", default="atlas_bench_apply", help="dropped first")
    args = parser.parse_args(argv)
    if args.small:
        args.payloads = 20
    return args


def setup_django(args) -> None:
    # It is dropped first: refuse anything that does not look like this benchmark's own
    # (perfkit refuses any name that is not a benchmark database at all).
    if "apply" not in args.db_name:
        raise SystemExit(f"refusing database {args.db_name!r}: its name must contain 'apply'")
    url = perfkit.ensure_database(args.database_url, args.db_name, fresh=True)
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("SECRET_KEY", "bench-only-secret-key-0123456789-abcdefghij")
    os.environ.update(
        DEBUG="False", TESTING="True", SECURE_SSL_REDIRECT="False", SECURE_COOKIES="False",
        LOG_LEVEL="WARNING", CELERY_BROKER_URL="",
    )  # fmt: skip
    os.environ["DJANGO_SETTINGS_MODULE"] = "atlas_review.settings"
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def make_payloads(n: int) -> list[dict]:
    from atlas_review.atlas.simulator import generate_flow_result
    from atlas_review.flows.models import Flow, SyncState, Upload

    payloads, flows = [], []
    for i in range(n):
        flow_uuid = f"apply-{i:06d}"
        files = [
            {"file_url": f"https://files.example.com/APPLY-{i}-{kind}.jpg", "document_id": str(j)}
            for j, kind in enumerate(KINDS)
        ]
        payloads.append(generate_flow_result(7, flow_uuid, files, application_id=f"APPLY-{i}"))
        flows.append(
            Flow(
                flow_uuid=flow_uuid, application_id=f"APPLY-{i}", product_type="PROD_CDL",
                sync_state=SyncState.POLLING, requested_files=files,
            )
        )  # fmt: skip
    Flow.objects.bulk_create(flows, batch_size=1000)
    Upload.objects.bulk_create(
        [
            Upload(batch_id=f"B-{f.flow_uuid}", api="v3", flow=f, files=f.requested_files)
            for f in Flow.objects.all()
        ],
        batch_size=1000,
    )
    return payloads


# (signal, dispatch uid, receiver): a first delivery goes to results_created (set-based),
# a changed re-delivery to results_applied.
RECEIVERS = (
    ("results_created", "checks.on_results_created", "checks.services.on_results_created"),
    ("results_created", "review.flag_first", "review.flagging.on_results_created"),
    ("results_applied", "checks.on_results_applied", "checks.services.on_results_applied"),
    ("results_applied", "review.flag_flow", "review.flagging.on_results_applied"),
)
SPENT: dict[str, list[float]] = {uid: [] for _s, uid, _f in RECEIVERS}
SPENT_CPU: dict[str, list[float]] = {uid: [] for _s, uid, _f in RECEIVERS}


def time_receivers() -> None:
    """Reconnect the ingest receivers wrapped in a timer, in the same order."""
    import importlib

    from atlas_review.flows import ingest

    def timed(uid, fn):
        def receiver(sender, **kwargs):
            start, start_cpu = time.perf_counter(), time.process_time()
            try:
                return fn(sender, **kwargs)
            finally:
                SPENT[uid].append((time.perf_counter() - start) * 1000)
                SPENT_CPU[uid].append((time.process_time() - start_cpu) * 1000)

        return receiver

    wrappers = []
    for signal_name, uid, path in RECEIVERS:
        module, name = path.rsplit(".", 1)
        fn = getattr(importlib.import_module(f"atlas_review.{module}"), name)
        signal = getattr(ingest, signal_name)
        signal.disconnect(dispatch_uid=uid)
        wrappers.append((signal, uid, timed(uid, fn)))
    for signal, uid, wrapper in wrappers:
        signal.connect(wrapper, dispatch_uid=uid, weak=False)


def run(payloads: list[dict]) -> tuple:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from atlas_review.atlas.payloads import parse_callback_data
    from atlas_review.flows.ingest import apply_callback_data

    times, cpu, counts, tables, outcomes = [], [], [], Counter(), []
    spent: Counter = Counter()  # ms per statement kind, as the driver saw them
    for body in payloads:
        connection.queries_log.clear()  # the log keeps 9000 queries; count from empty
        with CaptureQueriesContext(connection) as ctx:
            start, start_cpu = time.perf_counter(), time.process_time()
            result = apply_callback_data(parse_callback_data(body))
            times.append((time.perf_counter() - start) * 1000)
            cpu.append((time.process_time() - start_cpu) * 1000)
        counts.append(len(ctx.captured_queries))
        outcomes.append(result.outcome)
        for q in ctx.captured_queries:
            verb = q["sql"].split(None, 1)[0].upper()
            match = _TABLE.search(q["sql"])
            key = f"{verb} {match.group(1) if match else '-'}"
            tables[key] += 1
            spent[key] += float(q["time"]) * 1000
    return times, cpu, counts, tables, outcomes, spent


def report(label: str, times, cpu, counts, tables, outcomes, spent, n: int) -> None:
    print(
        f"{label}: {n} payloads, p50 {statistics.median(times):.1f} ms, "
        f"p95 {perfkit.pct(times, 95):.1f} ms, max {max(times):.1f} ms "
        f"(this process's CPU p50 {statistics.median(cpu):.1f} ms); "
        f"queries/apply min {min(counts)} median {statistics.median(counts):g} max {max(counts)}; "
        f"outcomes {dict(Counter(outcomes))}"
    )
    for key, total in spent.most_common():
        print(f"    {tables[key] / n:5.2f}/apply {total / n:6.2f} ms/apply  {key}")


def main(argv=None) -> int:
    args = parse_args(argv)
    setup_django(args)
    from atlas_review.checks.models import FieldCheckResult, IdentifierSighting
    from atlas_review.flows.models import ExtractedField
    from atlas_review.review.models import ReviewItem

    payloads = make_payloads(args.payloads)
    time_receivers()
    rows = sum(len(p["ocr_data"]) + len(p["cross_checks"]) for p in payloads)
    fields = sum(len(d["data"]) for p in payloads for d in p["ocr_data"])
    print(f"{args.payloads} payloads, ~{(rows + fields) / args.payloads:.0f} rows each")

    first = run(payloads)
    report("first apply", *first, args.payloads)
    print(
        f"  stored: {ExtractedField.objects.count()} fields, "
        f"{FieldCheckResult.objects.count()} check results, "
        f"{IdentifierSighting.objects.count()} sightings, {ReviewItem.objects.count()} items "
        f"({dict(Counter(ReviewItem.objects.values_list('kind', flat=True)))})"
    )
    for uid, spent in SPENT.items():
        if not spent:
            continue
        print(
            f"  in receiver {uid}: p50 {statistics.median(spent):.1f} ms, "
            f"p95 {perfkit.pct(spent, 95):.1f} ms (CPU p50 {statistics.median(SPENT_CPU[uid]):.1f} ms)"
        )
    again = run(payloads)
    report("re-apply (same payloads)", *again, args.payloads)
    writes = sum(v for k, v in again[3].items() if k.split()[0] in WRITES)
    print(f"  writes on re-apply: {writes}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
