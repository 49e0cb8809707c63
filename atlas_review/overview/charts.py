"""Chart geometry for the overview: plain Python that turns figures into SVG shapes.

The page template holds each chart's <svg> element and legend; Svg.shapes writes the shapes
inside it (rects, lines, text). They are written here rather than looped over in the
template because there can be thousands (a heat map of 25 reviewers by 90 days is 2,250
cells) and a template loop costs about ten times as much per shape. Every value is escaped. Colours are CSS classes (static/css/overview.css),
sizes SVG attributes: the page's CSP forbids style attributes, not presentation attributes.
Coordinates are in viewBox units (WIDTH wide); the SVG scales to its card.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from html import escape as esc

from django.utils.safestring import SafeString, mark_safe

WIDTH = 640
FONT = 11  # px, matches .chart text in overview.css


def _n(x: float) -> str:
    """A coordinate as the SVG gets it: one decimal, no trailing zeros."""
    return f"{x:.1f}".removesuffix(".0")


@dataclass(frozen=True)
class Rect:
    x: str
    y: str
    width: str
    height: str
    cls: str
    title: str = ""
    opacity: str = ""  # fill-opacity, for heat maps


@dataclass(frozen=True)
class Line:
    x1: str
    y1: str
    x2: str
    y2: str
    cls: str
    title: str = ""


@dataclass(frozen=True)
class Text:
    x: str
    y: str
    text: str
    cls: str = ""
    anchor: str = "start"


@dataclass(frozen=True)
class Polyline:
    points: str
    cls: str


@dataclass
class Svg:
    label: str  # what a screen reader says for the whole chart
    height: float = 0
    width: int = WIDTH
    rects: list[Rect] = field(default_factory=list)
    lines: list[Line] = field(default_factory=list)
    texts: list[Text] = field(default_factory=list)
    polylines: list[Polyline] = field(default_factory=list)
    legend: list[tuple[str, str]] = field(default_factory=list)  # (css class, label)

    @property
    def view_height(self) -> str:
        return _n(self.height)

    @property
    def shapes(self) -> SafeString:
        """The shapes as SVG markup: grid lines under the bars, markers and text above.
        Every value is escaped (html.escape: Django's escape is many times slower per call,
        and a heat map has thousands)."""

        def title(text: str) -> str:
            return f"<title>{esc(text)}</title>" if text else ""

        def line(ln: Line) -> str:
            return (f'<line x1="{esc(ln.x1)}" y1="{esc(ln.y1)}" x2="{esc(ln.x2)}" y2="{esc(ln.y2)}" '
                    f'class="{esc(ln.cls)}">{title(ln.title)}</line>')  # fmt: skip

        def rect(r: Rect) -> str:
            opacity = f' fill-opacity="{esc(r.opacity)}"' if r.opacity else ""
            return (f'<rect x="{esc(r.x)}" y="{esc(r.y)}" width="{esc(r.width)}" height="{esc(r.height)}" '
                    f'class="{esc(r.cls)}"{opacity}>{title(r.title)}</rect>')  # fmt: skip

        parts = [line(ln) for ln in self.lines if ln.cls == "grid"]
        parts += [rect(r) for r in self.rects]
        parts += [
            f'<polyline points="{esc(p.points)}" class="{esc(p.cls)}"/>' for p in self.polylines
        ]
        parts += [line(ln) for ln in self.lines if ln.cls != "grid"]
        parts += [
            f'<text x="{esc(t.x)}" y="{esc(t.y)}" class="{esc(t.cls)}" text-anchor="{esc(t.anchor)}">'
            f"{esc(t.text)}</text>"
            for t in self.texts
        ]
        return mark_safe("".join(parts))  # noqa: S308 - every value above is escaped

    def rect(self, x, y, w, h, cls, title="", opacity=None) -> None:
        self.rects.append(
            Rect(_n(x), _n(y), _n(max(w, 0)), _n(max(h, 0)), cls, title,
                 "" if opacity is None else f"{opacity:.2f}")
        )  # fmt: skip

    def line(self, x1, y1, x2, y2, cls, title="") -> None:
        self.lines.append(Line(_n(x1), _n(y1), _n(x2), _n(y2), cls, title))

    def text(self, x, y, text, cls="", anchor="start") -> None:
        self.texts.append(Text(_n(x), _n(y), text, cls, anchor))


def nice_max(value: float) -> int:
    """The axis maximum for counts: at least `value`, and its half (the middle grid line) a
    whole number: an even number up to 10, then 1, 2, (2.5 from 100 on) or 5 times a power
    of ten."""
    if value <= 10:
        return max(2, 2 * math.ceil(value / 2))
    power = 10 ** math.floor(math.log10(value))
    steps = (1, 2, 2.5, 5, 10) if power >= 100 else (1, 2, 5, 10)
    return int(next(step * power for step in steps if value <= step * power))


def short_number(value: float) -> str:
    if value >= 10_000:
        return f"{value / 1000:.0f}k"
    if value >= 1000:
        return f"{value / 1000:.1f}k".replace(".0k", "k")
    return f"{value:g}"


def day_label(day: date) -> str:
    return f"{day.day} {day:%b}"


def label_every(count: int, room: int = 8) -> int:
    """Label one day in N so that at most `room` labels fit under an axis."""
    return max(1, math.ceil(count / room))


def clip(text: str, chars: int) -> str:
    return text if len(text) <= chars else text[: chars - 1] + "…"


# --- horizontal bars ------------------------------------------------------------------------


@dataclass(frozen=True)
class Segment:
    value: float
    cls: str
    title: str = ""


@dataclass(frozen=True)
class BarRow:
    label: str
    segments: Sequence[Segment]
    note: str = ""  # printed after the bar

    @property
    def total(self) -> float:
        return sum(s.value for s in self.segments)


def hbars(
    rows: Sequence[BarRow],
    *,
    label: str,
    max_value: float | None = None,
    label_width: int = 190,
    note_width: int = 170,
) -> Svg:
    """One bar per row, made of stacked segments, its note printed after it."""
    row_h, bar_h = 24, 14
    svg = Svg(label=label, height=max(len(rows), 1) * row_h + 6)
    top = max_value or max((r.total for r in rows), default=0) or 1
    span = WIDTH - label_width - note_width
    for i, row in enumerate(rows):
        y = 4 + i * row_h
        svg.text(label_width - 8, y + bar_h - 3, clip(row.label, 30), "label", "end")
        x = label_width
        for seg in row.segments:
            w = span * seg.value / top
            if w > 0:
                svg.rect(x, y, max(w, 1), bar_h, seg.cls, seg.title)
            x += w
        svg.text(x + 6, y + bar_h - 3, row.note, "note")
    svg.line(label_width, 0, label_width, svg.height, "axis")
    return svg


# --- columns by day ------------------------------------------------------------------------


def day_columns(
    days: Sequence[date],
    series: Sequence[tuple[str, str, str]],
    values: dict[tuple[date, str], int],
    *,
    label: str,
    unit: str = "",
) -> Svg:
    """Stacked columns, one per day; series are (key, css class, label)."""
    left, right, top, plot_h, bottom = 40, 8, 8, 150, 22
    svg = Svg(label=label, height=top + plot_h + bottom)
    svg.legend = [(cls, name) for _key, cls, name in series]
    totals = [sum(values.get((d, key), 0) for key, _c, _l in series) for d in days]
    y_max = nice_max(max(totals, default=0))
    plot_w = WIDTH - left - right
    slot = plot_w / max(len(days), 1)
    for fraction in (0, 0.5, 1):
        y = top + plot_h * (1 - fraction)
        svg.line(left, y, WIDTH - right, y, "grid")
        svg.text(left - 4, y + 4, short_number(y_max * fraction), "tick", "end")
    every = label_every(len(days))
    for i, day in enumerate(days):
        x = left + i * slot + slot * 0.1
        y = top + plot_h
        for key, cls, name in series:
            n = values.get((day, key), 0)
            if n:
                h = plot_h * n / y_max
                y -= h
                svg.rect(x, y, slot * 0.8, h, cls, f"{day_label(day)}: {n:,} {name.lower()}{unit}")
        if i % every == 0:
            svg.text(
                left + i * slot + slot / 2, top + plot_h + 15, day_label(day), "tick", "middle"
            )
    return svg


# --- heat map -------------------------------------------------------------------------------


def heatmap(
    rows: Sequence[str],
    days: Sequence[date],
    values: dict[tuple[str, date], int],
    *,
    label: str,
    unit: str,
) -> Svg:
    """Rows (reviewers) by days; each cell's shade is its count against the busiest cell."""
    left, top, cell_h, gap = 120, 4, 16, 2
    cell_w = min(40, (WIDTH - left - 4) / max(len(days), 1))
    svg = Svg(label=label, height=top + max(len(rows), 1) * (cell_h + gap) + 20)
    top_value = max(values.values(), default=0) or 1
    for r, name in enumerate(rows):
        y = top + r * (cell_h + gap)
        svg.text(left - 8, y + cell_h - 4, clip(name, 18), "label", "end")
        for c, day in enumerate(days):
            n = values.get((name, day), 0)
            title = f"{name} · {day_label(day)}: {n:,} {unit}"
            x = left + c * cell_w
            if n:
                svg.rect(x, y, cell_w - gap, cell_h, "heat", title, 0.15 + 0.85 * n / top_value)
            else:
                svg.rect(x, y, cell_w - gap, cell_h, "heat-empty", title)
    every = label_every(len(days), room=int((WIDTH - left) / 48))
    y = top + len(rows) * (cell_h + gap) + 12
    for c, day in enumerate(days):
        if c % every == 0:
            svg.text(left + c * cell_w + cell_w / 2, y, day_label(day), "tick", "middle")
    return svg


# --- histograms, one row per field ----------------------------------------------------------


@dataclass(frozen=True)
class HistogramRow:
    label: str
    counts: Sequence[int]  # one per bucket
    marker: float | None = None  # the threshold in force, in the value's own scale
    note: str = ""


def histogram_rows(
    rows: Sequence[HistogramRow],
    *,
    lo: float,
    hi: float,
    label: str,
    fmt: Callable[[float], str] = lambda v: f"{v:g}",
) -> Svg:
    """Small multiples: each row's buckets drawn against that row's largest bucket, so the
    shape of every field shows even when one field has most of the data. Buckets wholly
    below the row's threshold are drawn as `under`."""
    left, strip_w, row_h, bar_max = 200, 260, 30, 24
    svg = Svg(label=label, height=max(len(rows), 1) * row_h + 22)
    for i, row in enumerate(rows):
        base = 4 + i * row_h + bar_max
        svg.text(left - 8, base - 6, clip(row.label, 32), "label", "end")
        n = len(row.counts)
        width = strip_w / n
        peak = max(row.counts, default=0) or 1
        total = sum(row.counts) or 1
        for b, count in enumerate(row.counts):
            edge_lo = lo + (hi - lo) * b / n
            edge_hi = lo + (hi - lo) * (b + 1) / n
            under = row.marker is not None and edge_hi <= row.marker
            h = bar_max * count / peak
            svg.rect(
                left + b * width + 1, base - h, width - 2, h, "under" if under else "over",
                f"{fmt(edge_lo)}–{fmt(edge_hi)}: {count:,} ({100 * count / total:.1f}%)",
            )  # fmt: skip
        svg.line(left, base, left + strip_w, base, "axis")
        if row.marker is not None:
            x = left + strip_w * (row.marker - lo) / (hi - lo)
            svg.line(x, base - bar_max - 2, x, base + 2, "marker", f"threshold {fmt(row.marker)}")
        svg.text(left + strip_w + 10, base - 6, row.note, "note")
    y = len(rows) * row_h + 18
    for fraction in (0, 0.5, 1):
        svg.text(left + strip_w * fraction, y, fmt(lo + (hi - lo) * fraction), "tick", "middle")
    return svg


# --- threshold effect -----------------------------------------------------------------------


def threshold_curve(
    points: Sequence[tuple[float, int]],
    *,
    lo: float,
    hi: float,
    current: float | None,
    trial: float,
    label: str,
    fmt: Callable[[float], str] = lambda v: f"{v:g}",
) -> Svg:
    """Items under the threshold as the threshold moves (a step line), with the threshold
    in force and the one being tried marked."""
    left, right, top, plot_h, bottom = 48, 12, 10, 170, 24
    svg = Svg(label=label, height=top + plot_h + bottom)
    plot_w = WIDTH - left - right
    y_max = nice_max(max((n for _t, n in points), default=0))

    def x_of(t: float) -> float:
        return left + plot_w * (t - lo) / (hi - lo)

    def y_of(n: float) -> float:
        return top + plot_h * (1 - n / y_max)

    for fraction in (0, 0.5, 1):
        y = top + plot_h * (1 - fraction)
        svg.line(left, y, WIDTH - right, y, "grid")
        svg.text(left - 4, y + 4, short_number(y_max * fraction), "tick", "end")
    for fraction in (0, 0.25, 0.5, 0.75, 1):
        t = lo + (hi - lo) * fraction
        svg.text(x_of(t), top + plot_h + 16, fmt(t), "tick", "middle")
    steps: list[str] = []
    previous = None
    for t, n in points:
        if previous is not None:
            steps.append(f"{_n(x_of(t))},{_n(y_of(previous))}")
        steps.append(f"{_n(x_of(t))},{_n(y_of(n))}")
        previous = n
    svg.polylines.append(Polyline(" ".join(steps), "curve"))
    for t, n in points:
        svg.rect(x_of(t) - 2, y_of(n) - 2, 4, 4, "dot", f"below {fmt(t)}: {n:,}")
    if current is not None:
        svg.line(x_of(current), top, x_of(current), top + plot_h, "marker",
                 f"in force: {fmt(current)}")  # fmt: skip
        svg.legend.append(("marker", f"in force ({fmt(current)})"))
    svg.line(x_of(trial), top, x_of(trial), top + plot_h, "trial", f"tried: {fmt(trial)}")
    svg.legend.append(("trial", f"tried ({fmt(trial)})"))
    return svg
