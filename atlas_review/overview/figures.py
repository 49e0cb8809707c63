"""The supervisor overview's figures: one aggregate query per chart, run in the database.

Each chart function takes the page's Inputs (filters, the threshold being tried, `now`) and
returns a Figure: its columns and rows (the numbers: the table under the chart and the CSV)
and its chart. Every query is a GROUP BY that returns one row per queue, reviewer and day,
field and bucket..., never one per item, so the page costs the same number of queries on a
thousand items or ten million; the tests hold it to that.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import reduce
from html import escape as esc
from operator import or_
from urllib.parse import urlencode

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.db.models import Count, F, Min, Q, QuerySet, Window
from django.db.models.functions import Lag
from django.utils import timezone
from django.utils.safestring import SafeString, mark_safe

from atlas_review.flows.models import CrossCheck, Document, ExtractedField
from atlas_review.review.flagging import Thresholds
from atlas_review.review.models import (
    Action,
    Decision,
    DecisionEvent,
    EventKind,
    FlowReview,
    Kind,
    Outcome,
    Queue,
    ReviewItem,
    Scope,
)

from . import charts, sql
from .charts import BarRow, HistogramRow, Segment
from .inputs import Inputs, ThresholdTrial

# Time per decision: a gap longer than this between two decisions of one reviewer is a
# break, a meeting or other work, not time spent on the second decision.
GAP_CAP_SECONDS = 30 * 60
CHART_ROWS = 40  # bars or rows drawn per chart; the table and the CSV have them all
BUCKETS = 10  # histogram buckets: 0 to 0.1 ... 0.9 to 1.0, and 0 to 10 ... 90 to 100
CURVE_STEPS = 20  # points on the threshold curve


# --- figures --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    key: str  # the CSV header
    label: str  # the table header
    kind: str = "text"  # how a cell reads: text, int, pct, seconds, hours, date, datetime, number


@dataclass
class Figure:
    name: str  # ?chart=<name> in CSV links
    title: str
    note: str  # how the figure is defined, in words a supervisor reads
    columns: list[Column]
    rows: list[tuple]
    chart: charts.Svg | None = None
    summary: str = ""
    extra: dict = field(default_factory=dict)
    computed_at: datetime | None = None
    cached: bool = False  # served from the cache (computed_at says when it was computed)

    @property
    def table_rows(self) -> SafeString:
        """The rows as the <tbody> of the table under the chart, each cell as a person reads
        it (the CSV keeps the raw values). Written here rather than looped over in the
        template for the same reason as charts.Svg.shapes: there can be thousands of cells."""
        kinds = [c.kind for c in self.columns]
        num = [' class="num"' if kind != "text" else "" for kind in kinds]
        rows = (
            "<tr>"
            + "".join(f"<td{num[i]}>{esc(cell_text(v, kinds[i]))}</td>" for i, v in enumerate(row))
            + "</tr>"
            for row in self.rows
        )
        return mark_safe("\n".join(rows))  # noqa: S308 - every cell is escaped


def cell_text(value, kind: str) -> str:
    """A table cell of the overview as a person reads it."""
    if value is None or value == "":
        return "–"
    if kind == "int":
        return f"{value:,}"
    if kind == "pct":
        return f"{100 * value:.1f}%"
    if kind == "seconds":
        return duration(value)
    if kind == "hours":
        return f"{value:g} h"
    if kind == "number":
        return f"{value:g}"
    if kind == "datetime" and isinstance(value, datetime):
        return f"{timezone.localtime(value):%d %b %H:%M}"
    if kind == "date" and isinstance(value, date):
        return f"{value:%d %b %Y}"
    return str(value)


CHARTS: dict[str, Callable[[Inputs], Figure]] = {}
SECTIONS: dict[str, list[str]] = {"Queue health": [], "Atlas quality": []}


def chart(name: str, section: str):
    def register(fn: Callable[[Inputs], Figure]) -> Callable[[Inputs], Figure]:
        CHARTS[name] = fn
        SECTIONS[section].append(name)
        return fn

    return register


# What is true now (open items, live claims) is never cached: it is cheap and must be
# current. The rest is history, the expensive part, which a couple of minutes do not change.
LIVE = frozenset({"queues", "claims"})


def build(names: list[str], inputs: Inputs) -> dict[str, Figure]:
    """The figures, history from the cache when the same filters were asked for less than
    OVERVIEW_CACHE_SECONDS ago (one round trip for all of them), the rest computed."""
    seconds = settings.OVERVIEW_CACHE_SECONDS
    keys = {name: cache_key(name, inputs) for name in names if seconds and name not in LIVE}
    found = cache.get_many(list(keys.values())) if keys else {}
    figures, fresh = {}, {}
    for name in names:
        figure = found.get(keys.get(name, ""))
        if figure is not None:
            figure.cached = True
        else:
            figure = CHARTS[name](inputs)
            figure.computed_at = inputs.now
            if name in keys:
                fresh[keys[name]] = figure
        figures[name] = figure
    if fresh:
        cache.set_many(fresh, seconds)
    return figures


def cache_key(name: str, inputs: Inputs) -> str:
    """Same chart, same filters (and for the threshold chart, the same trial): same key."""
    params = inputs.filters.as_params()
    if name == "threshold":
        params |= inputs.trial.as_params()
    digest = hashlib.sha256(urlencode(sorted(params.items())).encode()).hexdigest()[:32]
    return f"overview:1:{name}:{digest}"


def _seconds(delta: timedelta | None) -> float | None:
    return None if delta is None else round(delta.total_seconds(), 1)


def _pct(part: float, whole: float) -> float | None:
    return round(part / whole, 4) if whole else None


# --- queue health ---------------------------------------------------------------------------


@chart("queues", "Queue health")
def queues(inputs: Inputs) -> Figure:
    now, sla = inputs.now, inputs.sla_hours
    items = ReviewItem.objects.open()
    if inputs.filters.product_type:
        items = items.filter(product_type=inputs.filters.product_type)
    late = reduce(
        or_, (Q(queue=q, created_at__lt=now - timedelta(hours=h)) for q, h in sla.items())
    )
    found = {
        row["queue"]: row
        for row in items.values("queue")
        .annotate(
            open=Count("pk"),
            oldest=Min("created_at"),
            median=sql.MedianTime("created_at"),
            late=Count("pk", filter=late),
        )
        .order_by()
    }
    rows, bars = [], []
    for queue in Queue:
        row = found.get(queue.value, {})
        n, n_late = row.get("open", 0), row.get("late", 0)
        oldest = _seconds(now - row["oldest"]) if row.get("oldest") else None
        median = _seconds(now - row["median"]) if row.get("median") else None
        rows.append((queue.label, n, oldest, median, sla[queue.value], n_late))
        note = f"{n:,} open" + (f" · {n_late:,} past SLA" if n_late else "")
        if oldest is not None:
            note += f" · oldest {duration(oldest)}"
        bars.append(
            BarRow(
                queue.label,
                [
                    Segment(n_late, "late", f"{n_late:,} waiting over {sla[queue.value]} h"),
                    Segment(n - n_late, "open", f"{n - n_late:,} within the SLA"),
                ],
                note,
            )
        )
    total, total_late = sum(r[1] for r in rows), sum(r[5] for r in rows)
    svg = charts.hbars(
        bars, label="Open items per queue, past the SLA first", label_width=150, note_width=250
    )
    svg.legend = [("late", "past the SLA"), ("open", "within the SLA")]
    return Figure(
        name="queues",
        title="Open items per queue",
        note="Items waiting now (the date range does not apply). Age counts from when the item "
        "was flagged; p50 is the median age. SLAs are set per queue in the admin "
        f"(default {settings.REVIEW_SLA_HOURS} h).",
        columns=[
            Column("queue", "Queue"),
            Column("open", "Open", "int"),
            Column("oldest_age_seconds", "Oldest", "seconds"),
            Column("p50_age_seconds", "p50 age", "seconds"),
            Column("sla_hours", "SLA", "hours"),
            Column("past_sla", "Past SLA", "int"),
        ],
        rows=rows,
        chart=svg,
        summary=f"{total:,} open, {total_late:,} past the SLA",
    )


@chart("claims", "Queue health")
def claims(inputs: Inputs) -> Figure:
    now = inputs.now
    held = FlowReview.objects.filter(claimed_by__isnull=False, claim_expires_at__gt=now)
    if inputs.filters.product_type:
        held = held.filter(flow__product_type=inputs.filters.product_type)
    found = list(
        held.values("claimed_by__username")
        .annotate(flows=Count("pk"), since=Min("claimed_at"))
        .order_by("since", "claimed_by__username")
    )
    rows = [
        (r["claimed_by__username"], r["flows"], _seconds(now - r["since"]), r["since"])
        for r in found
    ]
    bars = [
        BarRow(
            name,
            [Segment(seconds or 0, "held", f"{name}: longest claim {duration(seconds)}")],
            f"{flows} flow{'s' if flows != 1 else ''} · {duration(seconds)}",
        )
        for name, flows, seconds, _since in rows[:CHART_ROWS]
    ]
    return Figure(
        name="claims",
        title="Claims held now",
        note="Flows a reviewer holds now, and how long the oldest claim has been held. "
        f"A claim lapses {settings.REVIEW_CLAIM_MINUTES} min after the reviewer's last action.",
        columns=[
            Column("reviewer", "Reviewer"),
            Column("flows", "Flows held", "int"),
            Column("longest_held_seconds", "Longest held", "seconds"),
            Column("held_since", "Since", "datetime"),
        ],
        rows=rows,
        chart=charts.hbars(bars, label="Claims held now, longest first") if bars else None,
        summary=f"{sum(r[1] for r in rows):,} flows held by {len(rows)} reviewer"
        + ("s" if len(rows) != 1 else ""),
    )


@chart("decisions", "Queue health")
def decisions(inputs: Inputs) -> Figure:
    days = inputs.filters.days()
    counts = (
        sql.decisions_made(inputs.filters)
        .annotate(day=sql.local_day())
        .values("actor_username", "day")
        .annotate(n=Count("pk"))
        .order_by()
    )
    values: dict[tuple[str, date], int] = {}
    totals: dict[str, int] = defaultdict(int)
    for row in counts:
        values[(row["actor_username"], row["day"])] = row["n"]
        totals[row["actor_username"]] += row["n"]
    reviewers = sorted(totals, key=lambda name: (-totals[name], name))
    rows = sorted(((name, day, n) for (name, day), n in values.items()), key=lambda r: (r[1], r[0]))
    svg = None
    if reviewers:
        svg = charts.heatmap(
            reviewers[:CHART_ROWS], days, values,
            label="Decisions per reviewer per day", unit="decisions",
        )  # fmt: skip
    total = sum(totals.values())
    return Figure(
        name="decisions",
        title="Decisions per reviewer per day",
        note="Every decision and every change of one, by the day it was made. Darker is more.",
        columns=[
            Column("reviewer", "Reviewer"),
            Column("day", "Day", "date"),
            Column("decisions", "Decisions", "int"),
        ],
        rows=rows,
        chart=svg,
        summary=f"{total:,} decisions by {len(reviewers)} reviewer"
        + ("s" if len(reviewers) != 1 else ""),
    )


@chart("time_per_decision", "Queue health")
def time_per_decision(inputs: Inputs) -> Figure:
    """One query: the trail's decisions with the same reviewer's previous one (LAG), then
    the median gap per reviewer and for everyone (UNION ALL, as SQLite has no ROLLUP)."""
    acts = (
        sql.decisions_made(inputs.filters)
        .annotate(
            previous=Window(
                Lag("at"), partition_by=[F("actor_username")], order_by=[F("at"), F("pk")]
            )
        )
        .values("actor_username", "at", "previous")
        .order_by()
    )
    inner, params = acts.query.sql_with_params()
    # inner is Django's own compiled query, its parameters kept apart; the rest is fixed text.
    # A NULL gap (a reviewer's first decision) fails `gap <= cap` and is left out. DATE_PART
    # gives a double (EXTRACT a numeric, slower to sort).
    if connection.vendor == "postgresql":
        query = (
            "SELECT reviewer, COUNT(*), PERCENTILE_CONT(0.5) WITHIN GROUP (ORDER BY gap) "  # noqa: S608
            "FROM (SELECT acts.actor_username AS reviewer, DATE_PART('epoch', acts.\"at\" - "
            f"acts.previous) AS gap FROM ({inner}) AS acts) AS gaps WHERE gap <= %s "
            "GROUP BY GROUPING SETS ((reviewer), ())"
        )
        args = [*params, GAP_CAP_SECONDS]
    else:  # SQLite: no percentiles (the median stays empty) and no grouping sets
        gaps = (
            'SELECT acts.actor_username AS reviewer, (julianday(acts."at") - '  # noqa: S608
            f"julianday(acts.previous)) * 86400.0 AS gap FROM ({inner}) AS acts"
        )
        query = (
            f"WITH gaps AS ({gaps}) SELECT reviewer, COUNT(*), NULL FROM gaps WHERE gap <= %s "  # noqa: S608
            "GROUP BY reviewer UNION ALL SELECT NULL, COUNT(*), NULL FROM gaps WHERE gap <= %s"
        )
        args = [*params, GAP_CAP_SECONDS, GAP_CAP_SECONDS]
    with connection.cursor() as cursor:
        cursor.execute(query, args)
        found = cursor.fetchall()
    everyone = next((r for r in found if r[0] is None), (None, 0, None))
    per_reviewer = sorted(
        (r for r in found if r[0] is not None), key=lambda r: (r[2] is None, r[2] or 0, r[0])
    )
    rows = [
        ("(everyone)", everyone[1], _round(everyone[2])),
        *((name, n, _round(m)) for name, n, m in per_reviewer),
    ]
    bars = [
        BarRow(name, [Segment(m or 0, "time", f"{name}: median {duration(m)} over {n:,}")],
               f"{duration(m)} · {n:,} timed")
        for name, n, m in rows[: CHART_ROWS + 1] if n
    ]  # fmt: skip
    return Figure(
        name="time_per_decision",
        title="Median time per decision",
        note="For each decision, the time since the same reviewer's previous decision, when "
        f"that was less than {GAP_CAP_SECONDS // 60} minutes earlier (a longer gap is a break "
        "or other work). A sitting's first decision is not timed. Median per reviewer.",
        columns=[
            Column("reviewer", "Reviewer"),
            Column("decisions_timed", "Decisions timed", "int"),
            Column("median_seconds", "Median", "seconds"),
        ],
        rows=rows,
        chart=charts.hbars(bars, label="Median time per decision by reviewer") if bars else None,
        summary=f"median {duration(_round(everyone[2]))} per decision"
        if everyone[2] is not None
        else ("medians need PostgreSQL" if everyone[1] else ""),
    )


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 1)


OUTCOME_CLASSES = {
    Outcome.APPROVED: "approved",
    Outcome.REJECTED: "rejected",
    Outcome.NEEDS_INFO: "needs-info",
}


@chart("closed", "Queue health")
def closed(inputs: Inputs) -> Figure:
    start, end = inputs.filters.time_range()
    closings = DecisionEvent.objects.filter(kind=EventKind.OUTCOME, at__gte=start, at__lt=end)
    if inputs.filters.product_type:
        closings = closings.filter(flow__product_type=inputs.filters.product_type)
    counts = (
        closings.annotate(day=sql.local_day()).values("day", "outcome").annotate(n=Count("pk"))
    ).order_by()
    values = {(row["day"], row["outcome"]): row["n"] for row in counts}
    days = inputs.filters.days()
    rows = sorted(((day, outcome, n) for (day, outcome), n in values.items()))
    series = [(o.value, OUTCOME_CLASSES[o], o.label) for o in Outcome]
    by_outcome = {o.value: sum(n for (_d, oo), n in values.items() if oo == o) for o in Outcome}
    return Figure(
        name="closed",
        title="Flows closed per day by outcome",
        note="Each time a reviewer gave a flow its outcome (a flow reopened and closed again "
        "counts on both days).",
        columns=[
            Column("day", "Day", "date"),
            Column("outcome", "Outcome"),
            Column("flows", "Flows", "int"),
        ],
        rows=rows,
        chart=charts.day_columns(
            days, series, values, label="Flows closed per day by outcome", unit=""
        )
        if values
        else None,
        summary=", ".join(f"{n:,} {Outcome(o).label.lower()}" for o, n in by_outcome.items()),
    )


# --- Atlas quality --------------------------------------------------------------------------


def _histogram(
    name: str,
    title: str,
    note: str,
    qs: QuerySet,
    group: list[str],
    score: str,
    in_force,
    marker_of: Callable[[tuple], float],
    *,
    hi: float,
    fmt: Callable[[float], str],
) -> Figure:
    """One query: counts per (group..., bucket), and how many are under the threshold in
    force (NULL scores count as under: flagging sends them to review)."""
    under = Q(**{f"{score}__lt": in_force}) | Q(**{f"{score}__isnull": True})
    found = (
        qs.annotate(bucket=sql.bucket(score, 0, hi, BUCKETS))
        .values(*group, "bucket")
        .annotate(n=Count("pk"), under=Count("pk", filter=under))
        .order_by()
    )
    groups: dict[tuple, list[int]] = {}
    blanks: dict[tuple, int] = defaultdict(int)
    unders: dict[tuple, int] = defaultdict(int)
    for row in found:
        key = tuple(row[g] for g in group)
        counts = groups.setdefault(key, [0] * BUCKETS)
        if row["bucket"] is None:
            blanks[key] += row["n"]
        else:
            counts[row["bucket"]] += row["n"]
        unders[key] += row["under"]
    rows, hist, scored = [], [], 0
    for key in sorted(groups):
        counts, total = groups[key], sum(groups[key]) + blanks[key]
        marker, share = marker_of(key), _pct(unders[key], total)
        rows.append((*key, *counts, blanks[key], total, marker, unders[key], share))
        scored += total
        share = share or 0
        hist.append(
            HistogramRow(".".join(k or "(none)" for k in key), counts, marker,
                         f"{total:,} · {100 * share:.0f}% under {fmt(marker)}")
        )  # fmt: skip
    step = hi / BUCKETS
    columns = [
        *(Column(f"bucket_{fmt(step * b)}_{fmt(step * (b + 1))}", f"{fmt(step * b)}–{fmt(step * (b + 1))}", "int") for b in range(BUCKETS)),
        Column("no_score", "No score", "int"),
        Column("total", "Total", "int"),
        Column("threshold", "Threshold", "number"),
        Column("under_threshold", "Under", "int"),
        Column("under_share", "Under %", "pct"),
    ]  # fmt: skip
    return Figure(
        name=name,
        title=title,
        note=note,
        columns=columns,
        rows=rows,
        chart=charts.histogram_rows(hist[:CHART_ROWS], lo=0, hi=hi, label=title, fmt=fmt)
        if hist
        else None,
        summary=f"{scored:,} in {len(rows)} group" + ("s" if len(rows) != 1 else ""),
    )


def _confidence_fmt(v: float) -> str:
    return f"{v:.2f}".rstrip("0").rstrip(".") if v % 1 else f"{v:.0f}"


def _similarity_fmt(v: float) -> str:
    return f"{v:g}"


@chart("confidence", "Atlas quality")
def confidence(inputs: Inputs) -> Figure:
    thresholds = inputs.thresholds
    figure = _histogram(
        "confidence",
        "Confidence per document type and field",
        "Atlas's confidence for every field of the flows created in the date range, in ten "
        "buckets; the line is the threshold in force, the bars left of it go to review.",
        sql.flows_in(ExtractedField.objects.current(), inputs.filters),
        ["document_type", "name"],
        "confidence",
        sql.confidence_in_force(thresholds),
        lambda key: thresholds.confidence(*key),
        hi=1,
        fmt=_confidence_fmt,
    )
    figure.columns[:0] = [Column("document_type", "Document type"), Column("field", "Field")]
    return figure


@chart("similarity", "Atlas quality")
def similarity(inputs: Inputs) -> Figure:
    thresholds = inputs.thresholds
    figure = _histogram(
        "similarity",
        "Similarity per cross-check",
        "Atlas's similarity for every cross-check of the flows created in the date range; "
        "the line is the threshold in force.",
        sql.flows_in(CrossCheck.objects.current(), inputs.filters),
        ["name"],
        "similarity",
        sql.similarity_in_force(thresholds),
        lambda key: thresholds.similarity(key[0])[0],
        hi=100,
        fmt=_similarity_fmt,
    )
    figure.columns[:0] = [Column("check", "Cross-check")]
    return figure


@chart("errors", "Atlas quality")
def errors(inputs: Inputs) -> Figure:
    documents = sql.flows_in(Document.objects.current(), inputs.filters)
    found = documents.values("error_code").annotate(n=Count("pk")).order_by("-n", "error_code")
    counts = [(row["error_code"], row["n"]) for row in found]
    total = sum(n for _code, n in counts)
    with_error = [(code, n) for code, n in counts if code]
    rows = [(code, n, _pct(n, total)) for code, n in with_error]
    readable = total - sum(n for _c, n in with_error)
    rows.append(("(no error)", readable, _pct(readable, total)))
    top = max((n for _c, n in with_error), default=0)
    bars = [
        BarRow(code, [Segment(n, "error", f"{code}: {n:,} of {total:,} documents")],
               f"{100 * n / total:.1f}% · {n:,}")
        for code, n in with_error[:CHART_ROWS]
    ]  # fmt: skip
    errors_n = total - readable
    return Figure(
        name="errors",
        title="Documents Atlas could not read, by error code",
        note="Share of all documents of the flows created in the date range.",
        columns=[
            Column("error_code", "Error code"),
            Column("documents", "Documents", "int"),
            Column("share", "Share", "pct"),
        ],
        rows=rows,
        chart=charts.hbars(bars, label="Error documents by error code", max_value=top)
        if bars
        else None,
        summary=f"{errors_n:,} of {total:,} documents ({100 * errors_n / total:.1f}%)"
        if total
        else "no documents",
    )


@chart("corrections", "Atlas quality")
def corrections(inputs: Inputs) -> Figure:
    """What reviewers concluded about what Atlas said: current decisions on fields and
    cross-checks made in the date range, least trustworthy first."""
    start, end = inputs.filters.time_range()
    current = Decision.objects.filter(
        superseded=False,
        decided_at__gte=start,
        decided_at__lt=end,
        item__kind__in=[Kind.FIELD, Kind.CROSS_CHECK],
    )
    if inputs.filters.product_type:
        current = current.filter(item__product_type=inputs.filters.product_type)
    found = (
        current.values("item__kind", "item__document_type", "item__name")
        .annotate(
            n=Count("pk"),
            corrected=Count("pk", filter=Q(action=Action.CORRECT)),
            rejected=Count("pk", filter=Q(action=Action.REJECT)),
        )
        .order_by()
    )
    rows = []
    for row in found:
        n, corrected, rejected = row["n"], row["corrected"], row["rejected"]
        kind = "field" if row["item__kind"] == Kind.FIELD else "cross-check"
        subject = ".".join(p for p in (row["item__document_type"], row["item__name"]) if p)
        rows.append(
            (kind, subject, n, n - corrected - rejected, corrected, rejected,
             _pct(corrected + rejected, n))
        )  # fmt: skip
    rows.sort(key=lambda r: (-(r[6] or 0), -r[2], r[1]))
    bars = [
        BarRow(
            subject,
            [
                Segment(rejected / n, "rejected", f"{rejected:,} of {n:,} rejected"),
                Segment(corrected / n, "corrected", f"{corrected:,} of {n:,} corrected"),
            ],
            f"{100 * share:.0f}% of {n:,}",
        )
        for _kind, subject, n, _accepted, corrected, rejected, share in rows[:CHART_ROWS]
    ]
    svg = charts.hbars(bars, label="Share of decisions that corrected or rejected Atlas",
                       max_value=1) if bars else None  # fmt: skip
    if svg:
        svg.legend = [("rejected", "rejected"), ("corrected", "corrected")]
    return Figure(
        name="corrections",
        title="Where reviewers overrule Atlas",
        note="Decisions made in the date range on flagged fields and cross-checks: the share "
        "a reviewer corrected or rejected rather than accepted. Highest first: these are the "
        "fields where Atlas is least trustworthy (its thresholds may be too low).",
        columns=[
            Column("kind", "Kind"),
            Column("subject", "Field or check"),
            Column("decisions", "Decisions", "int"),
            Column("accepted", "Accepted", "int"),
            Column("corrected", "Corrected", "int"),
            Column("rejected", "Rejected", "int"),
            Column("overruled_share", "Overruled", "pct"),
        ],
        rows=rows,
        chart=svg,
        summary=f"{sum(r[2] for r in rows):,} decisions on {len(rows)} fields and checks",
    )


@chart("threshold", "Atlas quality")
def threshold(inputs: Inputs) -> Figure:
    """How many items a threshold would send to review, against the thresholds in force.
    One query: counts per bucket (for the curve) with the trial's and the in-force counts
    alongside."""
    trial, thresholds = inputs.trial, inputs.thresholds
    if trial.scope == Scope.CONFIDENCE:
        # Fields of documents Atlas could not read go to review as one exception instead.
        qs = ExtractedField.objects.current().filter(document__error_code="")
        if trial.document_type:
            qs = qs.filter(document_type=trial.document_type)
        if trial.name:
            qs = qs.filter(name=trial.name)
        score, hi, fmt, what = "confidence", 1, _confidence_fmt, "fields"
        in_force = sql.confidence_in_force(thresholds)
        fixed = _single_confidence(thresholds, trial)
    else:
        qs = CrossCheck.objects.current()
        if trial.name:
            qs = qs.filter(name=trial.name)
        score, hi, fmt, what = "similarity", 100, _similarity_fmt, "cross-checks"
        in_force = sql.similarity_in_force(thresholds)
        named = any(name for name in thresholds.similarity_rows)
        fixed = thresholds.similarity(trial.name)[0] if trial.name or not named else None
    value = trial.value
    if value is None:
        value = fixed if fixed is not None else _default_of(thresholds, trial.scope)
    qs = sql.flows_in(qs, inputs.filters)
    unscored = Q(**{f"{score}__isnull": True})
    found = (
        qs.annotate(bucket=sql.bucket(score, 0, hi, CURVE_STEPS))
        .values("bucket")
        .annotate(
            n=Count("pk"),
            now=Count("pk", filter=Q(**{f"{score}__lt": in_force}) | unscored),
            tried=Count("pk", filter=Q(**{f"{score}__lt": value}) | unscored),
        )
        .order_by()
    )
    per_bucket = [0] * CURVE_STEPS
    unscored_n = total = now = tried = 0
    for row in found:
        total, now, tried = total + row["n"], now + row["now"], tried + row["tried"]
        if row["bucket"] is None:
            unscored_n += row["n"]
        else:
            per_bucket[row["bucket"]] += row["n"]
    # Items under t for t = 0, step, ... up to the last step below hi (the last bucket holds
    # hi itself, which is not under hi).
    points, running = [], unscored_n
    for b in range(CURVE_STEPS):
        points.append((hi * b / CURVE_STEPS, running))
        running += per_bucket[b]
    rows = [(round(t, 4), n) for t, n in points]
    target = " ".join(p for p in (trial.document_type, trial.name) if p) or f"all {what}"
    change = tried - now
    summary = (
        f"At {fmt(value)}: {tried:,} of {total:,} {what} ({target}) would go to review; "
        f"{now:,} do at the thresholds in force ({'+' if change >= 0 else ''}{change:,})."
    )
    svg = charts.threshold_curve(
        points, lo=0, hi=hi, current=fixed, trial=value, fmt=fmt,
        label=f"{what.capitalize()} under each threshold",
    )  # fmt: skip
    return Figure(
        name="threshold",
        title="What a threshold would send to review",
        note=f"{what.capitalize()} of the flows created in the date range scoring under the "
        "threshold (or with no score). Pick a threshold to compare it with those in force.",
        columns=[
            Column("threshold", "Threshold", "number"),
            Column(what.replace("-", "_"), f"{what.capitalize()} under it", "int"),
        ],
        rows=rows,
        chart=svg,
        summary=summary,
        extra={"tried": tried, "in_force": now, "total": total, "value": value, "fixed": fixed},
    )


def _default_of(thresholds: Thresholds, scope: str) -> float:
    if scope == Scope.CONFIDENCE:
        return thresholds.confidence("", "")
    return thresholds.similarity("")[0]


def _single_confidence(thresholds: Thresholds, trial: ThresholdTrial) -> float | None:
    """The one confidence threshold in force for the trial's fields, if there is one (a
    type and field named, or no override that could split them); else None."""
    if trial.document_type and trial.name:
        return thresholds.confidence(trial.document_type, trial.name)
    rows = thresholds.confidence_rows
    relevant = [
        (t, f)
        for t, f in rows
        if (t or f)
        and (not trial.document_type or t in ("", trial.document_type))
        and (not trial.name or f in ("", trial.name))
    ]
    if relevant:
        return None
    return thresholds.confidence(trial.document_type, trial.name)


# --- reading ---------------------------------------------------------------------------------


def duration(seconds: float | None) -> str:
    """Seconds as a person reads an age: 45 s, 12 min, 3 h 05 min, 2 d 4 h."""
    if seconds is None:
        return "–"
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min"
    if s < 86400:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    return f"{s // 86400} d {s % 86400 // 3600} h"
