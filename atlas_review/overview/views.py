"""The supervisor overview: queue health and Atlas quality on one page, every chart's numbers
a click away and in a CSV. Thin: the figures are in figures.py, their drawing in charts.py."""

from __future__ import annotations

import csv
from datetime import date, datetime
from urllib.parse import urlencode

from django.contrib.auth.decorators import login_required, permission_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET
from django.views.decorators.vary import vary_on_headers

from atlas_review.review.models import Scope

from . import figures
from .inputs import Inputs, OverviewFilters, ThresholdTrial

VIEW_OVERVIEW = "overview.view_overview"


@require_GET
@login_required
@permission_required(VIEW_OVERVIEW, raise_exception=True)
@vary_on_headers("HX-Request")
def overview(request: HttpRequest) -> HttpResponse:
    filters = OverviewFilters.from_query(request.GET)
    trial = ThresholdTrial.from_query(request.GET)
    inputs = Inputs(filters=filters, trial=trial)
    if request.GET.get("format") == "csv":
        name = request.GET.get("chart", "")
        if name not in figures.CHARTS:
            raise Http404("No such chart")
        # Through the cache like the page, so the file has the numbers the chart showed.
        return csv_response(figures.build([name], inputs)[name], filters)

    built = figures.build(list(figures.CHARTS), inputs)
    context = {
        "filters": filters,
        "trial": trial,
        "sections": [
            (title, [built[name] for name in names]) for title, names in figures.SECTIONS.items()
        ],
        "query": urlencode({**filters.as_params(), **trial.as_params()}),
        "scopes": Scope.choices,
        "now": inputs.now,
    }
    template = "overview/overview.html#figures" if request.htmx else "overview/overview.html"
    return render(request, template, context)


# --- CSV ----------------------------------------------------------------------------------

_FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value) -> object:
    """A value as a CSV cell: numbers as they are, times in the site's time zone, and text a
    spreadsheet could run as a formula (= + - @ tab CR first) behind a leading quote."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return timezone.localtime(value).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, str) and value.startswith(_FORMULA_TRIGGERS):
        return "'" + value
    return value


def csv_response(figure: figures.Figure, filters: OverviewFilters) -> HttpResponse:
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    name = f"overview-{figure.name}-{filters.date_from}-{filters.date_to}.csv"
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    writer = csv.writer(response)
    writer.writerow([c.key for c in figure.columns])
    writer.writerows([csv_cell(v) for v in row] for row in figure.rows)
    return response
