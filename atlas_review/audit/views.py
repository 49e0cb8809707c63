"""Export pages for auditors and supervisors: pick filters, download at once (small
exports stream straight from the database) or start a background job (large ones), watch its
progress, download its file. Thin: the work is in exports.py."""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.contrib.auth.decorators import login_required, permission_required
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST
from django.views.decorators.vary import vary_on_headers
from django_htmx.http import HttpResponseStopPolling

from . import exports
from .filters import ExportFilterForm
from .models import ExportJob
from .tasks import run_export

EXPORT, SEE_ALL = "audit.export_data", "audit.view_all_exports"
RECENT = 20


class ExportForm(ExportFilterForm):
    """The filters plus what the web page also asks: which export, and Excel's BOM."""

    kind = forms.ChoiceField(
        choices=ExportJob.Kind.choices, initial=ExportJob.Kind.DECISIONS, widget=forms.RadioSelect
    )
    bom = forms.BooleanField(
        required=False, label="Byte order mark for Excel", help_text="Adds a BOM at the start."
    )


def _get_job_for_user(request: HttpRequest, pk: int) -> ExportJob:
    """Exports are their requester's; supervisors see everyone's. Others get a 404, not a
    hint that the export exists."""
    jobs = ExportJob.objects.select_related("user")
    if not request.user.has_perm(SEE_ALL):
        jobs = jobs.filter(user=request.user)
    return get_object_or_404(jobs, pk=pk)


def _page(request: HttpRequest, form: ExportForm, status: int = 200, **extra) -> HttpResponse:
    jobs = ExportJob.objects.select_related("user")
    if not request.user.has_perm(SEE_ALL):
        jobs = jobs.filter(user=request.user)
    context = {
        "form": form,
        "jobs": jobs[:RECENT],
        "see_all": request.user.has_perm(SEE_ALL),
        "inline_max": settings.EXPORT_INLINE_MAX_ROWS,
        "time_zone": settings.TIME_ZONE,
        **extra,
    }
    return render(request, "audit/exports.html", context, status=status)


@require_GET
@login_required
@permission_required(EXPORT, raise_exception=True)
def exports_page(request: HttpRequest) -> HttpResponse:
    return _page(request, ExportForm(initial={"kind": ExportJob.Kind.DECISIONS}))


@require_GET
@login_required
@permission_required(EXPORT, raise_exception=True)
def download(request: HttpRequest) -> HttpResponse:
    """Stream the CSV now, or, when it is larger than EXPORT_INLINE_MAX_ROWS, offer to
    prepare it in the background (a GET never starts a job)."""
    form = ExportForm(request.GET)
    if not form.is_valid():
        return _page(request, form, status=400)
    kind, filters, bom = form.cleaned_data["kind"], form.filters(), form.cleaned_data["bom"]
    limit = settings.EXPORT_INLINE_MAX_ROWS
    estimate = exports.estimate_rows(kind, filters, limit)
    if estimate > limit:
        return _page(request, form, too_large=True)
    job = exports.record(
        kind, filters, via=ExportJob.Via.WEB, user=request.user, bom=bom, rows_expected=estimate
    )
    response = StreamingHttpResponse(
        exports.stream(job, filters), content_type="text/csv; charset=utf-8"
    )
    response["Content-Disposition"] = f'attachment; filename="{job.download_name}"'
    response["Cache-Control"] = "no-store"
    return response


@require_POST
@login_required
@permission_required(EXPORT, raise_exception=True)
def start_job(request: HttpRequest) -> HttpResponse:
    form = ExportForm(request.POST)
    if not form.is_valid():
        return _page(request, form, status=400)
    job = exports.record(
        form.cleaned_data["kind"], form.filters(), via=ExportJob.Via.BACKGROUND,
        user=request.user, bom=form.cleaned_data["bom"], status=ExportJob.Status.QUEUED,
    )  # fmt: skip
    run_export.delay_on_commit(job.pk)
    return redirect(job)


@require_GET
@login_required
@permission_required(EXPORT, raise_exception=True)
@vary_on_headers("HX-Request")
def job_page(request: HttpRequest, pk: int) -> HttpResponse:
    job = _get_job_for_user(request, pk)
    if not request.htmx:
        return render(request, "audit/job.html", {"job": job})
    response = render(request, "audit/job.html#progress", {"job": job})
    if job.is_finished:
        # 286: htmx swaps in the final state (the download link) and stops polling.
        return HttpResponseStopPolling(response.content)
    return response


@require_GET
@login_required
@permission_required(EXPORT, raise_exception=True)
def job_file(request: HttpRequest, pk: int) -> FileResponse:
    job = _get_job_for_user(request, pk)
    path = job.path
    if job.status != ExportJob.Status.DONE or path is None:
        raise Http404("This export has no file (yet).")
    # The path comes from our own row, but never serve anything outside the exports folder.
    if exports.exports_dir().resolve() not in path.resolve().parents or not path.is_file():
        raise Http404("The file of this export is gone.")
    response = FileResponse(
        path.open("rb"),
        as_attachment=True,
        filename=job.download_name,
        content_type="text/csv; charset=utf-8",
    )
    response["Cache-Control"] = "no-store"
    return response
