"""Review pages on a large generated data set: queries per page and server time.

    .venv/bin/python bench/review_bench.py              # 20k flows, 200k fields
    .venv/bin/python bench/review_bench.py -n 100000    # 1M fields
    .venv/bin/python bench/review_bench.py --small      # 1k flows: a smoke run

1. Creates (or reuses) the database `review_bench` on the server of DATABASE_URL, migrates
   it, and unless it already holds this data set loads it with bulk_create: N flows with 2
   documents of 5 fields each (10 fields per flow, confidences spread so about a third are
   below 0.80, some blank, 1 document in 24 with an error_code) and 2 cross-checks (similarity
   40..100).
2. Runs the real flagging (`flagging.flag_flow`, the code ingest calls) over every flow and
   reports its time per flow. That fills the queue.
3. Requests each page through Django's test client (the whole stack: middleware, session,
   permissions, templates) as a reviewer, and reports queries per page and server time
   (p50 / p95 over the runs): queue first page, a deep page (keyset cursor in the middle of
   the queue), filtered pages, the htmx partial, the nav counts, the flow review page, an
   htmx decision.
4. Prints EXPLAIN ANALYZE of the queue's row query, first and deep page.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import perfkit

ROOT = perfkit.ROOT


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--flows", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=30, help="timed requests per page")
    parser.add_argument("--small", action="store_true", help="a smoke run: 1k flows")
    parser.add_argument(
        "--database-url",
        default=os.getenv("DATABASE_URL", perfkit.DEFAULT_SERVER),
    )
    parser.add_argument("--db-name", default="review_bench")
    parser.add_argument("--repopulate", action="store_true")
    parser.add_argument(
        "--inflate",
        type=int,
        default=0,
        metavar="K",
        help="copy every review item K more times (SQL), to see the queue at 1M+ items",
    )
    args = parser.parse_args(argv)
    if args.small:
        args.flows, args.runs = min(args.flows, 1000), min(args.runs, 10)
    return args


def setup_django(args) -> None:
    url = perfkit.ensure_database(args.database_url, args.db_name, fresh=False)
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("SECRET_KEY", "bench-only-secret-key-0123456789-abcdefghij")
    os.environ.update(
        DEBUG="False", TESTING="True", SECURE_SSL_REDIRECT="False", SECURE_COOKIES="False",
        ALLOWED_HOSTS="testserver,localhost", AXES_ENABLED="False", LOG_LEVEL="WARNING",
    )  # fmt: skip
    os.environ["DJANGO_SETTINGS_MODULE"] = "atlas_review.settings"
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def populate(args) -> None:
    from django.db import connection, transaction
    from django.utils import timezone

    from atlas_review.flows.models import CrossCheck, Document, ExtractedField, Flow, SyncState

    marker = f"bench-{args.flows}"
    if not args.repopulate and Flow.objects.filter(application_id=marker).exists():
        print(f"data set present ({args.flows} flows)")
        return
    with connection.cursor() as cursor:
        # TRUNCATE fires no row trigger: the trail's append-only guard stays in place.
        cursor.execute(
            "TRUNCATE review_decisionevent, review_decision, review_reviewitem, review_flowreview, "
            "flows_extractedfield, flows_crosscheck, flows_document, flows_upload, flows_payload, "
            "flows_flow RESTART IDENTITY CASCADE"
        )

    r = random.Random(7)
    now = timezone.now()
    names = {
        "INVOICE": ["customer_name", "invoice_number", "total_invoice_amount", "invoice_date", "dealer_gst"],
        "DELIVERY_ORDER": ["customer_name", "customer_delivery_address", "dealer_name", "loan_amount", "do_date"],
    }  # fmt: skip
    products = ["PROD_CDL", "POC_CDL", "LOAN_APP"]
    started = time.perf_counter()
    batch = 2000
    for start in range(0, args.flows, batch):
        count = min(batch, args.flows - start)
        with transaction.atomic():
            flows = Flow.objects.bulk_create(
                Flow(
                    flow_uuid=f"bench-{start + i:07d}",
                    application_id=marker if start + i == 0 else f"APP-{start + i:07d}",
                    product_type=r.choice(products),
                    sync_state=SyncState.DONE,
                    master_status="SUCCESS",
                    results_as_of=now,
                )
                for i in range(count)
            )
            docs = Document.objects.bulk_create(
                Document(
                    flow=flow,
                    key=f"pos:{p}",
                    position=p,
                    document_id=f"D{p}",
                    file_url=f"https://files.example.com/{flow.application_id}-{t.lower()}.svg",
                    document_type=t,
                    error_code="INVALID_DOC" if r.random() < 1 / 24 else "",
                    error_reason="blurred",
                )
                for flow in flows
                for p, t in enumerate(names)
            )
            fields = []
            for doc in docs:
                for pos, name in enumerate(names[doc.document_type]):
                    x = r.random()
                    confidence = 0.0 if x < 0.05 else round(r.uniform(0.3, 0.79), 2) if x < 0.35 else round(r.uniform(0.8, 1), 2)  # fmt: skip
                    value = "" if x < 0.03 else f"{name}-{doc.pk}"
                    fields.append(
                        ExtractedField(
                            document=doc,
                            flow_id=doc.flow_id,
                            document_type=doc.document_type,
                            name=name,
                            position=pos,
                            value=value,
                            confidence=confidence,
                        )
                    )
            ExtractedField.objects.bulk_create(fields, batch_size=5000)
            CrossCheck.objects.bulk_create(
                CrossCheck(
                    flow=flow,
                    key=f"{n}|k",
                    position=p,
                    name=n,
                    source_doc="DELIVERY_ORDER",
                    source_field_name=n.lower(),
                    source_value=f"12 MG Road, Block {flow.pk}",
                    target_doc="INVOICE",
                    target_field_name=n.lower(),
                    target_value=f"12 M.G. Road Blk {flow.pk}",
                    similarity=r.randint(40, 100),
                )
                for flow in flows
                for p, n in enumerate(["DEALER_ADDRESS", "CUSTOMER_NAME"])
            )
        print(f"\r  loaded {start + count} flows", end="", flush=True)
    print(
        f"\nloaded {args.flows} flows, {args.flows * 10} fields in {time.perf_counter() - started:.0f}s"
    )

    from atlas_review.review import flagging

    config = flagging.Config.load()
    started = time.perf_counter()
    for i, flow in enumerate(Flow.objects.order_by("pk").iterator(chunk_size=1000)):
        flagging.flag_flow(flow, config=config)
        if i % 1000 == 0:
            print(f"\r  flagged {i} flows", end="", flush=True)
    took = time.perf_counter() - started
    print(
        f"\nflag_flow: {args.flows} flows in {took:.0f}s = {1000 * took / args.flows:.1f} ms per flow"
    )
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE review_reviewitem")
        cursor.execute("VACUUM ANALYZE flows_extractedfield")


def inflate(k: int) -> None:
    """K more copies of every item (same flows and fields, new keys and ages): the queue
    pages then read an index of (K+1) times the rows, which is what they must not notice."""
    from django.db import connection

    from atlas_review.review.models import ReviewItem

    if k <= 0 or ReviewItem.objects.filter(key__contains="#copy").exists():
        return
    started = time.perf_counter()
    columns = (
        "flow_id, kind, queue, status, rule, reason, score, threshold, priority, field_id, "
        "cross_check_id, document_id, product_type, document_type, name, updated_at"
    )
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO review_reviewitem (key, created_at, {columns}) "
            f"SELECT key || '#copy' || g, created_at - g * interval '1 second', {columns} "
            "FROM review_reviewitem, generate_series(1, %s) AS g",
            [k],
        )
        cursor.execute("VACUUM ANALYZE review_reviewitem")
    print(f"inflated the review items {k + 1}x in {time.perf_counter() - started:.0f}s")


def measure(args) -> None:
    from django.contrib.auth.models import Group, User
    from django.db import connection
    from django.test import Client

    from atlas_review.flows.models import ExtractedField
    from atlas_review.review import queries
    from atlas_review.review.models import FlowReview, ReviewItem

    print(
        f"\ndata: {ExtractedField.objects.count():,} fields, "
        f"{ReviewItem.objects.count():,} review items, "
        f"{ReviewItem.objects.open().filter(queue='fields').count():,} open in the field queue"
    )
    FlowReview.objects.update(claimed_by=None, claim_expires_at=None, closed_at=None)
    user, _ = User.objects.get_or_create(username="bench-rita")
    user.groups.add(Group.objects.get(name="reviewer"))
    client = Client()
    client.force_login(user)

    middle = ReviewItem.objects.open().in_queue("fields").queue_order()
    total = middle.count()
    deep = queries.encode_cursor(middle[total // 2])
    flow_ids = list(
        ReviewItem.objects.open()
        .in_queue("fields")
        .values_list("flow_id", flat=True)[: args.runs * 3]
    )
    pages = [
        ("queue: fields, first page", lambda: client.get("/review/queue/fields/")),
        (f"queue: fields, deep page (item {total // 2:,})", lambda: client.get(f"/review/queue/fields/?after={deep}")),
        ("queue: fields, name=customer_name", lambda: client.get("/review/queue/fields/?name=customer_name")),
        ("queue: fields, type+product+unclaimed", lambda: client.get("/review/queue/fields/?document_type=INVOICE&product_type=LOAN_APP&assignee=unclaimed")),
        ("queue: fields, older than 7 days", lambda: client.get("/review/queue/fields/?age=7d")),
        ("queue: checks, htmx partial", lambda: client.get("/review/queue/checks/", HTTP_HX_REQUEST="true")),
        ("nav counts (4 capped counts)", lambda: client.get("/review/counts/")),
    ]  # fmt: skip
    print(f"\n{'page':48} {'queries':>7} {'p50 ms':>8} {'p95 ms':>8}")
    for label, fn in pages:
        assert fn().status_code == 200, label
        p50, p95, n = perfkit.timed(fn, args.runs)
        print(f"{label:48} {n:7d} {p50:8.1f} {p95:8.1f}")

    it = iter(flow_ids)
    p50, p95, n = perfkit.timed(lambda: client.get(f"/review/flows/{next(it)}/"), args.runs)
    print(f"{'flow review page (claims the flow)':48} {n:7d} {p50:8.1f} {p95:8.1f}")

    mine = [f for f in flow_ids if FlowReview.objects.filter(pk=f, claimed_by=user).exists()]
    todo = iter(
        list(ReviewItem.objects.open().filter(flow_id__in=mine).exclude(kind__in=["qa_sample", "sync_failed"]).values_list("flow_id", "pk")[: args.runs + 1])
    )  # fmt: skip

    def decide():
        flow_id, item_id = next(todo)
        response = client.post(f"/review/flows/{flow_id}/items/{item_id}/decide/", {"action": "accept"}, HTTP_HX_REQUEST="true")  # fmt: skip
        assert response.status_code == 200, response.content[:300]

    p50, p95, n = perfkit.timed(decide, min(args.runs, 20))
    print(f"{'decide (htmx POST, redraws the item)':48} {n:7d} {p50:8.1f} {p95:8.1f}")

    print("\nEXPLAIN ANALYZE, queue rows (first page, then deep page):")
    for cursor_value in (None, deep):
        qs = queries.after(
            ReviewItem.objects.open().in_queue("fields"), queries.decode_cursor(cursor_value)
        ).queue_order()[:51]
        sql, params = qs.query.sql_with_params()
        with connection.cursor() as c:
            c.execute("EXPLAIN (ANALYZE, COSTS OFF) " + sql, params)
            print("\n".join("   " + row[0] for row in c.fetchall()[:6]))


def main(argv=None) -> None:
    args = parse_args(argv)
    setup_django(args)
    populate(args)
    inflate(args.inflate)
    measure(args)


if __name__ == "__main__":
    main()
