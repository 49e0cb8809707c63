"""Reuse alerts across applications: the same IMEI, invoice (number + dealer GSTIN),
Aadhaar or PAN in another loan application within REUSE_WINDOW_DAYS is a classic fraud
signal (one handset financed twice, one invoice presented to two lenders).

At ingest, `record_sightings` writes one IdentifierSighting per identifier read in the
flow; `find_reuse` looks the flow's identifiers up in the (kind, value) index
(`record_and_find` does both with one read, for the ingest receiver). A flow never
reuses its own identifiers: the same IMEI on the invoice and on the close-up, or a flow
delivered twice, is one application. Nor does a second flow for the same application_id
(the lender resubmitted the same application).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection
from django.db.models import F, Q, QuerySet
from django.db.models.fields.tuple_lookups import Tuple, TupleIn
from django.urls import reverse
from django.utils import timezone

from atlas_review.flows import bulk
from atlas_review.flows.models import ExtractedField, Flow

from .masking import mask_identifier
from .models import IdentifierKind, IdentifierSighting

MAX_VALUE = 200
_SEPARATORS = re.compile(r"[\s\-./]")
_PAN = re.compile(r"^[A-Z0-9]{10}$")
_GSTIN = re.compile(r"^[0-9A-Z]{15}$")
_AADHAAR_NAME = re.compile(r"aadh?aa?r", re.IGNORECASE)


# (kind, value) -> [(field id, seen_at)]: one flow's identifiers.
Mine = dict[tuple[str, str], list[tuple[int, datetime]]]


def _scalars(value) -> list[str]:
    items = value if isinstance(value, list) else [value]
    out = []
    for item in items:
        if isinstance(item, bool) or not isinstance(item, str | int | float):
            continue
        if isinstance(item, float):
            if not item.is_integer():
                continue
            item = int(item)
        out.append(str(item).strip())
    return [s for s in out if s]


def normalize_imei(text: str) -> str | None:
    digits = _SEPARATORS.sub("", text)
    # Shape only, not the check digit: a wrong digit repeated in two applications is
    # still the same label.
    return digits if digits.isdigit() and 14 <= len(digits) <= 16 else None


def normalize_aadhaar(text: str) -> str | None:
    digits = _SEPARATORS.sub("", text)
    return digits if digits.isdigit() and len(digits) == 12 else None


def normalize_pan(text: str) -> str | None:
    compact = _SEPARATORS.sub("", text).upper()
    return compact if _PAN.match(compact) else None


def normalize_invoice(invoice_number: str, gstin: str) -> str | None:
    number = _SEPARATORS.sub("", invoice_number).upper()
    dealer = _SEPARATORS.sub("", gstin).upper()
    # An invoice number alone collides across dealers ("4332"): both parts are needed.
    if not number or not _GSTIN.match(dealer):
        return None
    value = f"{dealer}/{number}"
    return value if len(value) <= MAX_VALUE else None


@functools.lru_cache(maxsize=4096)  # a handful of (type, name) pairs, asked for every field
def _kind_of_field(document_type: str, name: str) -> str | None:
    if "imei" in name.lower():
        return IdentifierKind.IMEI
    if (document_type, name) == ("AADHAAR", "aadhaar_number") or _AADHAAR_NAME.search(name):
        return IdentifierKind.AADHAAR
    if (document_type, name) == ("PAN", "pan_number") or name.lower() == "pan_number":
        return IdentifierKind.PAN
    return None


_NORMALIZERS = {
    IdentifierKind.IMEI: normalize_imei,
    IdentifierKind.AADHAAR: normalize_aadhaar,
    IdentifierKind.PAN: normalize_pan,
}


def identifiers_of(fields: list[ExtractedField]) -> set[tuple[int, str, str]]:
    """(field id, kind, normalised value) for every identifier in these fields."""
    found: set[tuple[int, str, str]] = set()
    invoices: dict[int, dict[str, ExtractedField]] = {}
    for f in fields:
        if f.document_type == "INVOICE" and f.name in ("invoice_number", "dealer_gst"):
            invoices.setdefault(f.document_id, {})[f.name] = f
        kind = _kind_of_field(f.document_type, f.name)
        if kind is None:
            continue
        for text in _scalars(f.value):
            value = _NORMALIZERS[kind](text)
            if value:
                found.add((f.pk, kind, value))
    for parts in invoices.values():
        number, gstin = parts.get("invoice_number"), parts.get("dealer_gst")
        if number is None or gstin is None:
            continue
        numbers, gstins = _scalars(number.value), _scalars(gstin.value)
        if numbers and gstins:
            value = normalize_invoice(numbers[0], gstins[0])
            if value:
                found.add((number.pk, IdentifierKind.INVOICE, value))
    return found


def record_sightings(flow: Flow, *, fields: list[ExtractedField] | None = None) -> Mine:
    """Bring the flow's sightings in line with its current fields, and return them as
    my_identifiers does. Unchanged sightings keep their first seen_at, so a re-delivery does
    not move them in the window."""
    return record_and_find(flow, fields=fields)[0]


def record_and_find(
    flow: Flow, *, fields: list[ExtractedField] | None = None, window_days: int | None = None
) -> tuple[Mine, list[Reuse]]:
    """record_sightings and find_reuse at once, for ingest: one read brings both the flow's
    own sightings (to bring in line) and the other flows' sightings of its identifiers."""
    if fields is None:
        fields = list(ExtractedField.objects.current().filter(flow=flow))
    days = default_window_days() if window_days is None else window_days
    wanted = identifiers_of(fields)
    pairs = sorted({(kind, value) for _field, kind, value in wanted})
    others_of_mine = Q(flow=flow)
    if pairs:
        # The flow's own sightings are no older than the flow: nothing older than that minus
        # the window can be within the window of one of them.
        others_of_mine |= Q(
            TupleIn(Tuple(F("kind"), F("value")), pairs),
            seen_at__gte=flow.created_at - timedelta(days=days),
        )
    existing: dict[tuple[int, str, str], tuple[int, datetime]] = {}
    others = []
    for row in IdentifierSighting.objects.filter(others_of_mine).values_list(
        "pk", "flow_id", "field_id", "kind", "value", "seen_at", "flow__application_id"
    ):
        pk, flow_id, field_id, kind, value, seen_at, _application_id = row
        if flow_id == flow.pk:
            existing[(field_id, kind, value)] = (pk, seen_at)
        else:
            others.append(row)

    stale = [pk for key, (pk, _seen) in existing.items() if key not in wanted]
    if stale:
        IdentifierSighting.objects.filter(pk__in=stale).delete()
    now = timezone.now()
    new = [
        IdentifierSighting(flow=flow, field_id=field_id, kind=kind, value=value, seen_at=now)
        for field_id, kind, value in sorted(wanted - existing.keys())
    ]
    if new:
        IdentifierSighting.objects.bulk_create(new, batch_size=1000)
    mine: Mine = {}
    for key in sorted(wanted):
        seen_at = existing[key][1] if key in existing else now
        mine.setdefault((key[1], key[2]), []).append((key[0], seen_at))

    rows = [
        (kind, value, flow_id, field_id, seen_at, application_id)
        for _pk, flow_id, field_id, kind, value, seen_at, application_id in sorted(
            others, key=lambda r: (r[3], r[4], r[1], r[2])
        )
        if not (flow.application_id and application_id == flow.application_id)
    ]
    return mine, _reuses(mine, rows, days)


def record_and_find_new(
    flows_fields: list[tuple[Flow, list]], *, now: datetime, window_days: int | None = None
) -> dict[int, tuple[Mine, list[Reuse]]]:
    """record_and_find for flows with no sightings yet (their first results), all at once:
    their sightings written by COPY, then one query for every sighting of their identifiers,
    theirs included, so two of these flows sharing an identifier find each other. Returns
    flow id -> (its identifiers, its reuse), as record_and_find does for one flow."""
    days = default_window_days() if window_days is None else window_days
    rows, mine_of = [], {}
    for flow, fields in flows_fields:
        mine: Mine = {}
        for field_id, kind, value in sorted(identifiers_of(fields)):
            rows.append((kind, value, now, field_id, flow.pk))
            mine.setdefault((kind, value), []).append((field_id, now))
        mine_of[flow.pk] = mine
    bulk.copy(IdentifierSighting, ("kind", "value", "seen_at", "field_id", "flow_id"), rows)
    found = _find_many([(flow, mine_of[flow.pk]) for flow, _fields in flows_fields], days)
    return {pk: (mine_of[pk], reused) for pk, reused in found.items()}


def _find_many(flows_mine: list[tuple[Flow, Mine]], days: int) -> dict[int, list[Reuse]]:
    """find_reuse for many flows and their identifiers, with one query for all of them:
    every sighting of any of their identifiers (one probe of sighting_kind_value_idx per
    identifier), then each flow keeps the other flows' within its window."""
    found: dict[int, list[Reuse]] = {flow.pk: [] for flow, _mine in flows_mine}
    pairs = sorted({key for _flow, mine in flows_mine for key in mine})
    if not pairs:
        return found
    since = min(flow.created_at for flow, _mine in flows_mine) - timedelta(days=days)
    if bulk.supported():
        kinds, values = zip(*pairs, strict=True)
        with connection.cursor() as cursor:
            # Arrays, not a row IN list: compiling hundreds of pairs cost more than the query.
            cursor.execute(
                "SELECT s.kind, s.value, s.flow_id, s.field_id, s.seen_at, f.application_id"
                " FROM checks_identifiersighting s JOIN flows_flow f ON f.id = s.flow_id"
                " JOIN unnest(%s::text[], %s::text[]) AS wanted(kind, value)"
                "   ON s.kind = wanted.kind AND s.value = wanted.value"
                " WHERE s.seen_at >= %s",
                [list(kinds), list(values), since],
            )
            rows = cursor.fetchall()
    else:
        rows = IdentifierSighting.objects.filter(
            TupleIn(Tuple(F("kind"), F("value")), pairs), seen_at__gte=since
        ).values_list("kind", "value", "flow_id", "field_id", "seen_at", "flow__application_id")
    sightings = sorted(rows, key=lambda r: (r[0], r[1], r[2], r[3]))
    by_identifier: dict[tuple[str, str], list] = {}
    for row in sightings:
        by_identifier.setdefault((row[0], row[1]), []).append(row)
    for flow, mine in flows_mine:
        # As record_and_find: nothing older than the flow minus the window can be within
        # the window of one of its own sightings; never itself, nor its own application.
        since = flow.created_at - timedelta(days=days)
        others = [
            row
            for key in sorted(mine)
            for row in by_identifier.get(key, ())
            if row[2] != flow.pk
            and row[4] >= since
            and not (flow.application_id and row[5] == flow.application_id)
        ]
        found[flow.pk] = _reuses(mine, others, days)
    return found


def reuse_alerts_for_flows(
    flows: list[Flow], window_days: int | None = None
) -> dict[int, list[ReuseAlert]]:
    """reuse_alerts_for_flow for many flows: two queries (their sightings, then every
    sighting of those identifiers)."""
    days = default_window_days() if window_days is None else window_days
    mine_of = _identifiers_of_flows([flow.pk for flow in flows])
    found = _find_many([(flow, mine_of[flow.pk]) for flow in flows], days)
    return {pk: alerts_of(reused) for pk, reused in found.items()}


@dataclass(frozen=True, slots=True)
class Reuse:
    """One of this flow's identifiers seen in another flow."""

    kind: str
    value: str
    field_id: int
    other_flow_id: int
    other_application_id: str
    other_field_id: int
    other_seen_at: datetime


def default_window_days() -> int:
    return getattr(settings, "REUSE_WINDOW_DAYS", 180)


def my_identifiers(flow: Flow) -> Mine:
    """(kind, value) -> [(field id, seen_at)] of the flow's sightings (one query)."""
    return _identifiers_of_flows([flow.pk])[flow.pk]


def _identifiers_of_flows(flow_ids: list[int]) -> dict[int, Mine]:
    """my_identifiers for many flows, one query: flow id -> its identifiers."""
    mine_of: dict[int, Mine] = {pk: {} for pk in flow_ids}
    rows = IdentifierSighting.objects.filter(flow_id__in=flow_ids).values_list(
        "flow_id", "kind", "value", "field_id", "seen_at"
    )
    for flow_id, kind, value, field_id, seen_at in rows:
        mine_of[flow_id].setdefault((kind, value), []).append((field_id, seen_at))
    return mine_of


def _firsts(mine: Mine) -> dict[tuple[str, str], datetime]:
    """When the flow first showed each of its identifiers: the window is counted from it."""
    return {key: min(seen_at for _field, seen_at in seen) for key, seen in mine.items()}


def reuse_queryset(flow: Flow, mine: Mine, days: int) -> QuerySet:
    """Sightings of the flow's identifiers in other flows, as rows (kind, value, flow_id,
    field_id, seen_at, application_id), within `days` of the earliest and latest of its own.
    The (kind, value) pairs are one probe each of sighting_kind_value_idx (a BitmapOr);
    find_reuse then keeps the rows within `days` of the flow's own sighting of that one
    identifier. Plain rows and a row IN list: this runs at every ingest, and building the
    query (not running it) was most of its cost."""
    window = timedelta(days=days)
    firsts = _firsts(mine)
    others = IdentifierSighting.objects.filter(
        TupleIn(Tuple(F("kind"), F("value")), list(firsts)),
        seen_at__gte=min(firsts.values()) - window,
        seen_at__lte=max(firsts.values()) + window,
    ).exclude(flow_id=flow.pk)
    if flow.application_id:
        others = others.exclude(flow__application_id=flow.application_id)
    return others.order_by("kind", "value", "flow_id", "field_id").values_list(
        "kind", "value", "flow_id", "field_id", "seen_at", "flow__application_id"
    )


def find_reuse(
    flow: Flow, window_days: int | None = None, *, mine: Mine | None = None
) -> list[Reuse]:
    """Other flows sharing one of this flow's identifiers (two queries; one when the
    flow's own identifiers are given, as record_sightings returns them)."""
    days = default_window_days() if window_days is None else window_days
    mine = my_identifiers(flow) if mine is None else mine
    if not mine:
        return []
    return _reuses(mine, reuse_queryset(flow, mine, days), days)


def _reuses(mine: Mine, rows, days: int) -> list[Reuse]:
    """Reuse records of other flows' sighting rows (kind, value, flow_id, field_id, seen_at,
    application_id) within `days` of this flow's own first sighting of the identifier."""
    window = timedelta(days=days)
    firsts = _firsts(mine)
    found = []
    for kind, value, other_flow_id, other_field_id, seen_at, application_id in rows:
        if (kind, value) not in firsts or abs(seen_at - firsts[(kind, value)]) > window:
            continue
        for field_id, _seen in mine[(kind, value)]:
            found.append(
                Reuse(
                    kind=kind, value=value, field_id=field_id, other_flow_id=other_flow_id,
                    other_application_id=application_id, other_field_id=other_field_id,
                    other_seen_at=seen_at,
                )
            )  # fmt: skip
    return found


@dataclass(frozen=True, slots=True)
class ReuseAlert:
    """One identifier shared with one other flow, as a page or a queue item shows it."""

    kind: str
    value: str
    field_ids: tuple[int, ...]
    other_flow_id: int
    other_application_id: str
    other_field_ids: tuple[int, ...]
    other_seen_at: datetime

    @property
    def kind_label(self) -> str:
        return IdentifierKind(self.kind).label

    @property
    def shown_value(self) -> str:
        """Aadhaar and PAN masked; IMEI and invoice shown (not personal data)."""
        return mask_identifier(self.kind, self.value)

    @property
    def other_url(self) -> str:
        return reverse("flows:detail", args=[self.other_flow_id])

    @property
    def reason(self) -> str:
        return (
            f"{self.kind_label} {self.shown_value} also appears in application "
            f"{self.other_application_id}"
        )


def reuse_alerts_for_flow(
    flow: Flow, window_days: int | None = None, *, mine: Mine | None = None
) -> list[ReuseAlert]:
    """find_reuse grouped by (identifier, other flow), newest other flow first."""
    return alerts_of(find_reuse(flow, window_days, mine=mine))


def alerts_of(reuses: list[Reuse]) -> list[ReuseAlert]:
    """Reuse records grouped by (identifier, other flow), newest other flow first."""
    grouped: dict[tuple[str, str, int], list[Reuse]] = {}
    for r in reuses:
        grouped.setdefault((r.kind, r.value, r.other_flow_id), []).append(r)
    alerts = [
        ReuseAlert(
            kind=kind,
            value=value,
            field_ids=tuple(sorted({r.field_id for r in rows})),
            other_flow_id=other_flow_id,
            other_application_id=rows[0].other_application_id,
            other_field_ids=tuple(sorted({r.other_field_id for r in rows})),
            other_seen_at=min(r.other_seen_at for r in rows),
        )
        for (kind, value, other_flow_id), rows in grouped.items()
    ]
    return sorted(alerts, key=lambda a: (a.other_seen_at, a.kind), reverse=True)
