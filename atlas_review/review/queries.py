"""Reading the queues: filters that live in the URL, keyset pagination and capped counts.

Queue pages never use OFFSET or a full COUNT(*): a page is "the next N open items after
(priority, created_at, id)", read from reviewitem_open_queue_idx, and counts stop at
COUNT_CAP (shown as "1000+"), so both cost the same on a thousand items or ten million.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

from django.db import connection
from django.db.models import F, Prefetch, Q, QuerySet
from django.db.models.fields.tuple_lookups import Tuple, TupleGreaterThan
from django.utils import timezone

from .models import Decision, ItemStatus, Queue, ReviewItem

PAGE_SIZE = 50
COUNT_CAP = 1000

AGES = {"1h": timedelta(hours=1), "1d": timedelta(days=1), "7d": timedelta(days=7)}
ASSIGNEE_ME, ASSIGNEE_NONE = "me", "unclaimed"
STATUS_ALL = "all"


@dataclass(frozen=True)
class QueueFilters:
    """The filters of a queue page, parsed from (and written back to) its query string.
    Anything unknown is ignored rather than an error: URLs are shared and edited by hand."""

    product_type: str = ""
    document_type: str = ""
    name: str = ""
    status: str = ItemStatus.OPEN
    assignee: str = ""
    age: str = ""

    @classmethod
    def from_query(cls, query) -> QueueFilters:
        def text(key: str) -> str:
            return (query.get(key) or "").strip()[:128]

        status = text("status") or ItemStatus.OPEN
        if status != STATUS_ALL and status not in ItemStatus.values:
            status = ItemStatus.OPEN
        age = text("age")
        return cls(
            product_type=text("product_type"),
            document_type=text("document_type"),
            name=text("name"),
            status=status,
            assignee=text("assignee"),
            age=age if age in AGES else "",
        )

    def as_params(self) -> dict[str, str]:
        """Only what differs from the defaults, so URLs stay short."""
        default = QueueFilters()
        return {f.name: v for f in fields(self) if (v := getattr(self, f.name)) != getattr(default, f.name)}  # fmt: skip

    def querystring(self, **extra: str) -> str:
        params = {**self.as_params(), **{k: v for k, v in extra.items() if v}}
        return urlencode(params)

    @property
    def is_default(self) -> bool:
        return not self.as_params()

    def apply(self, items: QuerySet, user, *, see_all: bool, now: datetime | None = None):
        now = now or timezone.now()
        if self.status != STATUS_ALL:
            items = items.filter(status=self.status)
        if self.status != ItemStatus.OPEN and not see_all:
            # Reviewers see the open queue and their own work; supervisors and auditors
            # see everyone's.
            items = items.filter(decisions__author=user, decisions__superseded=False)
        if self.product_type:
            items = items.filter(product_type=self.product_type)
        if self.document_type:
            items = items.filter(document_type=self.document_type)
        if self.name:
            items = items.filter(name=self.name)
        if self.age:
            items = items.filter(created_at__lte=now - AGES[self.age])
        live_claim = Q(
            flow__review__claimed_by__isnull=False, flow__review__claim_expires_at__gt=now
        )
        if self.assignee == ASSIGNEE_ME:
            items = items.filter(live_claim, flow__review__claimed_by=user)
        elif self.assignee == ASSIGNEE_NONE:
            items = items.exclude(live_claim)
        elif self.assignee and see_all:
            items = items.filter(live_claim, flow__review__claimed_by__username=self.assignee)
        return items


def encode_cursor(item: ReviewItem) -> str:
    micros = int(item.created_at.timestamp() * 1_000_000)
    return f"{item.priority}.{micros}.{item.pk}"


def decode_cursor(raw: str | None) -> tuple[int, datetime, int] | None:
    try:
        priority, micros, pk = (int(part) for part in (raw or "").split("."))
        created = datetime.fromtimestamp(micros / 1_000_000, tz=UTC)
    except (ValueError, OverflowError, OSError):
        return None
    return priority, created, pk


def after(items: QuerySet, cursor: tuple[int, datetime, int] | None) -> QuerySet:
    """Rows after the cursor in queue order. A row comparison, (a, b, c) > (x, y, z), which
    PostgreSQL answers by starting the index scan at the cursor instead of skipping rows."""
    if cursor is None:
        return items
    return items.filter(TupleGreaterThan(Tuple(F("priority"), F("created_at"), F("id")), cursor))


@dataclass
class QueuePage:
    rows: list[ReviewItem]
    next_cursor: str | None
    count: int
    count_capped: bool


def queue_page(
    queue: str,
    filters: QueueFilters,
    user,
    *,
    see_all: bool,
    cursor: str | None = None,
    page_size: int | None = None,
) -> QueuePage:
    """One page of a queue: two queries (rows, capped count), three when decisions are
    shown, however many rows the queue holds."""
    page_size = page_size or PAGE_SIZE
    base = filters.apply(ReviewItem.objects.in_queue(queue), user, see_all=see_all)
    rows_qs = (
        after(base, decode_cursor(cursor))
        .select_related("flow", "flow__review", "flow__review__claimed_by", *_shown_with(queue))
        # A row shows the flow's application id and uuid and the holder's name: the rest
        # of those rows (JSON decoded per row, a password hash) is not read.
        .defer(*_NOT_SHOWN)
        .queue_order()
    )
    if filters.status != ItemStatus.OPEN:
        rows_qs = rows_qs.prefetch_related(current_decisions())
    rows = list(rows_qs[: page_size + 1])
    now = timezone.now()
    for item in rows:
        review = getattr(item.flow, "review", None)
        item.holder = review.holder(now) if review else None
        item.flow_closed = bool(review and review.is_closed)
    next_cursor = encode_cursor(rows[page_size - 1]) if len(rows) > page_size else None
    count = capped_count(base)
    return QueuePage(
        rows=rows[:page_size], next_cursor=next_cursor, count=min(count, COUNT_CAP),
        count_capped=count > COUNT_CAP,
    )  # fmt: skip


_NOT_SHOWN = (
    *(f"flow__{name}" for name in (
        "flow_params", "requested_files", "upload_status", "processing_status",
        "crosscheck_status", "last_error", "error_count", "results_hash", "results_as_of",
        "results_source", "processing_started_at", "last_synced_at", "next_sync_at",
    )),
    *(f"flow__review__claimed_by__{name}" for name in (
        "password", "last_login", "first_name", "last_name", "email", "date_joined",
    )),
)  # fmt: skip

# What each queue's rows show besides the flow: joining only that keeps the row query at
# four joins. With all three optional joins PostgreSQL spends 5-12 ms planning it (it tries
# every order of seven relations), more than running it on a million items.
_SHOWN_WITH = {
    Queue.FIELDS: ("field",),
    Queue.CHECKS: ("cross_check",),
    Queue.EXCEPTIONS: ("document",),
    Queue.QA: (),
}


def _shown_with(queue: str) -> tuple[str, ...]:
    return _SHOWN_WITH.get(queue, ("field", "cross_check", "document"))


def current_decisions() -> Prefetch:
    return Prefetch(
        "decisions",
        queryset=Decision.objects.filter(superseded=False).select_related("author", "reason"),
        to_attr="current_decisions",
    )


def capped_count(items: QuerySet, cap: int | None = None) -> int:
    """COUNT over at most cap+1 rows: an index-only scan that stops early."""
    return items.order_by().values("pk")[: (cap or COUNT_CAP) + 1].count()


def open_counts(cap: int | None = None) -> dict[str, int]:
    """Capped open-item counts of every queue, in one query (the nav shows them on every
    page). Each count is an index-only scan of reviewitem_open_queue_idx stopping at cap+1."""
    cap = cap or COUNT_CAP
    parts, params = [], []
    for queue in Queue.values:
        qs = ReviewItem.objects.open().in_queue(queue).order_by().values("pk")[: cap + 1]
        sql, qparams = qs.query.sql_with_params()
        # sql is Django's own compiled query with its params kept apart; queue is one of
        # our fixed choices.
        parts.append(f"(SELECT COUNT(*) FROM ({sql}) AS q_{queue})")  # noqa: S608
        params.extend(qparams)
    with connection.cursor() as cursor:
        cursor.execute("SELECT " + ", ".join(parts), params)
        values = cursor.fetchone()
    return dict(zip(Queue.values, values, strict=True))


def first_flows(
    queue: str, filters: QueueFilters, user, *, see_all: bool, exclude=(), limit: int = 25
) -> list[int]:
    """Flow ids at the head of a queue that `user` may claim, in queue order."""
    now = timezone.now()
    claimable = (
        Q(flow__review__claimed_by__isnull=True)
        | Q(flow__review__claim_expires_at__lte=now)
        | Q(flow__review__claimed_by=user)
    )
    open_filters = QueueFilters(**{**asdict(filters), "status": ItemStatus.OPEN})
    ids = (
        open_filters.apply(ReviewItem.objects.in_queue(queue), user, see_all=see_all, now=now)
        .filter(claimable, flow__review__closed_at__isnull=True)
        .exclude(flow_id__in=list(exclude))
        .queue_order()
        .values_list("flow_id", flat=True)[: limit * 4]
    )
    return list(dict.fromkeys(ids))[:limit]
