"""CSV export of the decision trail at scale: rows per second, time to first byte and peak
memory, beside a raw PostgreSQL COPY of the same rows.

    .venv/bin/python bench/export_bench.py             # 100k and 1M trail rows
    .venv/bin/python bench/export_bench.py --small     # 2k rows: a smoke run
    .venv/bin/python bench/export_bench.py --sizes 100000 1000000 3000000

What it does:
1. Creates one benchmark database per size (`atlas_bench_export_<rows>`: its own, so that
   other benchmarks' data in `atlas_bench` is never emptied, and a re-run reloads nothing)
   on the server of DATABASE_URL if it is missing, and migrates it.
2. Loads a realistic trail with COPY (once; about 6 minutes for 1M rows): per flow 5
   documents of 4 fields (unicode names, amounts, IMEI lists, Aadhaar and PAN numbers,
   some empty), 2 cross-checks, 16 flagged items and decisions (70% accept, 20% correct,
   10% reject with reason and comment), and 20 trail events (16 decided, 3 changed, the
   outcome).
3. For each size, each in a fresh process, so that the peak memory is that run's own:
   - `command`: the export as `manage.py export_decisions` runs it (exports.export_to: a
     transaction, a named cursor read ahead by a helper thread, csv.writer) to /dev/null;
   - `job`: the background-job path (exports.run_job: the same in a transaction, writing
     its file, with progress UPDATEs through a second connection);
   - `COPY`: the reference, psycopg `COPY (the same SELECT) TO STDOUT WITH CSV` to
     /dev/null: what the database alone can produce.
4. Repeats each (--repeat, 3) and prints the best time and rows/s, the median rows/s, the
   worst time to first byte (first data written) and peak RSS (VmHWM, see peak_rss_mb),
   the RSS the process had before the export started (Django loaded), and the process's
   CPU time per row (which other load on the machine does not inflate), then as JSON.

Targets (issue 6): at least 50k rows/s, first byte within 1 s, peak RSS under 100 MB and flat
from 100k to 1M rows. Measured figures belong in the closing note, not in a test.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))

import perfkit

ROOT = perfkit.ROOT
EVENTS_PER_FLOW = 20  # 16 decided + 3 changed + 1 outcome
DOCS = {
    "INVOICE": ("customer_name", "total_invoice_amount", "imei_numbers", "invoice_date"),
    "DELIVERY_ORDER": ("customer_name", "loan_amount", "dealer_address", "do_number"),
    "AADHAAR": ("aadhaar_number", "name", "dob", "address"),
    "PAN": ("pan_number", "name", "father_name", "dob"),
    "IMEI_CLOSEUP_IMAGE": ("imei_number", "brand", "model", "serial"),
}
NAMES = (
    "Sāvitrī Ñandā", "Þórður O'Brien", "Ananya Iyer", "Mohammed Rafi Shaikh",
    "Zoë Fernandes", "Gurpreet Kaur", "Lakshmī Venkaṭeśvaran", "Rahul =Sharma",
)  # fmt: skip
AGENTS = 20


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--small", action="store_true", help="a smoke run: 2k rows")
    parser.add_argument(
        "--database-url",
        default=os.getenv("DATABASE_URL", perfkit.DEFAULT_SERVER),
        help="any database on the target server; only its server is used",
    )
    parser.add_argument("--db-name", default="atlas_bench_export")
    parser.add_argument("--modes", nargs="+", default=["command", "job", "copy"])
    parser.add_argument(
        "--repeat", type=int, default=3,
        help="runs per size and path: the best time is shown (least disturbed by other load)",
    )  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print only the JSON")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--sql-file", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.small:
        args.sizes = [2000]
        args.repeat = 1
    return args


def setup_django(url: str) -> None:
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("SECRET_KEY", "export-bench-only-secret-key-0123456789abcdef")
    os.environ.setdefault("TESTING", "True")  # plain static storage, nothing to collect
    os.environ.setdefault("CELERY_BROKER_URL", "")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    os.environ["DJANGO_SETTINGS_MODULE"] = "atlas_review.settings"
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def peak_rss_mb() -> float:
    """This process's peak RSS. On Linux ru_maxrss survives execve, so a child started by a
    parent that had loaded a million rows would report the parent's peak; VmHWM belongs to
    the child's own address space, so read it first."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


# --- Loading -------------------------------------------------------------------------------


def field_value(doc_type: str, name: str, f: int, r: random.Random):
    if r.random() < 0.04:
        return None
    if name in ("customer_name", "name", "father_name"):
        return r.choice(NAMES)
    if name in ("total_invoice_amount", "loan_amount"):
        return round(r.uniform(8_000, 250_000), 2)
    if name == "imei_numbers":
        return [f"35{f:012d}{i}" for i in range(r.choice((1, 2)))]
    if name == "aadhaar_number":
        return f"{2 + f % 8}{f:011d}"
    if name == "pan_number":
        return "ABC" + "PFCH"[f % 4] + "K" + f"{f % 10000:04d}" + "Z"
    if name == "dealer_address":
        return f"Shop {f % 90}, MG Road, Kōchi, Kerala 6820{f % 10}"
    if name in ("invoice_date", "dob"):
        return f"{1 + f % 28:02d}/{1 + f % 12:02d}/{1970 + f % 50}"
    return f"{name.upper()}-{f}"


def load(conn, first_flow: int, flows: int, ids: dict, agents: list, reasons: list, seed: int):
    """Append `flows` reviewed flows (numbered from first_flow) with COPY."""
    from atlas_review.flows.models import CrossCheck, Document, ExtractedField, Flow
    from atlas_review.review.models import Decision, DecisionEvent, FlowReview, ReviewItem

    now = datetime.now(UTC)
    r = random.Random(seed + first_flow)
    start = datetime(2025, 1, 1, tzinfo=UTC)
    tables = {m: perfkit.Loader(m, now) for m in (Flow, FlowReview, Document, ExtractedField,
                                           CrossCheck, ReviewItem, Decision, DecisionEvent)}  # fmt: skip
    rows: dict = {m: [] for m in tables}
    for f in range(first_flow, first_flow + flows):
        flow_id = ids["flow"] = ids["flow"] + 1
        created = start + timedelta(seconds=f * 40)
        product = "PROD_CDL" if f % 5 else "POC_CDL"
        rows[Flow].append({
            "id": flow_id, "flow_uuid": f"bench-{f:09d}", "application_id": f"APP-{f:09d}",
            "product_type": product, "upload_status": "SUCCESS", "processing_status": "SUCCESS",
            "crosscheck_status": "SUCCESS", "master_status": "SUCCESS", "sync_state": "DONE",
            "created_at": created, "updated_at": created,
        })  # fmt: skip
        fields = []
        for position, (doc_type, names) in enumerate(DOCS.items()):
            doc_id = ids["document"] = ids["document"] + 1
            rows[Document].append({
                "id": doc_id, "flow_id": flow_id, "key": f"file-{f}-{position}",
                "position": position, "document_id": f"{position + 1:03d}",
                "file_uuid": f"file-{f}-{position}", "document_type": doc_type,
                "file_url": f"https://files.example.com/{f}/{position}.png",
                "created_at": created, "updated_at": created,
            })  # fmt: skip
            for i, name in enumerate(names):
                field_id = ids["field"] = ids["field"] + 1
                value = field_value(doc_type, name, f, r)
                confidence = round(r.uniform(0.2, 0.99), 2)
                rows[ExtractedField].append({
                    "id": field_id, "document_id": doc_id, "flow_id": flow_id,
                    "document_type": doc_type, "name": name, "position": i, "value": value,
                    "confidence": confidence,
                })  # fmt: skip
                fields.append((field_id, doc_id, doc_type, name, value, confidence))
        checks = []
        for position, name in enumerate(("CUSTOMER_NAME", "DEALER_ADDRESS")):
            check_id = ids["check"] = ids["check"] + 1
            source, target = r.choice(NAMES), r.choice(NAMES)
            similarity = float(r.randrange(40, 90))
            rows[CrossCheck].append({
                "id": check_id, "flow_id": flow_id, "key": f"{name}:{position}",
                "position": position, "name": name, "source_doc": "INVOICE",
                "source_field_name": "customer_name", "source_value": source,
                "target_doc": "DELIVERY_ORDER", "target_field_name": "customer_name",
                "target_value": target, "similarity": similarity,
            })  # fmt: skip
            checks.append((check_id, name, {"source": source, "target": target}, similarity))

        agent_id, agent_name = agents[f % len(agents)]
        at = created + timedelta(minutes=30)
        subjects = [("field", x) for x in fields[:14]] + [("check", c) for c in checks]
        events = []
        for n, (kind, x) in enumerate(subjects):
            item_id = ids["item"] = ids["item"] + 1
            decision_id = ids["decision"] = ids["decision"] + 1
            if kind == "field":
                field_id, doc_id, doc_type, name, value, score = x
                refs = {"field_id": field_id, "document_id": doc_id, "cross_check_id": None}
                subject, item_kind, key = f"{doc_type}.{name}", "field", f"field:{field_id}"
            else:
                check_id, name, value, score = x
                refs = {"field_id": None, "document_id": None, "cross_check_id": check_id}
                subject, item_kind, key = name, "cross_check", f"check:{check_id}"
                doc_type = ""
            u = r.random()
            action = "accept" if u < 0.7 else "correct" if u < 0.9 else "reject"
            corrected = r.choice(NAMES) if action == "correct" else None
            reason = reasons[n % len(reasons)] if action == "reject" else None
            comment = "Checked against the original — “fine”" if action == "reject" else ""
            at += timedelta(seconds=7)
            rows[ReviewItem].append({
                "id": item_id, "flow_id": flow_id, "key": key, "kind": item_kind,
                "queue": "fields" if kind == "field" else "checks", "status": "decided",
                "rule": "confidence", "reason": f"low score for {subject}", "score": score,
                "threshold": 0.8, "priority": 50, "product_type": product,
                "document_type": doc_type, "name": name, "created_at": created, **refs,
            })  # fmt: skip
            rows[Decision].append({
                "id": decision_id, "item_id": item_id, "flow_id": flow_id, "action": action,
                "corrected_value": corrected, "reason_id": reason[0] if reason else None,
                "comment": comment, "author_id": agent_id, "decided_at": at,
                "atlas_value": value, "atlas_score": score, "superseded": False, "version": 1,
            })  # fmt: skip
            base = {
                "flow_id": flow_id, "item_id": item_id, "decision_id": decision_id,
                "subject": subject, "atlas_value": value, "atlas_score": score,
                "actor_id": agent_id, "actor_username": agent_name, **refs,
            }  # fmt: skip
            events.append({
                **base, "at": at, "kind": "decided", "action": action, "new_value": corrected,
                "reason_id": reason[0] if reason else None, "reason_code": reason[1] if reason else "",
                "reason_label": reason[2] if reason else "", "comment": comment, "data": {},
            })  # fmt: skip
            if n < 3:  # the agent changes their mind on three items
                events.append({
                    **base, "at": at + timedelta(seconds=3), "kind": "changed",
                    "action": "correct", "new_value": r.choice(NAMES), "comment": "",
                    "data": {"previous_action": action, "previous_author": agent_name},
                })  # fmt: skip
        outcome = r.choice(("approved", "approved", "approved", "rejected", "needs_info"))
        at += timedelta(seconds=30)
        events.append({
            "flow_id": flow_id, "at": at, "kind": "outcome", "outcome": outcome,
            "actor_id": agent_id, "actor_username": agent_name, "comment": "",
            "data": {"summary": {"accept": 11, "correct": 4, "reject": 1, "undecided": 0}},
        })  # fmt: skip
        rows[FlowReview].append({
            "flow_id": flow_id, "outcome": outcome, "closed_at": at, "closed_by_id": agent_id,
            "created_at": created, "updated_at": at,
        })  # fmt: skip
        for e in events:
            ids["event"] += 1
            e["id"] = ids["event"]
            rows[DecisionEvent].append(e)

        if len(rows[DecisionEvent]) >= 50_000 or f == first_flow + flows - 1:
            with conn.cursor() as cur:
                for model, loader in tables.items():
                    loader.copy(cur, rows[model])
                    rows[model].clear()
            conn.commit()


def prepare(size: int, seed: int = 5) -> None:
    """Grow (or reset and grow) the trail to exactly `size` events (a multiple of 20)."""
    from django.contrib.auth import get_user_model
    from django.db import connection

    from atlas_review.review.models import DecisionEvent, ReasonCode

    flows_wanted = max(1, size // EVENTS_PER_FLOW)
    have = DecisionEvent.objects.count()
    if have == flows_wanted * EVENTS_PER_FLOW:
        return
    connection.ensure_connection()
    conn = connection.connection
    with conn.cursor() as cur:
        if have > flows_wanted * EVENTS_PER_FLOW:
            others = cur.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid()"
            ).fetchone()[0]
            if others:
                raise SystemExit("other sessions use this database; not emptying it")
            # TRUNCATE is not refused by the trail's row trigger (it guards UPDATE/DELETE).
            cur.execute("TRUNCATE flows_flow, flows_upload, flows_payload RESTART IDENTITY CASCADE")
            conn.commit()
            have = 0
    User = get_user_model()
    agents = []
    for i in range(AGENTS):
        user, _ = User.objects.get_or_create(username=f"agent.{i:02d}")
        agents.append((user.pk, user.username))
    reasons = list(ReasonCode.objects.values_list("pk", "code", "label"))
    tables = {
        "flow": "flows_flow", "document": "flows_document", "field": "flows_extractedfield",
        "check": "flows_crosscheck", "item": "review_reviewitem", "decision": "review_decision",
        "event": "review_decisionevent",
    }  # fmt: skip
    with conn.cursor() as cur:
        ids = {k: cur.execute(f"SELECT coalesce(max(id), 0) FROM {t}").fetchone()[0]
               for k, t in tables.items()}  # fmt: skip
        first = cur.execute("SELECT count(*) FROM flows_flow").fetchone()[0]
    conn.commit()
    t = time.perf_counter()
    flows = flows_wanted - have // EVENTS_PER_FLOW
    load(conn, first, flows, ids, agents, reasons, seed)
    with conn.cursor() as cur:
        for table in tables.values():
            cur.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                f"(SELECT coalesce(max(id), 1) FROM {table}))"
            )
        conn.commit()
        conn.autocommit = True
        # Sets hint bits and the visibility map now, so the first measured run does not
        # pay for them (and statistics for the planner).
        cur.execute("VACUUM (ANALYZE)")
        conn.autocommit = False
    print(
        f"loaded {flows} flows ({flows * EVENTS_PER_FLOW} trail events) in "
        f"{time.perf_counter() - t:.1f}s",
        file=sys.stderr,
    )


# --- Measuring (each in its own process) ------------------------------------------------------


class DevNull:
    """/dev/null that notes when the first byte arrived."""

    def __init__(self):
        self.file = open(os.devnull, "wb")  # noqa: SIM115
        self.first = None
        self.bytes = 0

    def write(self, data: bytes) -> None:
        if self.first is None:
            self.first = time.perf_counter()
        self.bytes += len(data)
        self.file.write(data)


def child(mode: str, url: str, sql_file: str | None) -> dict:
    if mode == "copy":
        import psycopg

        sql = Path(sql_file).read_text()
        before = peak_rss_mb()
        out = DevNull()
        t0, c0 = time.perf_counter(), time.process_time()
        lines = 0
        query = f"COPY ({sql}) TO STDOUT WITH (FORMAT csv, HEADER)"
        with psycopg.connect(url) as conn, conn.cursor() as cur, cur.copy(query) as copy:
            for block in copy:
                out.write(block)
                lines += bytes(block).count(b"\n")
        rows = lines - 1  # the generated values hold no line breaks
    else:
        setup_django(url)
        from atlas_review.audit import exports
        from atlas_review.audit.filters import ExportFilters
        from atlas_review.audit.models import ExportJob

        before = peak_rss_mb()
        if mode == "command":
            out = DevNull()
            t0, c0 = time.perf_counter(), time.process_time()
            job = exports.export_to(out, "decisions", ExportFilters(), requested_by="bench")
        else:  # job
            from django.conf import settings

            settings.MEDIA_ROOT = tempfile.mkdtemp(prefix="export-bench-")
            job = ExportJob.objects.create(kind="decisions", via="background",
                                           requested_by="bench")  # fmt: skip
            out = DevNull()
            t0, c0 = time.perf_counter(), time.process_time()
            exports.run_job(job.pk)
            job.refresh_from_db()
            out.bytes = job.file_size or 0
            shutil.rmtree(settings.MEDIA_ROOT, ignore_errors=True)
        if job.status != "done":
            raise SystemExit(f"export failed: {job.error}")
        rows = job.rows_written
    elapsed = time.perf_counter() - t0
    cpu = time.process_time() - c0
    return {
        "mode": mode,
        "rows": rows,
        "seconds": round(elapsed, 3),
        "first_byte_s": round(out.first - t0, 3) if out.first else None,
        "bytes": out.bytes,
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "rss_before_mb": round(before, 1),
        "cpu_s": round(cpu, 3),
    }


def export_sql() -> str:
    """The export's SELECT with its parameters inlined, for the COPY reference."""
    import psycopg
    from django.db import connection

    from atlas_review.audit.exports import SPECS
    from atlas_review.audit.filters import ExportFilters

    spec = SPECS["decisions"]
    qs = spec.queryset(ExportFilters()).order_by(*spec.order)
    qs = qs.values_list(*(c.source for c in spec.columns))
    sql, params = qs.query.sql_with_params()
    connection.ensure_connection()
    with psycopg.ClientCursor(connection.connection) as cur:
        return cur.mogrify(sql, params)


def run_child(mode: str, url: str, sql_file: str) -> dict:
    server, name = perfkit.with_database(url, "postgres"), urlsplit(url).path.lstrip("/")
    cmd = [sys.executable, __file__, "--child", mode, "--database-url", server,
           "--db-name", name, "--sql-file", sql_file]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=ROOT)
    if out.returncode:
        raise SystemExit(f"{mode} run failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def best_of(runs: list[dict]) -> dict:
    """The fastest run's time and rate, the median rate, and the worst first byte and peak
    memory of all runs (so the figures do not flatter)."""
    best = min(runs, key=lambda r: r["seconds"])
    rates = sorted(r["rows"] / r["seconds"] for r in runs)
    firsts = [r["first_byte_s"] for r in runs if r["first_byte_s"] is not None]
    return {
        **best,
        "runs": len(runs),
        "rows_per_s": round(best["rows"] / best["seconds"]),
        "median_rows_per_s": round(rates[len(rates) // 2]),
        "first_byte_s": max(firsts) if firsts else None,
        "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
        "cpu_us_per_row": round(best["cpu_s"] / best["rows"] * 1e6, 1),
    }


def table(results: list[dict]) -> str:
    lines = [
        f"{'rows':>9}  {'path':<8} {'best s':>7} {'rows/s':>8} {'median':>8} {'1st byte':>9} "
        f"{'peak RSS':>9} {'before':>8} {'CPU/row':>8}"
    ]
    for r in results:
        first = f"{r['first_byte_s'] * 1000:.0f} ms" if r["first_byte_s"] is not None else "–"
        lines.append(
            f"{r['rows']:>9}  {r['mode']:<8} {r['seconds']:>7.2f} {r['rows_per_s']:>8,} "
            f"{r['median_rows_per_s']:>8,} {first:>9} {r['peak_rss_mb']:>6.1f} MB "
            f"{r['rss_before_mb']:>5.1f} MB {r['cpu_us_per_row']:>5.1f} us"
        )
    return "\n".join(lines)


def prepare_database(server_url: str, name: str, size: int, sql_file: str) -> None:
    """In a child process (Django is bound to one database per process): create, migrate
    and load the size's database, and write the export's SQL for the COPY reference."""
    perfkit.ensure_database(
        server_url, name, fresh=False, announce=lambda m: print(m, file=sys.stderr)
    )
    setup_django(perfkit.with_database(server_url, name))
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    prepare(size)
    Path(sql_file).write_text(export_sql())


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.child:
        url = perfkit.with_database(args.database_url, args.db_name)
        if args.child == "prepare":
            prepare_database(args.database_url, args.db_name, args.sizes[0], args.sql_file)
            return 0
        print(json.dumps(child(args.child, url, args.sql_file)))
        return 0

    results = []
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as f:
        sql_file = f.name
    try:
        for size in sorted(args.sizes):
            # One database per size: re-runs measure without reloading anything.
            name = f"{args.db_name}_{size}"
            subprocess.run(
                [sys.executable, __file__, "--child", "prepare", "--sizes", str(size),
                 "--database-url", args.database_url, "--db-name", name,
                 "--sql-file", sql_file],
                cwd=ROOT, check=True,
            )  # fmt: skip
            url = perfkit.with_database(args.database_url, name)
            for mode in args.modes:
                result = best_of([run_child(mode, url, sql_file) for _ in range(args.repeat)])
                results.append(result)
                if not args.json:
                    print(table([result]).splitlines()[-1], file=sys.stderr)
    finally:
        os.unlink(sql_file)
    if not args.json:
        print(table(results))
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
