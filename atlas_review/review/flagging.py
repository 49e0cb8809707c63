"""Which items need a human: the rules, and `flag_flow` which keeps a flow's queue items in
step with Atlas's data.

`flag_flow` runs inside the ingest transaction (flows.ingest.results_applied), when a flow's
sync fails, and again for every unclosed flow when thresholds change (tasks.reflag_open_flows).
It evaluates every rule over the flow's current rows and reconciles the ReviewItems: new
flags become open items, flags that no longer apply are cleared, and a decided item whose
Atlas value changed has its decision marked superseded and goes back to the queue.

A rule is a function `(FlowData) -> Iterable[Flag]`; `@rule` adds one to RULES. Flags with
the same key are merged into one item (a field both low-confidence and mandatory-but-empty
is one item with both reasons), so another app can add rules without touching this
module's logic.

Beyond Atlas's scores (the checks app): a field whose deterministic check failed (Aadhaar
checksum, PAN shape, a date in the future...) is flagged whatever its confidence, the check
named in the reason; an identifier also read in another application (reuse.find_reuse) is
its own high-priority item, one per (kind, other flow), on both flows. When an ingest
changes which flows this one shares identifiers with, `flag_flow(..., propagate=True)`
re-flags those flows in the same transaction, so both sides of a reuse appear (and clear)
together.

Cost at ingest: the checks receiver runs first and hands over the fields, check results
and reuse it just read, wrote and found (checks.services.checked_state), so flagging reads
only the documents, cross-checks, rules, review row and items, and writes items with one
INSERT and one UPDATE.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from atlas_review.checks import reuse as checks_reuse
from atlas_review.checks.masking import shown
from atlas_review.checks.services import (
    FailedCheck,
    checked_state,
    failed_checks_for_flow,
    failed_checks_for_flows,
)
from atlas_review.flows import bulk
from atlas_review.flows.models import (
    CrossCheck,
    Document,
    ExtractedField,
    Flow,
    SyncState,
)

from .models import (
    QUEUE_OF_KIND,
    Decision,
    DecisionEvent,
    EventKind,
    FlowReview,
    ItemStatus,
    Kind,
    MandatoryField,
    Priority,
    ReviewItem,
    Scope,
    Threshold,
)

SYNC_FAILED_STATES = (SyncState.FAILED, SyncState.GAVE_UP, SyncState.ERROR)

# Rule codes (ReviewItem.rule).
CONFIDENCE = "confidence"
MANDATORY_EMPTY = "mandatory_empty"
MANDATORY_MISSING = "mandatory_missing"
SIMILARITY = "similarity"
ERROR_CODE = "error_code"
SYNC = "sync_failed"
QA = "qa_sample"
CHANGED = "changed_after_decision"
VALIDATION = "validation"
REUSE = "reuse"

REUSE_PREFIX = "reuse:"


def reuse_key(kind: str, other_flow_id: int) -> str:
    return f"{REUSE_PREFIX}{kind}:{other_flow_id}"


def reuse_partner(key: str) -> int | None:
    """The other flow a reuse item links to ("reuse:<kind>:<flow id>"), else None."""
    if not key.startswith(REUSE_PREFIX):
        return None
    tail = key.rsplit(":", 1)[-1]
    return int(tail) if tail.isdigit() else None


@dataclass(frozen=True)
class Flag:
    key: str
    kind: str
    rule: str
    reason: str
    priority: int = Priority.NORMAL
    score: float | None = None
    threshold: float | None = None
    field_id: int | None = None
    check_id: int | None = None
    document_id: int | None = None
    document_type: str = ""
    name: str = ""

    def merge(self, other: Flag) -> Flag:
        """Two rules flagged the same item: keep both reasons, the higher priority, and the
        rule (and its score) of the more urgent flag."""
        first, second = (self, other) if self.priority <= other.priority else (other, self)
        return replace(
            first,
            reason=f"{first.reason}; {second.reason}",
            score=first.score if first.score is not None else second.score,
            threshold=first.threshold if first.threshold is not None else second.threshold,
        )


class Thresholds:
    """Threshold overrides resolved most specific first (see models.Threshold)."""

    def __init__(self, rows: Iterable[Threshold] = ()):
        self.confidence_rows: dict[tuple[str, str], float] = {}
        self.similarity_rows: dict[str, Threshold] = {}
        self._resolved: dict[tuple[str, str], float] = {}
        for row in rows:
            if row.scope == Scope.CONFIDENCE:
                self.confidence_rows[(row.document_type, row.field_name)] = row.value
            else:
                self.similarity_rows[row.check_name] = row

    @classmethod
    def load(cls) -> Thresholds:
        return cls(Threshold.objects.all())

    def confidence(self, document_type: str, field_name: str) -> float:
        # Asked once per field of every flow of a batch: resolved once per (type, name).
        found = self._resolved.get((document_type, field_name))
        if found is None:
            found = self._resolved[(document_type, field_name)] = self._confidence(
                document_type, field_name
            )
        return found

    def _confidence(self, document_type: str, field_name: str) -> float:
        rows = self.confidence_rows
        for key in ((document_type, field_name), (document_type, ""), ("", field_name), ("", "")):
            if key in rows:
                return rows[key]
        return settings.REVIEW_CONFIDENCE_THRESHOLD

    def similarity(self, check_name: str) -> tuple[float, float]:
        """(flag below, high priority below) for a cross-check."""
        row = self.similarity_rows.get(check_name) or self.similarity_rows.get("")
        if row is None:
            return settings.REVIEW_SIMILARITY_THRESHOLD, settings.REVIEW_SIMILARITY_HIGH_PRIORITY
        high = row.high_priority_below
        return row.value, settings.REVIEW_SIMILARITY_HIGH_PRIORITY if high is None else high


@dataclass(frozen=True)
class Config:
    """Everything administrators edit that the rules read; loaded once per batch of flows."""

    thresholds: Thresholds
    mandatory: dict[str, frozenset[str]]
    qa_percent: float

    @classmethod
    def load(cls) -> Config:
        mandatory: dict[str, set[str]] = {}
        for doc_type, name in MandatoryField.objects.values_list("document_type", "field_name"):
            mandatory.setdefault(doc_type, set()).add(name)
        return cls(
            thresholds=Thresholds.load(),
            mandatory={k: frozenset(v) for k, v in mandatory.items()},
            qa_percent=settings.REVIEW_QA_SAMPLE_PERCENT,
        )


@dataclass
class FlowData:
    flow: Flow
    config: Config
    documents: list[Document] = field(default_factory=list)
    fields: list[ExtractedField] = field(default_factory=list)
    checks: list[CrossCheck] = field(default_factory=list)
    failed_checks: list[FailedCheck] = field(default_factory=list)
    reuse: list[checks_reuse.ReuseAlert] = field(default_factory=list)

    @property
    def readable_documents(self) -> list[Document]:
        # Documents with an error_code are one exception item; their partial fields are
        # not flagged one by one as well.
        return [d for d in self.documents if not d.error_code]


Rule = Callable[[FlowData], Iterable[Flag]]
RULES: list[Rule] = []


def rule(fn: Rule) -> Rule:
    RULES.append(fn)
    return fn


def _score(value: float | None) -> str:
    return "none" if value is None else f"{value:.2f}"


def is_empty(value) -> bool:
    return value is None or (isinstance(value, str | list | dict) and not value)


# First of the field rules on purpose: on a field that is also low-confidence, the flags
# merge with the same priority and the first one's kind and rule lead, and a failed check is
# a certainty where a score is a guess.
@rule
def failed_checks(data: FlowData) -> Iterable[Flag]:
    readable = {d.pk for d in data.readable_documents}
    confidence = {f.pk: f.confidence for f in data.fields}
    for fc in data.failed_checks:
        if fc.document_id not in readable:
            continue
        yield Flag(
            key=f"field:{fc.field_id}", kind=Kind.VALIDATION, rule=VALIDATION,
            reason=f"check failed, {fc.label}: {fc.reason}", score=confidence.get(fc.field_id),
            field_id=fc.field_id, document_id=fc.document_id, document_type=fc.document_type,
            name=fc.field_name,
        )  # fmt: skip


@rule
def low_confidence(data: FlowData) -> Iterable[Flag]:
    readable = {d.pk for d in data.readable_documents}
    for f in data.fields:
        if f.document_id not in readable:
            continue
        threshold = data.config.thresholds.confidence(f.document_type, f.name)
        if f.confidence is not None and f.confidence >= threshold:
            continue
        subject = f"{f.document_type}.{f.name}"
        reason = (
            f"no confidence score for {subject}"
            if f.confidence is None
            else f"confidence {_score(f.confidence)} < {threshold:.2f} for {subject}"
        )
        yield Flag(
            key=f"field:{f.pk}", kind=Kind.FIELD, rule=CONFIDENCE, reason=reason,
            score=f.confidence, threshold=threshold, field_id=f.pk, document_id=f.document_id,
            document_type=f.document_type, name=f.name,
        )  # fmt: skip


@rule
def mandatory_fields(data: FlowData) -> Iterable[Flag]:
    by_document: dict[int, dict[str, ExtractedField]] = {}
    for f in data.fields:
        by_document.setdefault(f.document_id, {})[f.name] = f
    for doc in data.readable_documents:
        present = by_document.get(doc.pk, {})
        for name in sorted(data.config.mandatory.get(doc.document_type, ())):
            subject = f"{doc.document_type}.{name}"
            f = present.get(name)
            if f is None:
                yield Flag(
                    key=f"missing:{doc.pk}:{name}", kind=Kind.FIELD, rule=MANDATORY_MISSING,
                    reason=f"mandatory field {subject} is missing", document_id=doc.pk,
                    document_type=doc.document_type, name=name,
                )  # fmt: skip
            elif is_empty(f.value):
                yield Flag(
                    key=f"field:{f.pk}", kind=Kind.FIELD, rule=MANDATORY_EMPTY,
                    reason=f"mandatory field {subject} is empty", score=f.confidence,
                    field_id=f.pk, document_id=doc.pk, document_type=doc.document_type, name=name,
                )  # fmt: skip


@rule
def low_similarity(data: FlowData) -> Iterable[Flag]:
    for c in data.checks:
        threshold, high = data.config.thresholds.similarity(c.name)
        if c.similarity is not None and c.similarity >= threshold:
            continue
        urgent = c.similarity is None or c.similarity < high
        reason = (
            "no similarity score"
            if c.similarity is None
            else f"similarity {c.similarity:g} < {threshold:g}"
        )
        yield Flag(
            key=f"check:{c.pk}", kind=Kind.CROSS_CHECK, rule=SIMILARITY,
            reason=reason + (" (high priority)" if urgent else ""),
            priority=Priority.HIGH if urgent else Priority.NORMAL,
            score=c.similarity, threshold=threshold, check_id=c.pk, name=c.name,
        )  # fmt: skip


@rule
def document_errors(data: FlowData) -> Iterable[Flag]:
    for doc in data.documents:
        if doc.error_code:
            yield Flag(
                key=f"doc:{doc.pk}", kind=Kind.EXCEPTION, rule=ERROR_CODE,
                reason=f"{doc.error_code}: {doc.error_reason}" if doc.error_reason else doc.error_code,
                document_id=doc.pk, document_type=doc.document_type, name=doc.error_code,
            )  # fmt: skip


@rule
def reused_identifiers(data: FlowData) -> Iterable[Flag]:
    """One item per (identifier kind, other flow): a flow sharing its IMEI and its Aadhaar
    with another is two things to judge; an IMEI on the invoice and on the close-up is one."""
    fields = {f.pk: f for f in data.fields}
    grouped: dict[tuple[str, int], list[checks_reuse.ReuseAlert]] = {}
    for alert in data.reuse:
        grouped.setdefault((alert.kind, alert.other_flow_id), []).append(alert)
    for (kind, other_flow_id), alerts in grouped.items():
        field_id = min(fid for a in alerts for fid in a.field_ids)
        f = fields.get(field_id)
        values = ", ".join(sorted({a.shown_value for a in alerts}))  # Aadhaar, PAN masked
        yield Flag(
            key=reuse_key(kind, other_flow_id), kind=Kind.REUSE, rule=REUSE,
            reason=f"{alerts[0].kind_label} {values} also in application {alerts[0].other_application_id}",
            priority=Priority.HIGH, field_id=field_id,
            document_id=f.document_id if f else None, document_type=f.document_type if f else "",
            name=f.name if f else kind,
        )  # fmt: skip


@rule
def sync_failed(data: FlowData) -> Iterable[Flag]:
    flow = data.flow
    if flow.sync_state in SYNC_FAILED_STATES:
        detail = f": {flow.last_error}" if flow.last_error else ""
        yield Flag(
            key="sync", kind=Kind.SYNC_FAILED, rule=SYNC,
            reason=f"{flow.get_sync_state_display()}{detail}"[:1000], name=flow.sync_state,
        )  # fmt: skip


def in_qa_sample(flow: Flow, percent: float) -> bool:
    """Deterministic: the same flow is always in or out, and the share of flows in is
    `percent` (a hash of the flow's uuid, not a random draw, so re-runs agree)."""
    ident = flow.flow_uuid or f"pk:{flow.pk}"
    bucket = int.from_bytes(hashlib.sha256(f"qa:{ident}".encode()).digest()[:8]) % 10_000
    return bucket < round(percent * 100)


def evaluate(data: FlowData, rules: Iterable[Rule] | None = None) -> dict[str, Flag]:
    flags: dict[str, Flag] = {}
    for fn in RULES if rules is None else rules:  # RULES read now: apps add to it
        for flag in fn(data):
            flags[flag.key] = flags[flag.key].merge(flag) if flag.key in flags else flag
    return flags


def load(flow: Flow, config: Config, changes=None) -> FlowData:
    """The flow's current rows (3 queries), its failed checks (1) and reuse alerts (2). At
    ingest the checks receiver's hand-off on `changes` brings the fields, failed checks and
    reuse alerts: 2 queries in all (documents, cross-checks)."""
    checked = checked_state(changes, flow) if changes is not None else None
    if checked is not None:
        fields, failed = checked.fields, checked.failed_checks()
        alerts = checks_reuse.alerts_of(checked.reuse)
    else:
        fields = list(ExtractedField.objects.current().filter(flow=flow))
        failed, alerts = failed_checks_for_flow(flow), checks_reuse.reuse_alerts_for_flow(flow)
    return FlowData(
        flow=flow,
        config=config,
        documents=list(Document.objects.current().filter(flow=flow)),
        fields=fields,
        checks=list(CrossCheck.objects.current().filter(flow=flow)),
        failed_checks=failed,
        reuse=alerts,
    )


def load_many(flows: list[Flow], config: Config) -> dict[int, FlowData]:
    """load() for many flows: each table read once for all of them (6 queries)."""
    ids = [f.pk for f in flows]
    data = {f.pk: FlowData(flow=f, config=config) for f in flows}
    for doc in Document.objects.current().filter(flow_id__in=ids):
        data[doc.flow_id].documents.append(doc)
    for f in ExtractedField.objects.current().filter(flow_id__in=ids):
        data[f.flow_id].fields.append(f)
    for check in CrossCheck.objects.current().filter(flow_id__in=ids):
        data[check.flow_id].checks.append(check)
    for flow_id, failed in failed_checks_for_flows(ids).items():
        data[flow_id].failed_checks = failed
    for flow_id, alerts in checks_reuse.reuse_alerts_for_flows(flows).items():
        data[flow_id].reuse = alerts
    return data


@dataclass
class FlagResult:
    created: int = 0
    updated: int = 0
    cleared: int = 0
    superseded: int = 0
    reopened: bool = False
    # Flows this one gained or lost a reuse link with (re-flagged when propagating).
    partners: list[int] = field(default_factory=list)


_ITEM_ATTRS = (
    "kind", "queue", "rule", "reason", "score", "threshold", "priority", "field_id",
    "cross_check_id", "document_id", "document_type", "name", "product_type",
)  # fmt: skip


def _item_values(flag: Flag, product_type: str) -> dict:
    return {
        "kind": flag.kind,
        "queue": QUEUE_OF_KIND[flag.kind],
        "rule": flag.rule,
        "reason": flag.reason,
        "score": flag.score,
        "threshold": flag.threshold,
        "priority": flag.priority,
        "field_id": flag.field_id,
        "cross_check_id": flag.check_id,
        "document_id": flag.document_id,
        "document_type": flag.document_type,
        "name": flag.name,
        "product_type": product_type,
    }


def _apply(item: ReviewItem, flag: Flag, product_type: str) -> bool:
    """Copy a flag onto an item; True if anything changed."""
    values = _item_values(flag, product_type)
    changed = any(getattr(item, k) != v for k, v in values.items())
    for k, v in values.items():
        setattr(item, k, v)
    return changed


def _qa_flag(flow: Flow, config: Config) -> Flag | None:
    """The QA sample item of a flow nothing else flagged, if the flow is in the sample."""
    if flow.sync_state != SyncState.DONE or not in_qa_sample(flow, config.qa_percent):
        return None
    return Flag(
        key="qa", kind=Kind.QA_SAMPLE, rule=QA, priority=Priority.LOW,
        reason=f"QA sample ({config.qa_percent:g}% of flows nothing flagged)",
    )  # fmt: skip


class _Index:
    """The flow's current rows by id, for reading decided items' values (no scan per item)."""

    def __init__(self, data: FlowData):
        self.fields = {f.pk: f for f in data.fields}
        self.by_name = {(f.document_id, f.name): f for f in data.fields}
        self.checks = {c.pk: c for c in data.checks}
        self.documents = {d.pk: d for d in data.documents}


def current_snapshot(item: ReviewItem, data: FlowData, index: _Index | None = None):
    """(still there, Atlas's value now) for a decided item, in the shape of
    ReviewItem.atlas_snapshot, so it compares with Decision.atlas_value."""
    index = index or _Index(data)
    if item.key.startswith("missing:"):
        found = index.by_name.get((item.document_id, item.name))
        return found is None, None if found is None else found.value
    if item.field_id is not None:
        found = index.fields.get(item.field_id)
        return found is not None, None if found is None else found.value
    if item.cross_check_id is not None:
        c = index.checks.get(item.cross_check_id)
        return c is not None, None if c is None else {
            "source": c.source_value,
            "target": c.target_value,
        }
    if item.document_id is not None:
        d = index.documents.get(item.document_id)
        if d is None or not d.error_code:
            return False, None
        return True, {"error_code": d.error_code, "error_reason": d.error_reason}
    return True, None


def _check_of(item: ReviewItem, index: _Index) -> CrossCheck | None:
    if item.cross_check_id is None:
        return None
    # A withdrawn pair is not among the current rows: read it (rare) to mask its values.
    return index.checks.get(item.cross_check_id) or item.cross_check


def _lock_review(flow: Flow, *, likely_new: bool = False) -> tuple[FlowReview, bool]:
    """The flow's review row, locked: it serialises flagging with claims, decisions and
    closing. (review, created): a review created here has no items yet (items are only ever
    made for a flow that has its review row), which spares reading them. `likely_new` (a
    first delivery) tries the INSERT first; a row made meanwhile by a claim is then read."""
    if not likely_new:
        review = FlowReview.objects.select_for_update().filter(flow=flow).first()
        if review is not None:
            return review, False
    try:
        with transaction.atomic():
            return FlowReview.objects.create(flow=flow), True
    except IntegrityError:
        return FlowReview.objects.select_for_update().get(flow=flow), False


def _partners(keys: Iterable[str]) -> set[int]:
    return {p for p in map(reuse_partner, keys) if p is not None}


def flag_flow(
    flow: Flow, changes=None, *, config: Config | None = None, propagate: bool = False
) -> FlagResult:
    """Bring the flow's review items in line with its current data and the rules.

    `changes` (flows.ingest.Changes) carries the checks receiver's hand-off at ingest;
    superseding is decided by comparing each decision's snapshot of Atlas's value with the
    value now, which also catches changes a caller did not report.

    `propagate` (ingest): the flows this one gained or lost a reuse link with are flagged
    again too, in this transaction, each with its own review row locked after this one's.
    Two ingests that change the same pair of flows at the same moment could lock the two
    rows in opposite orders; PostgreSQL then aborts one and the journal retries it."""
    config = config or Config.load()
    now = timezone.now()
    # No savepoint: inside ingest an error rolls the whole delivery back anyway.
    with transaction.atomic(savepoint=False):
        # A first delivery creates, updates and withdraws nothing else.
        likely_new = (
            changes is not None and changes.created and not (changes.updated or changes.withdrawn)
        )
        review, created = _lock_review(flow, likely_new=bool(likely_new))
        data = load(flow, config, changes)
        items = [] if created else list(ReviewItem.objects.filter(flow=flow))
        # Only decided items need their decision (none on a first delivery: no query).
        decisions = (
            Decision.objects.filter(flow=flow, superseded=False).select_related("item")
            if any(i.status == ItemStatus.DECIDED for i in items)
            else []
        )
        writes = _ItemWrites()
        result = _reconcile(review, data, items, {d.item_id: d for d in decisions}, now, writes)
        writes.save(now)
        if propagate and result.partners:
            flag_flows(Flow.objects.filter(pk__in=result.partners), config=config, reuse_only=True)
    return result


def flag_flows(
    flows: Iterable[Flow], *, config: Config | None = None, reuse_only: bool = False
) -> dict[int, FlagResult]:
    """flag_flow for many flows at once (no hand-off, no propagation): the flows a reuse link
    changed on, re-flagging after thresholds change. Review rows locked in flow id order,
    every table read once for all of them, items written with one INSERT and one UPDATE.

    `reuse_only`: only the reuse items are brought in line (what another flow's ingest can
    change on these flows), reading only their sightings and the fields the reuse items
    point at, not every row of every flow: an identifier shared by dozens of applications
    re-flags all of them at each new one."""
    flows = sorted(flows, key=lambda f: f.pk)
    if not flows:
        return {}
    config = config or Config.load()
    now = timezone.now()
    ids = [f.pk for f in flows]
    with transaction.atomic(savepoint=False):
        reviews = {
            r.flow_id: r
            for r in FlowReview.objects.select_for_update().filter(flow_id__in=ids).order_by("pk")
        }
        for flow in flows:
            if flow.pk not in reviews:  # rare: a flow never flagged before
                reviews[flow.pk] = _lock_review(flow, likely_new=True)[0]
        items: dict[int, list[ReviewItem]] = {pk: [] for pk in ids}
        for item in ReviewItem.objects.filter(flow_id__in=ids):
            items[item.flow_id].append(item)
        data = _load_reuse(flows, config, items) if reuse_only else load_many(flows, config)
        decided = [
            pk for pk, rows in items.items()
            if any(i.status == ItemStatus.DECIDED and (not reuse_only or i.kind == Kind.REUSE) for i in rows)
        ]  # fmt: skip
        decisions = {
            d.item_id: d
            for d in Decision.objects.filter(flow_id__in=decided, superseded=False).select_related("item")
        } if decided else {}  # fmt: skip
        writes = _ItemWrites()
        # Reuse only: the other items stay as they are (nothing they follow changed), but
        # the QA sample depends on all of them, so it is reconciled too.
        only = {"rules": (reused_identifiers,), "kinds": {Kind.REUSE, Kind.QA_SAMPLE}}
        results = {
            flow.pk: _reconcile(
                reviews[flow.pk], data[flow.pk], items[flow.pk], decisions, now, writes,
                **(only if reuse_only else {}),
            )
            for flow in flows
        }  # fmt: skip
        writes.save(now)
    return results


def _load_reuse(flows: list[Flow], config: Config, items: dict[int, list]) -> dict[int, FlowData]:
    """What the reuse rule and the reconciling of reuse items read: the flows' reuse alerts
    and the fields they (and the existing reuse items) point at (3 queries)."""
    alerts = checks_reuse.reuse_alerts_for_flows(flows)
    field_ids = {fid for found in alerts.values() for a in found for fid in a.field_ids}
    field_ids |= {i.field_id for rows in items.values() for i in rows if i.field_id}
    fields: dict[int, list[ExtractedField]] = {f.pk: [] for f in flows}
    for f in ExtractedField.objects.current().filter(pk__in=field_ids):
        fields[f.flow_id].append(f)
    return {
        f.pk: FlowData(flow=f, config=config, fields=fields[f.pk], reuse=alerts[f.pk])
        for f in flows
    }


@dataclass
class _ItemWrites:
    """What reconciling one or many flows writes, each table written once."""

    create: list[ReviewItem] = field(default_factory=list)
    update: list[ReviewItem] = field(default_factory=list)
    events: list[DecisionEvent] = field(default_factory=list)
    superseded: list[int] = field(default_factory=list)  # decision ids
    reopened: list[int] = field(default_factory=list)  # review (flow) ids

    def save(self, now) -> None:
        if self.superseded:
            Decision.objects.filter(pk__in=self.superseded).update(
                superseded=True, superseded_at=now
            )
        if self.create:
            ReviewItem.objects.bulk_create(self.create, batch_size=1000)
        if self.update:
            fields = [*_ITEM_ATTRS, "status", "updated_at"]
            bulk.update(ReviewItem, self.update, fields)
        if self.reopened:
            FlowReview.objects.filter(pk__in=self.reopened).update(
                closed_at=None, closed_by=None, outcome="", outcome_comment="", updated_at=now
            )
        if self.events:
            DecisionEvent.objects.bulk_create(self.events, batch_size=1000)


def _reconcile(
    review: FlowReview,
    data: FlowData,
    item_rows,
    decisions: dict,
    now,
    writes: _ItemWrites,
    *,
    rules: Iterable[Rule] | None = None,
    kinds: set[str] | None = None,
) -> FlagResult:
    """Compare what the rules want for one flow with its items; add the difference to
    `writes` (decisions whose value changed superseded, a closed flow reopened). With a
    subset of `rules`, `kinds` names the items they (and the QA sample) own: only those are
    reconciled, the QA sample still judged on every item."""
    flow, config = data.flow, data.config
    result = FlagResult()
    wanted = evaluate(data, rules)
    items = {i.key: i for i in item_rows if kinds is None or i.kind in kinds}
    linked_before = _partners(k for k, i in items.items() if i.status != ItemStatus.CLEARED)
    linked_now = _partners(wanted)
    if not wanted and not any(i.kind != Kind.QA_SAMPLE for i in item_rows):
        qa = _qa_flag(flow, config)
        if qa is not None:
            wanted["qa"] = qa

    index = _Index(data)
    to_create, to_update = [], []
    for key, item in items.items():
        flag = wanted.pop(key, None)
        if item.status == ItemStatus.DECIDED:
            decision = decisions.get(item.pk)
            exists, value = current_snapshot(item, data, index)
            if decision is None or (exists and value == decision.atlas_value):
                continue
            writes.superseded.append(decision.pk)
            writes.events.append(
                _superseded_event(decision, item, value, now, _check_of(item, index))
            )
            result.superseded += 1
            if exists:
                note = "Atlas changed the value after it was decided"
                flag = (
                    replace(flag, reason=f"{note}; {flag.reason}", priority=Priority.HIGH)
                    if flag
                    else replace(_flag_of(item), rule=CHANGED, reason=note, priority=Priority.HIGH)
                )
                _apply(item, flag, flow.product_type)
                item.status = ItemStatus.OPEN
            else:
                item.status = ItemStatus.CLEARED
        elif item.status == ItemStatus.CLOSED:
            continue  # a flow-level item settled by an outcome
        elif flag is not None:
            changed = _apply(item, flag, flow.product_type)
            if item.status == ItemStatus.CLEARED:
                item.status = ItemStatus.OPEN
            elif not changed:
                continue
            result.updated += 1
        elif item.status == ItemStatus.OPEN:
            item.status = ItemStatus.CLEARED
            result.cleared += 1
        else:
            continue
        item.updated_at = now
        to_update.append(item)

    for flag in wanted.values():
        item = ReviewItem(flow=flow, key=flag.key, status=ItemStatus.OPEN, created_at=now)
        _apply(item, flag, flow.product_type)
        to_create.append(item)
    result.created = len(to_create)
    writes.create.extend(to_create)
    writes.update.extend(to_update)

    opened = [*to_create, *(i for i in to_update if i.status == ItemStatus.OPEN)]
    if review.is_closed and opened:
        writes.events.append(
            DecisionEvent(
                kind=EventKind.REOPENED,
                flow=flow,
                at=now,
                outcome=review.outcome,
                comment=_reopen_note(opened),
                data={"previous_outcome": review.outcome},
            )
        )
        writes.reopened.append(review.pk)
        result.reopened = True
    result.partners = sorted(linked_before ^ linked_now)
    return result


def _reopen_note(opened: list[ReviewItem]) -> str:
    if all(i.kind == Kind.REUSE for i in opened):
        return (
            "Another application shares an identifier with this flow: "
            + "; ".join(i.reason for i in opened)[:1500]
        )
    return "Atlas delivered new or changed data after the flow was closed."


def _flag_of(item: ReviewItem) -> Flag:
    return Flag(
        key=item.key, kind=item.kind, rule=item.rule, reason=item.reason,
        priority=item.priority, score=item.score, threshold=item.threshold,
        field_id=item.field_id, check_id=item.cross_check_id, document_id=item.document_id,
        document_type=item.document_type, name=item.name,
    )  # fmt: skip


def _superseded_event(
    decision: Decision, item: ReviewItem, value, now, check: CrossCheck | None
) -> DecisionEvent:
    # The comment is read on pages: values in it are masked; atlas_value and new_value keep
    # the real ones for the audit trail.
    def shown_value(v) -> str:
        return shown(v, document_type=item.document_type, field_name=item.name, check=check)

    return DecisionEvent(
        kind=EventKind.SUPERSEDED, at=now, flow_id=item.flow_id, item=item, decision=decision,
        document_id=item.document_id, field_id=item.field_id, cross_check_id=item.cross_check_id,
        subject=item.subject, action=decision.action, atlas_value=decision.atlas_value,
        atlas_score=decision.atlas_score, new_value=value,
        comment=f"Atlas now says {shown_value(value)!r}; the decision was made on {shown_value(decision.atlas_value)!r}."[:2000],
    )  # fmt: skip


_ITEM_COLUMNS = (
    "flow_id", "key", "status", "created_at", "updated_at", "kind", "queue", "rule", "reason",
    "score", "threshold", "priority", "field_id", "cross_check_id", "document_id",
    "document_type", "name", "product_type",
)  # fmt: skip


def flag_first_deliveries(deliveries, *, config: Config | None = None) -> list[FlagResult]:
    """flag_flow for flows whose first results were just written (flows.ingest
    .results_created), all at once: their review rows made with one INSERT, the rules run
    over the rows ingest and the checks receiver hand over (no read back), every item
    written by one COPY. A flow that already had a review row (a claim or a failed sync
    came first) may have items: it takes flag_flow. Flows outside the batch that share an
    identifier with one of these are flagged again, as propagate does."""
    config = config or Config.load()
    now = timezone.now()
    flow_ids = [d.flow.pk for d in deliveries]
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO review_flowreview (flow_id, outcome, outcome_comment, created_at, updated_at)"
            " SELECT id, '', '', %s, %s FROM unnest(%s::bigint[]) AS id"
            " ON CONFLICT (flow_id) DO NOTHING RETURNING flow_id",
            [now, now, flow_ids],
        )
        new_reviews = {row[0] for row in cursor.fetchall()}
    rows, partners, results, later = [], set(), [], []
    for delivery in deliveries:
        flow = delivery.flow
        if flow.pk not in new_reviews:
            later.append(delivery)
            continue
        checked = checked_state(delivery.changes, flow)
        data = FlowData(
            flow=flow, config=config, documents=delivery.documents, fields=delivery.fields,
            checks=delivery.checks,
            failed_checks=checked.failed_checks() if checked else failed_checks_for_flow(flow),
            reuse=(
                checks_reuse.alerts_of(checked.reuse) if checked
                else checks_reuse.reuse_alerts_for_flow(flow)
            ),
        )  # fmt: skip
        wanted = evaluate(data)
        if not wanted and (qa := _qa_flag(flow, config)) is not None:
            wanted["qa"] = qa
        for flag in wanted.values():
            values = _item_values(flag, flow.product_type)
            values.update(
                flow_id=flow.pk, key=flag.key, status=ItemStatus.OPEN, created_at=now,
                updated_at=now,
            )  # fmt: skip
            rows.append(tuple(values[c] for c in _ITEM_COLUMNS))
        linked = _partners(wanted)
        partners |= linked
        results.append(FlagResult(created=len(wanted), partners=sorted(linked)))
    bulk.copy(ReviewItem, _ITEM_COLUMNS, rows)
    for delivery in later:
        results.append(flag_flow(delivery.flow, delivery.changes, config=config, propagate=True))
    others = Flow.objects.filter(pk__in=partners - set(flow_ids))
    flag_flows(others, config=config, reuse_only=True)
    return results


def on_results_created(sender, deliveries=(), **kwargs) -> None:
    """flows.ingest.results_created: first results, inside the ingest transaction; after
    the checks app's receiver, whose hand-off it reads."""
    flag_first_deliveries(deliveries)


def on_results_applied(sender, flow=None, batch=None, changes=None, **kwargs) -> None:
    """flows.ingest.results_applied: runs inside the ingest transaction, so the queue and
    Atlas's rows commit (or roll back) together. v1 batches have no flow to review. Runs
    after the checks app's receiver (INSTALLED_APPS order), whose results it reads."""
    if flow is not None:
        flag_flow(flow, changes, propagate=True)


def on_flow_saved(sender, instance: Flow, created=False, update_fields=None, **kwargs) -> None:
    """A flow whose sync failed goes to the exceptions queue."""
    if instance.sync_state in SYNC_FAILED_STATES and (
        update_fields is None or "sync_state" in update_fields
    ):
        flag_flow(instance)
