from django.conf import settings
from django.contrib.auth.decorators import login_required, permission_required
from django.core.paginator import Paginator
from django.db.models import Prefetch, Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET
from django.views.decorators.vary import vary_on_headers

from .models import ACTIVE_SYNC_STATES, CrossCheck, Document, ExtractedField, Flow

PAGE_SIZE = 50


@require_GET
@login_required
@permission_required("flows.view_flow", raise_exception=True)
@vary_on_headers("HX-Request")
def flow_list(request: HttpRequest) -> HttpResponse:
    flows = Flow.objects.with_counts(
        settings.REVIEW_CONFIDENCE_THRESHOLD, settings.REVIEW_SIMILARITY_THRESHOLD
    )
    state = request.GET.get("state", "")
    if state == "processing":
        flows = flows.filter(sync_state__in=ACTIVE_SYNC_STATES)
    elif state == "failed":
        flows = flows.sync_failed()
    query = request.GET.get("q", "").strip()
    if query:
        flows = flows.filter(Q(application_id__icontains=query) | Q(flow_uuid=query))
    page = Paginator(flows.order_by("-created_at", "-id"), PAGE_SIZE).get_page(
        request.GET.get("page")
    )
    template = "flows/flow_list.html#rows" if request.htmx else "flows/flow_list.html"
    return render(
        request,
        template,
        {
            "page": page,
            "state": state,
            "q": query,
            "any_processing": any(f.is_processing for f in page),
        },
    )


@require_GET
@login_required
@permission_required("flows.view_flow", raise_exception=True)
def flow_detail(request: HttpRequest, pk: int) -> HttpResponse:
    flow = get_object_or_404(Flow, pk=pk)
    documents = (
        Document.objects.current()
        .filter(flow=flow)
        .prefetch_related(
            Prefetch(
                "fields",
                queryset=ExtractedField.objects.current()
                .order_by("position")
                .prefetch_related("check_results"),  # "✓ Aadhaar checksum" beside confidence
            )
        )
    )
    checks = CrossCheck.objects.current().filter(flow=flow).order_by("similarity", "position")
    return render(
        request,
        "flows/flow_detail.html",
        {
            "flow": flow,
            "documents": documents,
            "checks": checks,
            "confidence_threshold": settings.REVIEW_CONFIDENCE_THRESHOLD,
            "similarity_threshold": settings.REVIEW_SIMILARITY_THRESHOLD,
            "similarity_high": settings.REVIEW_SIMILARITY_HIGH_PRIORITY,
        },
    )
