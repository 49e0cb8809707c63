"""Queue pages at a million fields: server time, query counts, keyset depth and EXPLAIN.

    .venv/bin/python bench/queue_bench.py              # 100k flows: 1M fields, 400k checks
    .venv/bin/python bench/queue_bench.py --small      # 500 flows: a smoke run
    .venv/bin/python bench/queue_bench.py --repopulate # regenerate the data set

bench/review_bench.py fills its queues through the real flagging (about 200k fields in a
reasonable time); this one goes to the issue's scale by generating everything with COPY:

1. Two databases of its own, `atlas_perf_queue` (N flows) and `atlas_perf_queue_small`
   (1/100 of it, at least 300 flows), loaded once by COPY and kept for re-runs: per flow
   3 documents (INVOICE, DELIVERY_ORDER, AADHAAR; 1 in 12 with an error_code), 10 fields
   (confidence spread so about a third is below 0.80), 4 cross-checks (similarity 40..100),
   its FlowReview, and the review items flagging's rules give for that data (a field
   below 0.80 on a readable document, a cross-check below 90 (high priority below 70), a
   document with an error_code), created over the last 30 days.
2. As a reviewer, through Django's test Client (middleware, session, permissions,
   templates: the server time without the network), requests each queue page (fields,
   cross-checks, exceptions) at page 1 and at page 1000 (keyset cursor; the deepest full
   page when the queue is shorter), the htmx partial, the nav counts and the flow review
   page, --runs times each, the pages taking turns, on both databases.
3. Prints p50/p95 and the CPU time of this process per request (what the load of other
   processes on a shared machine cannot inflate) on the large set beside the small one,
   page 1000 / page 1, the queries per page on both sets (the same count means it does not
   grow with the table), every COUNT a request ran (each must be capped by a LIMIT), and
   EXPLAIN ANALYZE of the queue queries exactly as the requests sent them.

--small --repopulate --drop is the smoke run of the test suite (throwaway databases).

Targets (issue 6): p95 under 50 ms, page 1000 within 1.5x of page 1, no full-table
COUNT(*) on a request, query count independent of table size, the queue queries on their
indexes.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import perfkit

PAGE = 50
DEEP_PAGE = 1000
DOCS = {
    "INVOICE": ("customer_name", "invoice_number", "total_invoice_amount", "invoice_date"),
    "DELIVERY_ORDER": ("customer_name", "dealer_name", "loan_amount", "do_date"),
    "AADHAAR": ("name", "date_of_birth"),
}
CHECKS = (
    ("CUSTOMER_NAME", "DELIVERY_ORDER", "customer_name", "INVOICE", "customer_name"),
    ("LOAN_AMOUNT", "DELIVERY_ORDER", "loan_amount", "INVOICE", "total_invoice_amount"),
    ("CUSTOMER_NAME", "AADHAAR", "name", "INVOICE", "customer_name"),
    ("DEALER_NAME", "DELIVERY_ORDER", "dealer_name", "INVOICE", "dealership_name"),
)
PRODUCTS = ("PROD_CDL", "POC_CDL", "LOAN_APP")
CONFIDENCE, SIMILARITY, HIGH = 0.80, 90, 70


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--flows", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=40, help="timed requests per page")
    parser.add_argument("--small", action="store_true", help="a smoke run: 500 flows")
    parser.add_argument("--drop", action="store_true", help="drop both databases afterwards")
    parser.add_argument("--repopulate", action="store_true")
    parser.add_argument("--database-url", default=os.getenv("DATABASE_URL", perfkit.DEFAULT_SERVER))
    parser.add_argument("--db-name", default="atlas_perf_queue")
    args = parser.parse_args(argv)
    if args.small:
        args.flows, args.runs = min(args.flows, 500), min(args.runs, 3)
        if args.db_name == "atlas_perf_queue":
            args.db_name = "atlas_perf_queue_smoke"
    return args


# --- data ----------------------------------------------------------------------------------


class Copier:
    """COPY rows of a model, every concrete column filled (given values, else its default)."""

    def __init__(self, cursor, model, now):
        from psycopg.types.json import Jsonb

        self.jsonb = Jsonb
        self.fields = list(model._meta.concrete_fields)
        columns = ", ".join(f'"{f.column}"' for f in self.fields)
        self._context = cursor.copy(f'COPY "{model._meta.db_table}" ({columns}) FROM STDIN')
        self.defaults = {}
        for f in self.fields:
            if f.has_default():
                value = f.get_default()
            elif f.null:
                value = None
            elif f.get_internal_type() in ("DateTimeField",):
                value = now
            else:
                value = ""
            self.defaults[f.attname] = value
        self.json = {f.attname for f in self.fields if f.get_internal_type() == "JSONField"}
        self.rows = 0

    def __enter__(self):
        self.copy = self._context.__enter__()
        return self

    def __exit__(self, *exc):
        return self._context.__exit__(*exc)

    def write(self, **values) -> None:
        row = []
        for f in self.fields:
            value = values.get(f.attname, self.defaults[f.attname])
            if f.attname in self.json and value is not None:
                value = self.jsonb(value)
            row.append(value)
        self.copy.write_row(row)
        self.rows += 1


def populate(n: int) -> dict[str, int]:
    """Load N flows and everything below them by COPY; returns rows per table."""
    import psycopg
    from django.conf import settings
    from django.db import connection
    from django.utils import timezone

    from atlas_review.flows.models import CrossCheck, Document, ExtractedField, Flow
    from atlas_review.review.models import FlowReview, ReviewItem

    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE review_decisionevent, review_decision, review_reviewitem, "
            "review_flowreview, flows_flow, flows_upload RESTART IDENTITY CASCADE"
        )
    connection.close()
    r = random.Random(6)
    now = timezone.now()
    db = settings.DATABASES["default"]
    dsn = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    counts: dict[str, int] = {}
    ids = {"doc": 0, "field": 0, "check": 0, "item": 0}
    started = time.perf_counter()
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        created = {}
        with Copier(cur, Flow, now) as flows:
            for i in range(1, n + 1):
                # Oldest first, over 30 days, so the age filters find something.
                at = now - timedelta(days=30) * (1 - i / n) - timedelta(seconds=5)
                created[i] = at
                flows.write(
                    id=i, flow_uuid=f"perf-{i:08d}", application_id=f"APP-{i:08d}",
                    product_type=PRODUCTS[i % 3], master_status="SUCCESS", sync_state="DONE",
                    results_hash=f"{i:064x}", results_as_of=at, results_source="callback_v3",
                    created_at=at, updated_at=at, last_synced_at=at,
                )  # fmt: skip
        with Copier(cur, FlowReview, now) as reviews:
            for i in range(1, n + 1):
                reviews.write(flow_id=i, created_at=created[i], updated_at=created[i])
        counts["flows_flow"] = counts["review_flowreview"] = n
        items = []  # review items, written after their targets exist
        with Copier(cur, Document, now) as docs:
            doc_rows = []
            for i in range(1, n + 1):
                for position, doc_type in enumerate(DOCS):
                    ids["doc"] += 1
                    error = "INVALID_DOC" if r.random() < 1 / 12 else ""
                    docs.write(
                        id=ids["doc"], flow_id=i, key=f"pos:{position}", position=position,
                        document_id=str(position), document_type=doc_type, error_code=error,
                        error_reason="document is blurred" if error else "",
                        file_url=f"https://files.example.com/APP-{i}-{doc_type.lower()}.jpg",
                        created_at=created[i], updated_at=created[i],
                    )  # fmt: skip
                    doc_rows.append((ids["doc"], i, doc_type, error))
                    if error:
                        items.append({
                            "flow_id": i, "key": f"doc:{ids['doc']}", "kind": "exception",
                            "queue": "exceptions", "rule": "error_code",
                            "reason": f"{error}: document is blurred", "document_id": ids["doc"],
                            "document_type": doc_type, "name": error,
                        })  # fmt: skip
            counts["flows_document"] = docs.rows
        with Copier(cur, ExtractedField, now) as fields:
            for doc_id, flow_id, doc_type, error in doc_rows:
                for position, name in enumerate(DOCS[doc_type]):
                    ids["field"] += 1
                    x = r.random()
                    conf = (
                        0.0 if x < 0.05
                        else round(r.uniform(0.3, 0.79), 2) if x < 0.35
                        else round(r.uniform(0.8, 1), 2)
                    )  # fmt: skip
                    fields.write(
                        id=ids["field"], document_id=doc_id, flow_id=flow_id,
                        document_type=doc_type, name=name, position=position,
                        value="" if x < 0.03 else f"{name} {flow_id}", confidence=conf,
                        updated_at=created[flow_id],
                    )  # fmt: skip
                    if conf < CONFIDENCE and not error:
                        items.append({
                            "flow_id": flow_id, "key": f"field:{ids['field']}", "kind": "field",
                            "queue": "fields", "rule": "confidence", "score": conf, "threshold": CONFIDENCE,
                            "reason": f"confidence {conf:.2f} < {CONFIDENCE:.2f} for {doc_type}.{name}",
                            "field_id": ids["field"], "document_id": doc_id, "document_type": doc_type,
                            "name": name,
                        })  # fmt: skip
            counts["flows_extractedfield"] = fields.rows
        with Copier(cur, CrossCheck, now) as checks:
            for i in range(1, n + 1):
                for position, (name, sd, sf, td, tf) in enumerate(CHECKS):
                    ids["check"] += 1
                    sim = r.randint(40, 100)
                    checks.write(
                        id=ids["check"], flow_id=i, key=f"{name}|{sd}.{sf}|{td}.{tf}",
                        position=position, name=name, source_doc=sd, source_field_name=sf,
                        source_value=f"12 MG Road, Block {i}", target_doc=td,
                        target_field_name=tf, target_value=f"12 M.G. Road Blk {i}",
                        similarity=sim, updated_at=created[i],
                    )  # fmt: skip
                    if sim < SIMILARITY:
                        urgent = sim < HIGH
                        items.append({
                            "flow_id": i, "key": f"check:{ids['check']}", "kind": "cross_check",
                            "queue": "checks", "rule": "similarity", "score": sim, "threshold": SIMILARITY,
                            "reason": f"similarity {sim} < {SIMILARITY}" + (" (high priority)" if urgent else ""),
                            "priority": 10 if urgent else 50, "cross_check_id": ids["check"], "name": name,
                        })  # fmt: skip
            counts["flows_crosscheck"] = checks.rows
        with Copier(cur, ReviewItem, now) as out:
            for item in items:
                ids["item"] += 1
                at = created[item["flow_id"]] + timedelta(microseconds=ids["item"] % 1000)
                out.write(
                    id=ids["item"],
                    status="open",
                    product_type=PRODUCTS[item["flow_id"] % 3],
                    created_at=at,
                    updated_at=at,
                    **item,
                )
            counts["review_reviewitem"] = out.rows
        for table, column in (
            ("flows_flow", "id"), ("flows_document", "id"), ("flows_extractedfield", "id"),
            ("flows_crosscheck", "id"), ("review_reviewitem", "id"),
        ):  # fmt: skip
            cur.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', '{column}'), "
                f"(SELECT COALESCE(MAX({column}), 1) FROM {table}))"
            )
        conn.commit()
        conn.autocommit = True
        cur.execute("VACUUM ANALYZE")
    print(
        f"  loaded by COPY in {time.perf_counter() - started:.0f}s: "
        + ", ".join(f"{t} {c:,}" for t, c in counts.items())
    )
    return counts


def use_database(url: str, n: int, repopulate: bool) -> None:
    """Point Django's connection at url (migrated), loading its data set if needed."""
    from django.core.management import call_command
    from django.db import connections

    from atlas_review.flows.models import Flow

    conn = connections["default"]
    conn.close()
    name = url.rsplit("/", 1)[1]
    conn.settings_dict["NAME"] = name
    call_command("migrate", verbosity=0)
    if (
        repopulate
        or not Flow.objects.filter(flow_uuid=f"perf-{n:08d}").exists()
        or (Flow.objects.filter(flow_uuid=f"perf-{n + 1:08d}").exists())
    ):
        print(f"loading {n:,} flows into {name} ...")
        populate(n)
    else:
        print(f"{name}: data set of {n:,} flows present")


# --- requests ------------------------------------------------------------------------------


COUNT_RE = re.compile(r"COUNT\(", re.IGNORECASE)


def unbounded_counts(sql: str) -> int:
    """COUNTs in a statement not over a LIMITed subquery (a full-table count)."""
    parts = COUNT_RE.split(sql)[1:]
    return sum(1 for part in parts if not re.search(r"\bLIMIT\s+\d+", part))


def measure(client, pages, runs: int) -> dict[str, dict]:
    """Per page: wall and CPU ms over `runs` requests, the pages taken in turn (so a change
    of load on this shared machine hits them all alike), and the queries of one request."""
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections, connection, reset_queries
    from django.test.utils import CaptureQueriesContext

    # As in tests: keep the connection across requests while counting.
    request_started.disconnect(reset_queries)
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)

    out = {}
    for label, make in pages:
        with CaptureQueriesContext(connection) as ctx:
            response = make(0)
        assert response.status_code == 200, (label, response.status_code)
        sqls = [q["sql"] for q in ctx.captured_queries]
        out[label] = {
            "wall": [], "cpu": [], "sqls": sqls, "queries": len(sqls),
            "counts": sum(len(COUNT_RE.findall(s)) for s in sqls),
            "unbounded": sum(unbounded_counts(s) for s in sqls),
        }  # fmt: skip
    for run in range(1, runs + 1):
        for label, make in pages:
            t, c = time.perf_counter(), time.process_time()
            response = make(run)
            out[label]["cpu"].append(1000 * (time.process_time() - c))
            out[label]["wall"].append(1000 * (time.perf_counter() - t))
            assert response.status_code == 200, (label, response.status_code)
    for r in out.values():
        r["p50"], r["p95"] = statistics.median(r["wall"]), perfkit.pct(r["wall"], 95)
        r["cpu50"] = statistics.median(r["cpu"])
    return out


def cursor_at(queue: str, page: int) -> tuple[str | None, int]:
    """The keyset cursor that opens page `page` of a queue (or its last full page)."""
    from atlas_review.review import queries
    from atlas_review.review.models import ReviewItem

    items = ReviewItem.objects.open().in_queue(queue).queue_order()
    total = items.count()
    page = max(1, min(page, total // PAGE))  # the deepest full page, if 1000 is too deep
    if page == 1:
        return None, 1
    return queries.encode_cursor(items[(page - 1) * PAGE - 1]), page


def page_set(client) -> tuple[list, dict[str, int]]:
    from atlas_review.review.models import ReviewItem

    pages, depth = [], {}
    for queue in ("fields", "checks", "exceptions"):
        cursor, page = cursor_at(queue, DEEP_PAGE)
        depth[queue] = page
        url = f"/review/queue/{queue}/"
        pages.append((f"{queue} page 1", lambda _r, url=url: client.get(url)))
        pages.append((
            # A queue of one page (tiny smoke sets) gets its first page twice, named apart.
            f"{queue} page {page}" if page > 1 else f"{queue} page 1, again",
            lambda _r, url=url, c=cursor: client.get(url, {"after": c} if c else {}),
        ))  # fmt: skip
    cursor, page = cursor_at("fields", DEEP_PAGE)
    pages.append((
        f"fields page {page}, htmx partial",
        lambda _r: client.get("/review/queue/fields/", {"after": cursor}, HTTP_HX_REQUEST="true"),
    ))  # fmt: skip
    pages.append((
        "fields, name filter",
        lambda _r: client.get("/review/queue/fields/", {"name": "customer_name"}),
    ))  # fmt: skip
    pages.append(("nav counts", lambda _r: client.get("/review/counts/")))
    flows = list(
        ReviewItem.objects.open().in_queue("fields").order_by("-id").values_list("flow_id", flat=True)[:400]
    )  # fmt: skip
    flows = list(dict.fromkeys(flows))
    pages.append((
        "flow review page (claims it)",
        lambda run: client.get(f"/review/flows/{flows[run % len(flows)]}/"),
    ))  # fmt: skip
    return pages, depth


def reviewer_client():
    from django.contrib.auth.models import Group, User
    from django.test import Client

    user, _ = User.objects.get_or_create(username="perf-rita")
    user.groups.add(Group.objects.get(name="reviewer"))
    client = Client()
    client.force_login(user)
    return client


def explain(results: dict[str, dict]) -> list[str]:
    """EXPLAIN ANALYZE of the queue queries exactly as the requests sent them."""
    from django.db import connection

    lines = []
    for label, r in results.items():
        if not label.startswith(("fields page", "checks page", "exceptions page")):
            continue
        for sql in r["sqls"]:
            if "review_reviewitem" not in sql or not sql.lstrip().startswith("SELECT"):
                continue
            counts = sql.count("COUNT(")
            kind = (
                "rows"
                if not counts
                else "capped count"
                if counts == 1
                else f"{counts} capped counts (nav)"
            )
            with connection.cursor() as cur:
                cur.execute("EXPLAIN (ANALYZE, COSTS OFF, BUFFERS) " + sql)
                plan = [row[0] for row in cur.fetchall()]
            lines.append(f"-- {label}, {kind}:")
            shown = [
                p for p in plan
                if "Buffers" not in p and not p.startswith("Planning:")
                and "Cache" not in p and "Hits:" not in p
            ]  # fmt: skip
            timing = [p for p in shown if p.startswith(("Planning Time", "Execution Time"))]
            shown = [p for p in shown if p not in timing]
            lines.extend("   " + p for p in shown[:14])
            if len(shown) > 14:
                lines.append(f"   ... ({len(shown) - 14} more plan lines)")
            lines.extend("   " + p for p in timing)
    return lines


def main(argv=None) -> None:
    args = parse_args(argv)
    small_n = max(300, args.flows // 100)
    big_url = perfkit.ensure_database(args.database_url, args.db_name, fresh=args.repopulate)
    small_url = perfkit.ensure_database(args.database_url, args.db_name + "_small", fresh=args.repopulate)  # fmt: skip
    perfkit.setup_django(small_url)
    print(f"queue bench: {args.flows:,} flows; {perfkit.loadavg()}")

    results = {}
    for url, n in ((small_url, small_n), (big_url, args.flows)):
        use_database(url, n, args.repopulate)
        from atlas_review.flows.models import CrossCheck, ExtractedField
        from atlas_review.review.models import FlowReview

        FlowReview.objects.update(claimed_by=None, claimed_at=None, claim_expires_at=None)
        client = reviewer_client()
        pages, depth = page_set(client)
        results[n] = measure(client, pages, args.runs)
        results[n]["_depth"] = depth
        results[n]["_sizes"] = (ExtractedField.objects.count(), CrossCheck.objects.count())

    big, small = results[args.flows], results[small_n]
    fields_n, checks_n = big.pop("_sizes")
    small_sizes = small.pop("_sizes")
    depth = big.pop("_depth")
    small.pop("_depth")
    print(
        f"\nlarge set: {fields_n:,} fields, {checks_n:,} cross-checks; small set: "
        f"{small_sizes[0]:,} fields, {small_sizes[1]:,} cross-checks; {args.runs} runs per page"
    )
    print(
        f"\n{'page':32} {'p50 ms':>7} {'p95 ms':>7} {'CPU ms':>7} {'small p50':>9} "
        f"{'small CPU':>9} {'queries':>7} {'small':>5} {'COUNTs':>6} {'unbounded':>9}"
    )
    # Both sets ran the same list of pages, in the same order (their deep pages differ).
    twin = dict(zip(big, small.values(), strict=True))
    for label, r in big.items():
        s = twin[label]
        print(
            f"{label:32} {r['p50']:7.1f} {r['p95']:7.1f} {r['cpu50']:7.1f} "
            f"{s.get('p50', -1):9.1f} {s.get('cpu50', -1):9.1f} {r['queries']:7d} {s.get('queries', -1):5d} "
            f"{r['counts']:6d} {r['unbounded']:9d}"
        )
    print(
        "(CPU ms: this process's CPU time per request, median: what load on the shared machine "
        "cannot inflate; the small set was measured at another moment, so compare CPU, not wall)"
    )
    print("\nEXPLAIN ANALYZE of the queue queries as the requests sent them (large set):")
    plan = explain(big)
    print("\n".join(plan))

    fig = perfkit.Figures(f"queue figures at {fields_n:,} fields / {checks_n:,} cross-checks")
    worst = max(big.items(), key=lambda kv: kv[1]["p95"])
    for label, r in big.items():
        s = twin[label]
        fig.add(
            f"{label}: p95 ms", f"{r['p95']:.1f}",
            f"p50 {r['p50']:.1f}, CPU {r['cpu50']:.1f}; 1/100 data CPU {s.get('cpu50', -1):.1f}",
            "< 50", r["p95"] < 50,
        )  # fmt: skip
    for queue in ("fields", "checks", "exceptions"):
        deep_label = (
            f"{queue} page {depth[queue]}" if depth[queue] > 1 else f"{queue} page 1, again"
        )
        first, deep = big[f"{queue} page 1"], big[deep_label]
        ratio = deep["p50"] / first["p50"]
        fig.add(
            f"{queue}: page {depth[queue]} / page 1 (p50)", f"{ratio:.2f}x",
            f"{deep['p50']:.1f} vs {first['p50']:.1f} ms", "<= 1.5x", ratio <= 1.5,
        )  # fmt: skip
    unbounded = sum(r["unbounded"] for r in big.values())
    fig.add("unbounded COUNT(*) per request", str(unbounded), f"{sum(r['counts'] for r in big.values())} capped counts", "0", unbounded == 0)  # fmt: skip
    same = all(r["queries"] == twin[label]["queries"] for label, r in big.items())
    fig.add("queries per page, large vs small set", "same" if same else "differs", f"{small_n:,} vs {args.flows:,} flows", "same", same)  # fmt: skip
    seq = [line for line in plan if re.search(r"Seq Scan on (review_|flows_)", line)]
    fig.add("queue queries on indexes", "yes" if not seq else f"{len(seq)} seq scans", "EXPLAIN above", "index scans", not seq)  # fmt: skip
    fig.print()
    print(f"slowest page: {worst[0]} p95 {worst[1]['p95']:.1f} ms")
    if args.drop:
        from django.db import connections

        connections.close_all()
        perfkit.drop_database(args.database_url, args.db_name)
        perfkit.drop_database(args.database_url, args.db_name + "_small")


if __name__ == "__main__":
    main()
