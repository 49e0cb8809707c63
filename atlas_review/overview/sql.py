"""SQL building blocks of the overview's figures: medians, histogram buckets, the
thresholds in force as expressions, and the date-range filters shared by several charts.

PostgreSQL computes medians with percentile_disc/percentile_cont. SQLite (the zero-setup
demo) has no percentiles: medians are then NULL (shown as a dash), the rest is the same."""

from __future__ import annotations

from django.conf import settings
from django.db.models import (
    Aggregate,
    Case,
    DateTimeField,
    F,
    FloatField,
    IntegerField,
    QuerySet,
    Value,
    When,
)
from django.db.models.functions import Cast, Floor, Greatest, Least, TruncDate
from django.utils import timezone

from atlas_review.review.flagging import Thresholds
from atlas_review.review.models import DecisionEvent, EventKind

from .inputs import OverviewFilters


class _Median(Aggregate):
    template = "%(function)s(0.5) WITHIN GROUP (ORDER BY %(expressions)s)%(filter)s"

    def as_sql(self, compiler, connection, **extra_context):
        if connection.vendor != "postgresql":
            return "NULL", ()
        return super().as_sql(compiler, connection, **extra_context)


class MedianTime(_Median):
    """The median of a timestamp (one of the values: percentile_disc)."""

    function = "PERCENTILE_DISC"
    output_field = DateTimeField()


def bucket(name: str, lo: float, hi: float, n: int):
    """Which of n equal buckets of [lo, hi] the value is in: 0..n-1, hi itself in the last,
    NULL for NULL. Multiply before dividing, so that an edge (0.8, 85) lands in the bucket
    it starts, as `value < edge` comparisons do."""
    scaled = (F(name) - Value(float(lo))) * Value(float(n)) / Value(float(hi - lo))
    return Cast(Least(Greatest(Floor(scaled), Value(0.0)), Value(n - 1.0)), IntegerField())


def confidence_in_force(thresholds: Thresholds):
    """The confidence threshold each field row is flagged at, as a SQL expression: the
    admin's overrides, most specific first (flagging.Thresholds.confidence, in SQL)."""
    rows = thresholds.confidence_rows
    whens = [When(document_type=t, name=f, then=Value(v)) for (t, f), v in rows.items() if t and f]
    whens += [When(document_type=t, then=Value(v)) for (t, f), v in rows.items() if t and not f]
    whens += [When(name=f, then=Value(v)) for (t, f), v in rows.items() if f and not t]
    default = rows.get(("", ""), settings.REVIEW_CONFIDENCE_THRESHOLD)
    if not whens:
        return Value(float(default))
    return Case(*whens, default=Value(float(default)), output_field=FloatField())


def similarity_in_force(thresholds: Thresholds):
    rows = thresholds.similarity_rows
    whens = [When(name=name, then=Value(float(row.value))) for name, row in rows.items() if name]
    default = thresholds.similarity("")[0]
    if not whens:
        return Value(float(default))
    return Case(*whens, default=Value(float(default)), output_field=FloatField())


def flows_in(qs: QuerySet, filters: OverviewFilters, prefix: str = "flow__") -> QuerySet:
    """Atlas's rows of the flows created in the date range (and of the product type)."""
    start, end = filters.time_range()
    qs = qs.filter(**{f"{prefix}created_at__gte": start, f"{prefix}created_at__lt": end})
    if filters.product_type:
        qs = qs.filter(**{f"{prefix}product_type": filters.product_type})
    return qs


def decisions_made(filters: OverviewFilters) -> QuerySet:
    """Decisions made in the date range: every decision and change in the trail (a change
    is work too), by when it was made (uses the trail's index on `at`)."""
    start, end = filters.time_range()
    acts = DecisionEvent.objects.filter(
        kind__in=[EventKind.DECIDED, EventKind.CHANGED], at__gte=start, at__lt=end
    )
    if filters.product_type:
        acts = acts.filter(flow__product_type=filters.product_type)
    return acts


def local_day():
    return TruncDate("at", tzinfo=timezone.get_current_timezone())
