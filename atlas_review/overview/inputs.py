"""What the overview is asked for, read from its query string: the date range and product
type (OverviewFilters) and the threshold a supervisor is trying (ThresholdTrial)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from functools import cached_property

from django.utils import timezone

from atlas_review.review.flagging import Thresholds
from atlas_review.review.models import Scope

from .models import QueueSla

DEFAULT_DAYS = 14
MAX_DAYS = 366


def _day(query, key: str) -> date | None:
    try:
        return date.fromisoformat((query.get(key) or "").strip())
    except ValueError:
        return None


@dataclass(frozen=True)
class OverviewFilters:
    """The date range (whole local days, both inclusive) and product type of the page, read
    from its query string. Anything malformed falls back to the default rather than an
    error: URLs are shared and edited by hand."""

    date_from: date
    date_to: date
    product_type: str = ""

    @classmethod
    def from_query(cls, query, today: date | None = None) -> OverviewFilters:
        today = today or timezone.localdate()
        date_to = _day(query, "date_to") or today
        date_from = _day(query, "date_from") or date_to - timedelta(days=DEFAULT_DAYS - 1)
        if date_from > date_to:
            date_from, date_to = date_to, date_from
        date_from = max(date_from, date_to - timedelta(days=MAX_DAYS - 1))
        product_type = (query.get("product_type") or "").strip()[:64]
        return cls(date_from=date_from, date_to=date_to, product_type=product_type)

    def time_range(self) -> tuple[datetime, datetime]:
        """[start, end) in the site's time zone."""
        start = timezone.make_aware(datetime.combine(self.date_from, time.min))
        end = timezone.make_aware(datetime.combine(self.date_to + timedelta(days=1), time.min))
        return start, end

    def days(self) -> list[date]:
        return [
            self.date_from + timedelta(days=i)
            for i in range((self.date_to - self.date_from).days + 1)
        ]

    def as_params(self) -> dict[str, str]:
        params = {"date_from": self.date_from.isoformat(), "date_to": self.date_to.isoformat()}
        if self.product_type:
            params["product_type"] = self.product_type
        return params


@dataclass(frozen=True)
class ThresholdTrial:
    """The threshold a supervisor is trying out: a confidence (0..1) for fields, optionally
    of one document type and field name, or a similarity (0..100) for cross-checks,
    optionally of one check. value None: the default threshold in force."""

    scope: str = Scope.CONFIDENCE
    value: float | None = None
    document_type: str = ""
    name: str = ""

    @classmethod
    def from_query(cls, query) -> ThresholdTrial:
        # Each scope has its own parameters (t_confidence, t_field / t_similarity, t_check),
        # so switching the scope does not carry 0.8 over as a similarity.
        scope = query.get("t_scope") or Scope.CONFIDENCE
        if scope not in Scope.values:
            scope = Scope.CONFIDENCE
        confidence = scope == Scope.CONFIDENCE
        try:
            value = float(query.get(f"t_{scope}") or "")
        except ValueError:
            value = None
        if value is not None and not 0 <= value <= (1 if confidence else 100):
            value = None
        return cls(
            scope=scope,
            value=value,
            document_type=(query.get("t_document_type") or "").strip()[:64] if confidence else "",
            name=(query.get("t_field" if confidence else "t_check") or "").strip()[:128],
        )

    def as_params(self) -> dict[str, str]:
        confidence = self.scope == Scope.CONFIDENCE
        params = {"t_scope": self.scope}
        if self.value is not None:
            params[f"t_{self.scope}"] = f"{self.value:g}"
        if self.document_type:
            params["t_document_type"] = self.document_type
        if self.name:
            params["t_field" if confidence else "t_check"] = self.name
        return params


@dataclass
class Inputs:
    """What every chart reads; the admin-set values load once, and only if a chart asks."""

    filters: OverviewFilters
    trial: ThresholdTrial = field(default_factory=ThresholdTrial)
    now: datetime = field(default_factory=timezone.now)

    @cached_property
    def sla_hours(self) -> dict[str, int]:
        return QueueSla.hours_by_queue()

    @cached_property
    def thresholds(self) -> Thresholds:
        return Thresholds.load()
