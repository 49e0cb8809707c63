"""Ingest: flows per second applied by the ingest service, beside a raw COPY of the same rows
and beside naive per-row save().

    .venv/bin/python bench/ingest_bench.py             # 2000 payloads
    .venv/bin/python bench/ingest_bench.py --small     # 30 payloads: a smoke run
    .venv/bin/python bench/ingest_bench.py -n 5000 --batch 50

What it does, in its own database `atlas_perf_ingest` (dropped and recreated):
1. Generates N CallbackData payloads with the simulator's generator
   (atlas.simulator.generate_flow_result, 6 files per application: about 6 documents,
   32 fields and 10 cross-checks, ~48 rows) and parses them, outside every timing. Each run
   below gets the same N applications (the same rows) under flow uuids of its own, but
   the one-by-one run, whose applications come from another seed (the two runs with
   receivers would otherwise share phones across runs, doubling the reuse work); all the
   flows exist (POLLING, with their upload) before anything is timed.
2. Runs, taking turns of --batch payloads with the order rotating each turn (the machine
   is shared: a change of load then falls on every run alike):
   - `apply_callback_data`: the sweep, one payload at a time through the ingest service
     (one transaction each, row lock, diff, bulk writes, results_applied receivers: the
     checks app and the review flagging). Per-payload latency gives p50/p95, and the time
     spent in each receiver is measured apart.
   - `apply_many`: the same through ingest.apply_many, --batch flows per transaction
     (the bulk path, same receivers).
   - the same two with the receivers disconnected: what ingest itself costs.
   - `COPY`: the reference, psycopg COPY of exactly the rows ingest writes (documents,
     fields, cross-checks) into the same tables, --batch flows per transaction; after the
     runs, COPY of the rows the sweep derives beside them (check results, sightings,
     review rows, queue items, as `apply_many` wrote them): with both, the reference for
     everything the sweep writes.
   - `save()`: naive per-row Model.save() in autocommit, on the first --naive payloads.
   Rates are compared in rows/s (the runs' rows are the same, so flows/s compare alike).
3. Re-applies the sweep's payloads and shows it writes nothing: row counts and
   pg_stat_user_tables n_tup_ins/n_tup_upd/n_tup_del of every table before and after; then
   again with each flow's results_hash cleared, so the row-by-row diff (not the hash
   shortcut) has to find that nothing changed.

Targets (issue 6): the sweep at least 50% of the COPY rate; one payload p95 <= 50 ms;
re-applying writes nothing.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import weakref
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import perfkit

KINDS = ("invoice", "delivery_order", "aadhaar", "pan", "imei", "open_box")
SEED = 11


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--payloads", type=int, default=2000)
    parser.add_argument(
        "--batch", type=int, default=100,
        help="flows per apply_many call (100: what the journal applies per transaction)",
    )  # fmt: skip
    parser.add_argument("--naive", type=int, default=300, help="payloads for the save() run")
    parser.add_argument("--small", action="store_true", help="a smoke run: 30 payloads")
    parser.add_argument("--database-url", default=os.getenv("DATABASE_URL", perfkit.DEFAULT_SERVER))
    parser.add_argument("--db-name", default="atlas_perf_ingest")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    args = parser.parse_args(argv)
    if args.small:
        args.payloads, args.naive, args.batch = 30, 10, 10
    return args


# --- data ----------------------------------------------------------------------------------


def make_payloads(n: int, run: str, seed: int = SEED):
    """(files per flow, parsed CallbackData) for N applications. Every run gets the same
    applications (same documents, fields and checks) under flow uuids of its own."""
    from atlas_review.atlas.payloads import parse_callback_data
    from atlas_review.atlas.simulator import generate_flow_result

    out = []
    for i in range(n):
        app = f"PERF-{i:07d}"
        files = [
            {
                "file_url": f"https://files.example.com/{app}-{kind}.jpg",
                "document_id": str(j),
                "batch_id": f"B-{run}-{app}",
            }
            for j, kind in enumerate(KINDS)
        ]
        raw = generate_flow_result(seed, f"perf-{run}-{i:07d}", files, application_id=app)
        out.append((files, parse_callback_data(raw)))
    return out


def data_tables() -> list[str]:
    from django.apps import apps

    return [
        m._meta.db_table
        for label in ("flows", "checks", "review")
        for m in apps.get_app_config(label).get_models()
        if not m._meta.proxy
    ]


def reset(payloads) -> None:
    """Empty every data table and create the N flows (POLLING, with their upload)."""
    from django.db import connection

    from atlas_review.flows.models import Flow, SyncState, Upload

    with connection.cursor() as cursor:
        # TRUNCATE fires no row trigger, so the trail's append-only guard stays in place.
        cursor.execute("TRUNCATE flows_flow, flows_upload RESTART IDENTITY CASCADE")
    flows = Flow.objects.bulk_create(
        [
            Flow(
                flow_uuid=data.flow_uuid, application_id="PERF-" + data.flow_uuid.rsplit("-", 1)[1],
                product_type="PROD_CDL", sync_state=SyncState.POLLING,
                master_status="IN_PROGRESS", requested_files=files,
            )
            for files, data in payloads
        ],
        batch_size=2000,
    )  # fmt: skip
    Upload.objects.bulk_create(
        [
            Upload(batch_id=files[0]["batch_id"], api="v3", flow=flow, files=files)
            for flow, (files, _) in zip(flows, payloads, strict=True)
        ],
        batch_size=2000,
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE flows_flow, flows_upload")


def rows_of(data) -> int:
    return len(data.documents) + sum(len(d.fields) for d in data.documents) + len(data.cross_checks)


# --- receivers -----------------------------------------------------------------------------


class ReceiverClock:
    """Wraps every receiver of the ingest signals (results_created: first results,
    set-based; results_applied: re-deliveries) to add up the time each one takes."""

    def __init__(self):
        from atlas_review.flows.ingest import results_applied, results_created

        self.signals = (results_created, results_applied)
        self.seconds: dict[str, float] = {}
        self._saved = [list(signal.receivers) for signal in self.signals]

    def wrap(self) -> None:
        for signal, saved in zip(self.signals, self._saved, strict=True):
            with signal.lock:
                wrapped = []
                for lookup, receiver, *rest in saved:
                    func = receiver() if isinstance(receiver, weakref.ReferenceType) else receiver
                    name = f"{func.__module__.removeprefix('atlas_review.')}.{func.__name__}"

                    def timed(*args, _func=func, _name=name, **kwargs):
                        started = time.perf_counter()
                        try:
                            return _func(*args, **kwargs)
                        finally:
                            took = time.perf_counter() - started
                            self.seconds[_name] = self.seconds.get(_name, 0.0) + took

                    self._keep = [*getattr(self, "_keep", []), timed]
                    wrapped.append((lookup, timed, *rest))
                signal.receivers = wrapped
                signal.sender_receivers_cache.clear()

    def disconnect(self) -> None:
        for signal in self.signals:
            with signal.lock:
                signal.receivers = []
                signal.sender_receivers_cache.clear()

    def restore(self) -> None:
        for signal, saved in zip(self.signals, self._saved, strict=True):
            with signal.lock:
                signal.receivers = list(saved)
                signal.sender_receivers_cache.clear()
        self.seconds = {}


@contextmanager
def receivers(mode: str):
    clock = ReceiverClock()
    (clock.wrap if mode == "on" else clock.disconnect)()
    try:
        yield clock
    finally:
        clock.restore()


# --- the runs ------------------------------------------------------------------------------

RUNS = {
    "service": "apply_callback_data, one per transaction",
    "service_bare": "  same, receivers off (ingest alone)",
    "many": "apply_many, {batch} flows per transaction",
    "many_bare": "  same, receivers off (ingest alone)",
    "copy": "reference: COPY, {batch} flows per transaction",
    "naive": "reference: per-row save(), autocommit",
}


@dataclass
class Run:
    name: str
    payloads: list
    seconds: float = 0.0
    flows: int = 0
    rows: int = 0
    latencies: list[float] = field(default_factory=list)  # per payload, or per batch
    receivers: dict[str, float] = field(default_factory=dict)


def apply_one_by_one(run: Run, chunk, with_receivers: bool) -> None:
    from atlas_review.flows import ingest

    with receivers("on" if with_receivers else "off") as clock:
        for _files, data in chunk:
            t = time.perf_counter()
            result = ingest.apply_callback_data(data, source="bench")
            run.latencies.append(time.perf_counter() - t)
            assert result.outcome == ingest.APPLIED, result.outcome
        for name, secs in clock.seconds.items():
            run.receivers[name] = run.receivers.get(name, 0.0) + secs


def apply_batch(run: Run, chunk, with_receivers: bool) -> None:
    from atlas_review.flows import ingest

    with receivers("on" if with_receivers else "off") as clock:
        t = time.perf_counter()
        results = ingest.apply_many([data for _files, data in chunk], source="bench")
        run.latencies.append(time.perf_counter() - t)
        assert all(r.outcome == ingest.APPLIED for r in results), results
        for name, secs in clock.seconds.items():
            run.receivers[name] = run.receivers.get(name, 0.0) + secs


def copy_rows(run: Run, chunk, flow_ids: dict[str, int]) -> None:
    """The same documents, fields and cross-checks rows as ingest writes, by COPY, in one
    transaction for the chunk."""
    from django.db import connection, transaction
    from django.utils import timezone
    from psycopg.types.json import Jsonb

    from atlas_review.flows.ingest import _check_keys, _document_keys

    t = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cursor:
        now = timezone.now()
        n_docs = sum(len(d.documents) for _f, d in chunk)
        # Ids for the documents, so that fields can point at them (what RETURNING gives ingest).
        cursor.execute(
            "SELECT nextval('flows_document_id_seq') FROM generate_series(1, %s)", [n_docs]
        )
        ids = iter(row[0] for row in cursor.fetchall())
        docs, fields, checks = [], [], []
        for files, data in chunk:
            flow_id = flow_ids[data.flow_uuid]
            urls = {f["document_id"]: f["file_url"] for f in files}
            for key, doc in zip(_document_keys(data.documents), data.documents, strict=True):
                doc_pk = next(ids)
                docs.append((
                    doc_pk, flow_id, key, doc.position, doc.document_id, doc.file_uuid,
                    doc.batch_id, urls.get(doc.document_id, ""), doc.document_type,
                    doc.error_code, doc.error_reason, Jsonb(doc.extra), now, now,
                ))  # fmt: skip
                for position, item in enumerate(doc.fields):
                    fields.append((
                        doc_pk, flow_id, doc.document_type, item.name, position,
                        Jsonb(item.value), item.confidence, now,
                    ))  # fmt: skip
            for key, c in zip(_check_keys(data.cross_checks), data.cross_checks, strict=True):
                checks.append((
                    flow_id, key, c.position, c.name, c.source_doc, c.source_field_name,
                    Jsonb(c.source_value), c.target_doc, c.target_field_name,
                    Jsonb(c.target_value), c.similarity, Jsonb(c.extra), now,
                ))  # fmt: skip
        for sql, rows in (
            (
                "COPY flows_document (id, flow_id, key, position, document_id, file_uuid, "
                "batch_id, file_url, document_type, error_code, error_reason, extra, "
                "created_at, updated_at) FROM STDIN",
                docs,
            ),
            (
                "COPY flows_extractedfield (document_id, flow_id, document_type, name, "
                "position, value, confidence, updated_at) FROM STDIN",
                fields,
            ),
            (
                "COPY flows_crosscheck (flow_id, key, position, name, source_doc, "
                "source_field_name, source_value, target_doc, target_field_name, "
                "target_value, similarity, extra, updated_at) FROM STDIN",
                checks,
            ),
        ):
            with cursor.cursor.copy(sql) as copy:
                for row in rows:
                    copy.write_row(row)
    run.latencies.append(time.perf_counter() - t)
    assert len(docs) + len(fields) + len(checks) == sum(rows_of(d) for _f, d in chunk)


def save_rows(run: Run, chunk, flows: dict) -> None:
    """Per-row Model.save() in autocommit: what ingest would cost written the obvious way."""
    from atlas_review.flows.ingest import _check_keys, _document_keys
    from atlas_review.flows.models import CrossCheck, Document, ExtractedField

    t = time.perf_counter()
    for files, data in chunk:
        flow = flows[data.flow_uuid]
        urls = {f["document_id"]: f["file_url"] for f in files}
        for key, doc in zip(_document_keys(data.documents), data.documents, strict=True):
            row = Document(
                flow=flow, key=key, position=doc.position, document_id=doc.document_id,
                file_uuid=doc.file_uuid, batch_id=doc.batch_id,
                file_url=urls.get(doc.document_id, ""), document_type=doc.document_type,
                error_code=doc.error_code, error_reason=doc.error_reason, extra=doc.extra,
            )  # fmt: skip
            row.save()
            for position, item in enumerate(doc.fields):
                ExtractedField(
                    document=row, flow=flow, document_type=doc.document_type, name=item.name,
                    position=position, value=item.value, confidence=item.confidence,
                ).save()  # fmt: skip
        for key, c in zip(_check_keys(data.cross_checks), data.cross_checks, strict=True):
            CrossCheck(
                flow=flow, key=key, position=c.position, name=c.name, source_doc=c.source_doc,
                source_field_name=c.source_field_name, source_value=c.source_value,
                target_doc=c.target_doc, target_field_name=c.target_field_name,
                target_value=c.target_value, similarity=c.similarity, extra=c.extra,
            ).save()  # fmt: skip
        flow.sync_state = "DONE"
        flow.save()
    run.latencies.append(time.perf_counter() - t)


def run_all(args) -> dict[str, Run]:
    """Every run in turns of --batch payloads, the order rotating each turn: the machine is
    shared, and a change of load then falls on all runs alike instead of on one."""
    from atlas_review.flows.models import Flow

    # The two runs with receivers must not share identifiers: the generator's applications
    # share a small pool of phones (reuse), and the same pool in both runs would double the
    # flows every new sharer re-flags. The one-by-one run gets applications of its own (same
    # generator, another seed); the others are the same applications as the COPY run.
    runs = {
        name: Run(name, make_payloads(args.payloads, name, SEED + 1 if name == "service" else SEED))
        for name in RUNS
    }
    runs["naive"].payloads = runs["naive"].payloads[: args.naive]
    reset([p for run in runs.values() for p in run.payloads])
    flows = {f.flow_uuid: f for f in Flow.objects.all()}
    flow_ids = {uuid: f.pk for uuid, f in flows.items()}
    order = list(runs)
    for turn, start in enumerate(range(0, args.payloads, args.batch)):
        for name in order[turn % len(order) :] + order[: turn % len(order)]:
            run = runs[name]
            chunk = run.payloads[start : start + args.batch]
            if not chunk:
                continue
            t = time.perf_counter()
            if name in ("service", "service_bare"):
                apply_one_by_one(run, chunk, with_receivers=name == "service")
            elif name in ("many", "many_bare"):
                apply_batch(run, chunk, with_receivers=name == "many")
            elif name == "copy":
                copy_rows(run, chunk, flow_ids)
            else:
                save_rows(run, chunk, flows)
            run.seconds += time.perf_counter() - t
            run.flows += len(chunk)
            run.rows += sum(rows_of(d) for _f, d in chunk)
        if sys.stdout.isatty():
            print(f"\r  {min(start + args.batch, args.payloads)} of {args.payloads} payloads per run", end="", flush=True)  # fmt: skip
    if sys.stdout.isatty():
        print()
    return runs


def reapply(payloads, *, clear_hash: bool) -> dict:
    """Apply every payload again; the writes per table it caused."""
    from atlas_review.flows import ingest
    from atlas_review.flows.models import Flow

    if clear_hash:
        Flow.objects.filter(flow_uuid__in=[d.flow_uuid for _f, d in payloads]).update(
            results_hash=""
        )
    tables = data_tables()
    counts_before, writes_before = perfkit.row_counts(tables), perfkit.table_writes(tables)
    outcomes: dict[str, int] = {}
    started = time.perf_counter()
    for _files, data in payloads:
        result = ingest.apply_callback_data(data, source="bench")
        outcomes[result.outcome] = outcomes.get(result.outcome, 0) + 1
    took = time.perf_counter() - started
    counts_after, writes_after = perfkit.row_counts(tables), perfkit.table_writes(tables)
    delta = {}
    for table in tables:
        before, after = writes_before.get(table, (0, 0, 0)), writes_after.get(table, (0, 0, 0))
        d = tuple(a - b for a, b in zip(after, before, strict=True))
        rows = counts_after[table] - counts_before[table]
        if any(d) or rows:
            delta[table] = (rows, *d)
    return {"seconds": took, "outcomes": outcomes, "delta": delta}


def copy_derived(runs: dict[str, Run], batch: int) -> Run:
    """The other half of the reference for the sweep: COPY of the rows the sweep derives
    beside Atlas's (check results, identifier sightings, review rows, queue items), as the
    `many` run wrote them, re-pointed at the `copy` run's flows (same applications, same
    documents, fields and checks), --batch flows per transaction. Read and re-pointed
    outside the timing; timed: the COPYs and their commits."""
    from django.db import connection, transaction

    from atlas_review.checks.models import FieldCheckResult, IdentifierSighting
    from atlas_review.flows.models import CrossCheck, Document, ExtractedField, Flow
    from atlas_review.review.models import FlowReview, ReviewItem

    def index(uuid: str) -> int:
        return int(uuid.rsplit("-", 1)[1])

    def naturals(run_name: str):
        prefix = f"perf-{run_name}-"
        flows = dict(
            Flow.objects.filter(flow_uuid__startswith=prefix).values_list("pk", "flow_uuid")
        )
        flow_nat = {pk: index(uuid) for pk, uuid in flows.items()}
        # Documents by position: their keys hold file uuids, which differ between runs.
        docs = {
            pk: (flow_nat[f], position)
            for pk, f, position in Document.objects.filter(flow_id__in=flows).values_list(
                "pk", "flow_id", "position"
            )
        }
        fields = {
            pk: (*docs[d], name)
            for pk, d, name in ExtractedField.objects.filter(flow_id__in=flows).values_list(
                "pk", "document_id", "name"
            )
        }
        checks = {
            pk: (flow_nat[f], key)
            for pk, f, key in CrossCheck.objects.filter(flow_id__in=flows).values_list(
                "pk", "flow_id", "key"
            )
        }
        return flow_nat, docs, fields, checks  # fmt: skip

    src_flow, src_doc, src_field, src_check = naturals("many")
    dst = [{v: k for k, v in m.items()} for m in naturals("copy")]
    dst_flow, dst_doc, dst_field, dst_check = dst

    def flow(pk):
        return dst_flow[src_flow[pk]]

    def remap(table: dict, src: dict, pk):
        return None if pk is None else table[src[pk]]

    by_flow: dict[int, dict[str, list]] = {}

    def add(kind: str, flow_index: int, row: tuple) -> None:
        by_flow.setdefault(flow_index, {}).setdefault(kind, []).append(row)

    for f, code, passed, reason, at in FieldCheckResult.objects.filter(field_id__in=src_field).values_list(
        "field_id", "check_code", "passed", "reason", "checked_at"
    ):  # fmt: skip
        add("results", src_field[f][0], (dst_field[src_field[f]], code, passed, reason, at))
    for kind, value, at, f, fl in IdentifierSighting.objects.filter(flow_id__in=src_flow).values_list(
        "kind", "value", "seen_at", "field_id", "flow_id"
    ):  # fmt: skip
        add("sightings", src_flow[fl], (kind, value, at, dst_field[src_field[f]], flow(fl)))
    for fl, at in FlowReview.objects.filter(flow_id__in=src_flow).values_list(
        "flow_id", "created_at"
    ):
        add("reviews", src_flow[fl], (flow(fl), "", "", at, at))
    item_columns = [
        "flow_id", "key", "status", "created_at", "updated_at", "kind", "queue", "rule", "reason",
        "score", "threshold", "priority", "field_id", "cross_check_id", "document_id",
        "document_type", "name", "product_type",
    ]  # fmt: skip
    for row in ReviewItem.objects.filter(flow_id__in=src_flow).values_list(*item_columns):
        row = list(row)
        nat = src_flow[row[0]]
        row[0] = flow(row[0])
        row[12] = remap(dst_field, src_field, row[12])
        row[13] = remap(dst_check, src_check, row[13])
        row[14] = remap(dst_doc, src_doc, row[14])
        add("items", nat, tuple(row))

    sql = {
        "results": "COPY checks_fieldcheckresult (field_id, check_code, passed, reason, checked_at) FROM STDIN",
        "sightings": "COPY checks_identifiersighting (kind, value, seen_at, field_id, flow_id) FROM STDIN",
        "reviews": "COPY review_flowreview (flow_id, outcome, outcome_comment, created_at, updated_at) FROM STDIN",
        "items": f"COPY review_reviewitem ({', '.join(item_columns)}) FROM STDIN",
    }  # fmt: skip
    run = Run("copy_derived", [])
    order = sorted(by_flow)
    for start in range(0, len(order), batch):
        chunk = order[start : start + batch]
        t = time.perf_counter()
        with transaction.atomic(), connection.cursor() as cursor:
            for kind, statement in sql.items():
                rows = [row for i in chunk for row in by_flow[i].get(kind, ())]
                with cursor.cursor.copy(statement) as copy:
                    for row in rows:
                        copy.write_row(row)
                run.rows += len(rows)
        run.seconds += time.perf_counter() - t
        run.flows += len(chunk)
    return run


# --- report --------------------------------------------------------------------------------


def main(argv=None) -> None:
    args = parse_args(argv)
    url = perfkit.ensure_database(args.database_url, args.db_name, fresh=True)
    perfkit.setup_django(url)
    print(f"ingest bench: {args.payloads} payloads, database {args.db_name}; {perfkit.loadavg()}")

    t = time.perf_counter()
    runs = run_all(args)
    sample = runs["many"].payloads
    n, rows = len(sample), sum(rows_of(d) for _f, d in sample)
    docs = sum(len(d.documents) for _f, d in sample)
    checks = sum(len(d.cross_checks) for _f, d in sample)
    print(
        f"per payload {docs / n:.1f} documents, {(rows - docs - checks) / n:.1f} fields, "
        f"{checks / n:.1f} cross-checks = {rows / n:.1f} rows; all runs in "
        f"{time.perf_counter() - t:.0f}s, taking turns of {args.batch} payloads"
    )

    print(f"\n  {'run':48} {'flows':>6} {'seconds':>8} {'flows/s':>8} {'rows/s':>8}  latency")
    for name, run in runs.items():
        lat = [1000 * x for x in run.latencies]
        per = "per payload" if name.startswith("service") else f"per {args.batch} flows"
        print(
            f"  {RUNS[name].format(batch=args.batch):48} {run.flows:6d} {run.seconds:8.2f} "
            f"{run.flows / run.seconds:8.1f} {run.rows / run.seconds:8.0f}  "
            f"p50 {perfkit.pct(lat, 50):.1f} ms, p95 {perfkit.pct(lat, 95):.1f} ms {per}"
        )
        for receiver, secs in sorted(run.receivers.items()):
            print(
                f"      of which receiver {receiver:40} {1000 * secs / run.flows:6.1f} ms per flow"
            )
        if run.receivers:
            own = run.seconds - sum(run.receivers.values())
            print(f"      of which ingest itself{'':37} {1000 * own / run.flows:6.1f} ms per flow")

    # Re-applied before the derived rows are copied: those give the copy run's flows
    # sightings, which the service run's flows would then rightly find as reuse.
    again = reapply(runs["service"].payloads, clear_hash=False)
    rediff = reapply(runs["service"].payloads, clear_hash=True)
    derived = copy_derived(runs, args.batch)
    copy = runs["copy"]
    all_seconds = copy.seconds + derived.seconds
    print(
        f"  {'reference: COPY of the rows the sweep derives':48} {derived.flows:6d} "
        f"{derived.seconds:8.2f} {derived.flows / derived.seconds:8.1f} "
        f"{derived.rows / derived.seconds:8.0f}  ({derived.rows / derived.flows:.1f} rows per flow: "
        "check results, sightings, review rows, items)"
    )
    print(
        f"  {'reference: COPY of every row the sweep writes':48} {copy.flows:6d} "
        f"{all_seconds:8.2f} {copy.flows / all_seconds:8.1f} "
        f"{(copy.rows + derived.rows) / all_seconds:8.0f}  (the two COPYs above)"
    )

    print("\nre-applying every payload (rows added; n_tup_ins, n_tup_upd, n_tup_del per table):")
    for label, r in (("same payloads", again), ("same payloads, results_hash cleared", rediff)):
        print(f"  {label}: {r['outcomes']} in {r['seconds']:.2f}s; changes: {r['delta'] or 'none'}")

    copy_rate = copy.flows / copy.seconds
    ref = f"COPY {copy_rate:.0f} flows/s"
    fig = perfkit.Figures("ingest figures")
    for name in ("service", "service_bare", "many", "many_bare", "naive"):
        run = runs[name]
        share = (run.flows / run.seconds) / copy_rate
        label = RUNS[name].format(batch=args.batch).replace("reference: ", "")
        target = "-" if name == "naive" else ">= 50% of COPY"
        fig.add(
            f"{label} (flows/s)", f"{run.flows / run.seconds:.1f} ({100 * share:.0f}%)", ref,
            target, None if name == "naive" else share >= 0.5,
        )  # fmt: skip
    many, all_rate = runs["many"], copy.flows / all_seconds
    share = (many.flows / many.seconds) / all_rate
    fig.add(
        "apply_many vs COPY of every row it writes", f"{many.flows / many.seconds:.1f} ({100 * share:.0f}%)",
        f"COPY all {all_rate:.0f} flows/s", ">= 50% of COPY", share >= 0.5,
    )  # fmt: skip
    lat = [1000 * x for x in runs["service"].latencies]
    p95 = perfkit.pct(lat, 95)
    fig.add(
        f"one payload ({rows / n:.0f} rows) p95 ms", f"{p95:.1f}",
        f"p50 {perfkit.pct(lat, 50):.1f}; COPY {1000 * copy.seconds / copy.flows:.2f}/flow",
        "<= 50", p95 <= 50,
    )  # fmt: skip
    fig.add(
        "re-apply: rows/tuples written", "none" if not again["delta"] else str(again["delta"]),
        f"{again['outcomes']}", "nothing new", not again["delta"],
    )  # fmt: skip
    # The flows' own rows are written (results_hash set again); nothing else may be.
    written = {t: d for t, d in rediff["delta"].items() if t != "flows_flow"}
    fig.add(
        "re-diff (hash cleared): rows written besides flows", "none" if not written else str(written),
        f"{rediff['outcomes']}", "nothing new", not written,
    )  # fmt: skip
    fig.print()
    if not args.keep:
        from django.db import connections

        connections.close_all()
        perfkit.drop_database(args.database_url, args.db_name)


if __name__ == "__main__":
    main()
