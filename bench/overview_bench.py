"""The supervisor overview on a large data set: queries per page and server time.

    .venv/bin/python bench/overview_bench.py             # 50k flows, 1M fields, ~400k decisions
    .venv/bin/python bench/overview_bench.py --small     # 2k flows: a smoke run
    .venv/bin/python bench/overview_bench.py -n 100000   # 2M fields

1. Creates (or reuses) the database `atlas_ovw_bench` on the server of DATABASE_URL (its own:
   other benchmarks' databases are never touched), migrates it, and unless it already holds
   this data set loads it with COPY: N flows created over the last 90 days, oldest first as
   in production (three product types), 5 documents of 4 fields each (3% of documents with an error code and no fields),
   2 cross-checks; the review items flagging would make (confidence < 0.80, similarity < 90,
   error documents); flows older than two days closed by one of 25 reviewers (a decision per
   item, a few changed, the outcome, the trail), the rest open, 20 of them claimed now.
2. Requests the overview through Django's test client (middleware, session, permissions,
   templates: the whole stack) as a supervisor and reports queries and server time (p50 /
   p95): the default page (last 14 days), the whole 90 days, a product type, the htmx
   partial, a threshold trial; first with every figure computed (OVERVIEW_CACHE_SECONDS=0),
   then with the history figures in the cache; then each chart alone (its CSV), to see where
   the time goes.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import perfkit

ROOT = perfkit.ROOT
DOCS = {
    "INVOICE": ("customer_name", "invoice_number", "total_invoice_amount", "imei_numbers"),
    "DELIVERY_ORDER": ("customer_name", "loan_amount", "dealer_address", "do_number"),
    "AADHAAR": ("aadhaar_number", "name", "dob", "address"),
    "PAN": ("pan_number", "name", "father_name", "dob"),
    "IMEI_CLOSEUP_IMAGE": ("imei_number", "brand", "model", "serial"),
}
ERRORS = (("UNRECOGNISED", 40), ("BLURRED", 30), ("PASSWORD_PROTECTED", 15), ("CORRUPT_FILE", 15))
PRODUCTS = ("PROD_CDL", "POC_CDL", "LOAN_APP")
AGENTS = 25
DAYS = 90


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--flows", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=10, help="timed requests per page")
    parser.add_argument("--small", action="store_true", help="a smoke run: 2k flows")
    parser.add_argument(
        "--database-url",
        default=os.getenv("DATABASE_URL", perfkit.DEFAULT_SERVER),
        help="any database on the target server; only its server is used",
    )
    parser.add_argument("--db-name", default="atlas_ovw_bench")
    parser.add_argument("--repopulate", action="store_true")
    args = parser.parse_args(argv)
    if args.small:
        args.flows, args.runs = min(args.flows, 2000), min(args.runs, 5)
    return args


def setup_django(args) -> None:
    url = perfkit.ensure_database(args.database_url, args.db_name, fresh=False)
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("SECRET_KEY", "overview-bench-only-secret-key-0123456789abcdef")
    os.environ.update(
        DEBUG="False", TESTING="True", SECURE_SSL_REDIRECT="False", SECURE_COOKIES="False",
        ALLOWED_HOSTS="testserver,localhost", AXES_ENABLED="False", LOG_LEVEL="WARNING",
        CELERY_BROKER_URL="",
    )  # fmt: skip
    os.environ["DJANGO_SETTINGS_MODULE"] = "atlas_review.settings"
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def populate(args) -> None:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.db import connection

    from atlas_review.flows.models import CrossCheck, Document, ExtractedField, Flow
    from atlas_review.review.models import (
        Decision,
        DecisionEvent,
        FlowReview,
        ReasonCode,
        ReviewItem,
    )

    marker = f"ovw-bench-{args.flows}"
    if not args.repopulate and Flow.objects.filter(application_id=marker).exists():
        print(f"data set present ({args.flows:,} flows)")
        return
    with connection.cursor() as cursor:
        # TRUNCATE fires no row trigger: the trail's append-only guard stays in place.
        cursor.execute(
            "TRUNCATE review_decisionevent, review_decision, review_reviewitem, "
            "review_flowreview, flows_extractedfield, flows_crosscheck, flows_document, "
            "flows_upload, flows_payload, flows_flow RESTART IDENTITY CASCADE"
        )
    User = get_user_model()
    reviewer = Group.objects.get(name="reviewer")
    agents = []
    for i in range(AGENTS):
        user, _ = User.objects.get_or_create(username=f"agent{i:02d}")
        user.groups.add(reviewer)
        agents.append((user.pk, user.username))
    reasons = [(r.pk, r.code, r.label) for r in ReasonCode.objects.all()]

    started = time.perf_counter()
    now = datetime.now(UTC)
    r = random.Random(11)
    # How good Atlas is per field (mean confidence) and how often reviewers overrule it.
    quality = {(t, n): r.uniform(0.72, 0.95) for t, names in DOCS.items() for n in names}
    models = (Flow, FlowReview, Document, ExtractedField, CrossCheck, ReviewItem, Decision,
              DecisionEvent)  # fmt: skip
    loaders = {m: perfkit.Loader(m, now) for m in models}
    rows: dict = {m: [] for m in models}
    ids = dict.fromkeys(("flow", "doc", "field", "check", "item", "decision", "event"), 0)
    open_flows: list[int] = []

    def flush() -> None:
        with connection.cursor() as cursor:
            raw = cursor.cursor  # psycopg's own cursor, for COPY
            for model in models:
                loaders[model].copy(raw, rows[model])
                rows[model].clear()

    # In production rows are written as things happen, so a table's physical order follows
    # time; flows are made oldest first to keep that (the planner's choices depend on it).
    times = sorted(now - timedelta(seconds=r.uniform(0, DAYS * 86400)) for _ in range(args.flows))
    for f, created in enumerate(times):
        flow_id = ids["flow"] = ids["flow"] + 1
        product = PRODUCTS[f % 3]
        rows[Flow].append({
            "id": flow_id, "flow_uuid": f"ovw-{f:08d}",
            "application_id": marker if f == 0 else f"APP-{f:08d}", "product_type": product,
            "upload_status": "SUCCESS", "processing_status": "SUCCESS",
            "crosscheck_status": "SUCCESS", "master_status": "SUCCESS", "sync_state": "DONE",
            "created_at": created, "updated_at": created,
        })  # fmt: skip
        flagged = []  # (kind, queue, key, refs, subject doc type, name, score)
        for position, (doc_type, names) in enumerate(DOCS.items()):
            doc_id = ids["doc"] = ids["doc"] + 1
            error = ""
            if r.random() < 0.03:
                error = r.choices([e for e, _w in ERRORS], [w for _e, w in ERRORS])[0]
            rows[Document].append({
                "id": doc_id, "flow_id": flow_id, "key": f"pos:{position}", "position": position,
                "document_id": f"D{position}", "document_type": "" if error == "UNRECOGNISED" else doc_type,
                "error_code": error, "error_reason": error.lower() if error else "",
                "created_at": created, "updated_at": created,
            })  # fmt: skip
            if error:
                flagged.append(("exception", "exceptions", f"doc:{doc_id}",
                                {"document_id": doc_id}, doc_type, error, None))  # fmt: skip
                continue
            for i, name in enumerate(names):
                field_id = ids["field"] = ids["field"] + 1
                confidence = None
                if r.random() > 0.01:
                    confidence = round(min(1.0, max(0.0, r.gauss(quality[(doc_type, name)], 0.14))), 2)  # fmt: skip
                rows[ExtractedField].append({
                    "id": field_id, "document_id": doc_id, "flow_id": flow_id,
                    "document_type": doc_type, "name": name, "position": i,
                    "value": f"{name}-{f}", "confidence": confidence,
                })  # fmt: skip
                if confidence is None or confidence < 0.8:
                    flagged.append(("field", "fields", f"field:{field_id}",
                                    {"field_id": field_id, "document_id": doc_id}, doc_type,
                                    name, confidence))  # fmt: skip
        for position, name in enumerate(("CUSTOMER_NAME", "DEALER_ADDRESS")):
            check_id = ids["check"] = ids["check"] + 1
            similarity = float(round(min(100, max(0, r.gauss(91 if position else 94, 9)))))
            rows[CrossCheck].append({
                "id": check_id, "flow_id": flow_id, "key": f"{name}|{position}",
                "position": position, "name": name, "source_doc": "INVOICE",
                "target_doc": "DELIVERY_ORDER", "similarity": similarity,
            })  # fmt: skip
            if similarity < 90:
                flagged.append(("cross_check", "checks", f"check:{check_id}",
                                {"cross_check_id": check_id}, "", name, similarity))  # fmt: skip

        age = now - created
        closed = age > timedelta(days=2) and r.random() < 0.97
        agent_id, agent_name = agents[r.randrange(AGENTS)]
        at = created + timedelta(minutes=r.uniform(10, 20 * 60))
        events = []
        for kind, queue, key, refs, doc_type, name, score in flagged:
            item_id = ids["item"] = ids["item"] + 1
            rows[ReviewItem].append({
                "id": item_id, "flow_id": flow_id, "key": key, "kind": kind, "queue": queue,
                "status": "decided" if closed else "open", "rule": "bench",
                "reason": f"{doc_type}.{name}", "score": score, "priority": 50,
                "product_type": product, "document_type": doc_type if kind != "cross_check" else "",
                "name": name, "created_at": created + timedelta(minutes=1), **refs,
            })  # fmt: skip
            if not closed:
                continue
            wrong = 1 - quality.get((doc_type, name), 0.85)
            u = r.random()
            action = "reject" if u < wrong * 0.6 else "correct" if u < wrong * 2.2 else "accept"
            reason = reasons[item_id % len(reasons)] if action == "reject" else None
            at += timedelta(seconds=max(5, r.gauss(45, 25)))
            decision_id = ids["decision"] = ids["decision"] + 1
            rows[Decision].append({
                "id": decision_id, "item_id": item_id, "flow_id": flow_id, "action": action,
                "corrected_value": "fixed" if action == "correct" else None,
                "reason_id": reason[0] if reason else None, "author_id": agent_id,
                "decided_at": at, "atlas_score": score, "superseded": False, "version": 1,
            })  # fmt: skip
            base = {"flow_id": flow_id, "item_id": item_id, "decision_id": decision_id,
                    "subject": f"{doc_type}.{name}", "atlas_score": score, "actor_id": agent_id,
                    "actor_username": agent_name, "action": action, "data": {}, **refs}  # fmt: skip
            events.append({**base, "at": at, "kind": "decided"})
            if r.random() < 0.02:
                at += timedelta(seconds=20)
                events.append({**base, "at": at, "kind": "changed"})
        if closed:
            at += timedelta(seconds=30)
            outcome = r.choices(("approved", "rejected", "needs_info"), (75, 15, 10))[0]
            events.append({"flow_id": flow_id, "at": at, "kind": "outcome", "outcome": outcome,
                           "actor_id": agent_id, "actor_username": agent_name, "data": {}})  # fmt: skip
            rows[FlowReview].append({"flow_id": flow_id, "outcome": outcome, "closed_at": at,
                                     "closed_by_id": agent_id, "created_at": created,
                                     "updated_at": at})  # fmt: skip
        else:
            rows[FlowReview].append({"flow_id": flow_id, "created_at": created, "updated_at": created})  # fmt: skip
            open_flows.append(flow_id)
        for e in events:
            e["id"] = ids["event"] = ids["event"] + 1
            rows[DecisionEvent].append(e)
        if len(rows[ExtractedField]) >= 100_000:
            flush()
            print(f"\r  loaded {f + 1:,} flows", end="", flush=True)
    flush()
    claimed = r.sample(open_flows, min(20, len(open_flows)))
    for i, flow_id in enumerate(claimed):
        agent_id = agents[i % AGENTS][0]
        FlowReview.objects.filter(pk=flow_id).update(
            claimed_by_id=agent_id,
            claimed_at=now - timedelta(minutes=r.uniform(1, 25)),
            claim_expires_at=now + timedelta(minutes=30),
        )
    with connection.cursor() as cursor:
        # Ids were given explicitly: move the sequences past them (FlowReview's key is the
        # flow's, it has none).
        for model in models:
            if model is not FlowReview:
                table = model._meta.db_table
                cursor.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                    f"(SELECT COALESCE(MAX(id), 1) FROM {table}))"
                )
        cursor.execute("VACUUM ANALYZE")
    print(
        f"\nloaded {args.flows:,} flows: {ids['field']:,} fields, {ids['item']:,} review items, "
        f"{ids['decision']:,} decisions, {ids['event']:,} trail events "
        f"in {time.perf_counter() - started:.0f}s"
    )


def measure(args) -> None:
    from django.conf import settings
    from django.contrib.auth.models import Group, User
    from django.test import Client
    from django.utils import timezone

    from atlas_review.flows.models import ExtractedField
    from atlas_review.overview import figures
    from atlas_review.review.models import Decision, DecisionEvent, ReviewItem

    print(
        f"\ndata: {ExtractedField.objects.count():,} fields, "
        f"{ReviewItem.objects.count():,} review items ({ReviewItem.objects.open().count():,} open), "
        f"{Decision.objects.count():,} decisions, {DecisionEvent.objects.count():,} trail events"
    )
    user, _ = User.objects.get_or_create(username="bench-lead")
    user.groups.add(Group.objects.get(name="supervisor"))
    client = Client()
    client.force_login(user)
    today = timezone.localdate()
    whole = f"date_from={today - timedelta(days=DAYS)}&date_to={today}"
    pages = [
        ("overview, last 14 days (default)", "", {}),
        (f"overview, the whole {DAYS} days", whole, {}),
        ("overview, 14 days, product LOAN_APP", "product_type=LOAN_APP", {}),
        ("htmx refresh (#figures partial)", "", {"HTTP_HX_REQUEST": "true"}),
        ("threshold trial INVOICE.customer_name 0.9", "t_confidence=0.9&t_document_type=INVOICE&t_field=customer_name", {}),
    ]  # fmt: skip
    for cache_seconds, title in ((0, "every figure computed (cache off)"),
                                 (120, "history figures from the cache (warm)")):  # fmt: skip
        settings.OVERVIEW_CACHE_SECONDS = cache_seconds
        print(f"\n{title:48} {'queries':>7} {'p50 ms':>8} {'p95 ms':>8}")
        for label, query, headers in pages:
            p50, p95, n = perfkit.timed(lambda q=query, h=headers: client.get(f"/overview/?{q}", **h), args.runs, expect_status=200)  # fmt: skip
            print(f"{label:48} {n:7d} {p50:8.1f} {p95:8.1f}")
    settings.OVERVIEW_CACHE_SECONDS = 0
    print(f"\none chart alone (its CSV, cache off), p50 ms, last 14 days / whole {DAYS} days:")
    for name in figures.CHARTS:
        cells = []
        for query in ("", whole + "&"):
            p50, _p95, n = perfkit.timed(lambda q=query, c=name: client.get(f"/overview/?{q}format=csv&chart={c}"), args.runs, expect_status=200)  # fmt: skip
            cells.append(f"{p50:8.1f}")
        print(f"  {name:46} {n:7d} {cells[0]} {cells[1]}")


def main(argv=None) -> None:
    args = parse_args(argv)
    setup_django(args)
    populate(args)
    measure(args)


if __name__ == "__main__":
    main()
