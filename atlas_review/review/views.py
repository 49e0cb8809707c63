"""Review pages: the queues, the flow review page, and the POSTs that decide, close,
skip, release and reopen. Thin: the work is in services, queries and flagging."""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.core.exceptions import PermissionDenied
from django.db.models import Prefetch
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.defaultfilters import floatformat
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST
from django.views.decorators.vary import vary_on_headers
from django_htmx.http import HttpResponseClientRedirect

from atlas_review.checks.masking import is_masked, mask_value, shown
from atlas_review.checks.models import RevealEvent
from atlas_review.flows.models import CrossCheck, Document, ExtractedField, Flow, display
from atlas_review.flows.templatetags.atlas_tags import band, percent, similarity_band

from . import flagging, queries, services
from .models import (
    Action,
    DecisionEvent,
    FlowReview,
    ItemStatus,
    Kind,
    Outcome,
    Queue,
    ReasonCode,
    ReviewItem,
)
from .queries import QueueFilters
from .templatetags.review_tags import age

VIEW, DECIDE = "review.view_reviewitem", "review.decide"
RELEASE, REOPEN, SEE_ALL = "review.release_claim", "review.reopen_flow", "review.view_all_work"
HISTORY_LIMIT = 50

_KIND_ORDER = {Kind.REOPENED: 0, Kind.SYNC_FAILED: 1, Kind.EXCEPTION: 2, Kind.CROSS_CHECK: 3}


def _get_flow_for_user(request: HttpRequest, flow_id: int, perm: str = VIEW) -> Flow:
    """The flow with its review state, if the user's role may `perm` on review pages."""
    if not request.user.has_perm(perm):
        raise PermissionDenied
    return get_object_or_404(
        Flow.objects.select_related("review__claimed_by", "review__closed_by"), pk=flow_id
    )


def _review_of(flow: Flow) -> FlowReview:
    # Flows nothing has flagged yet have no review row; an unsaved one reads the same.
    return getattr(flow, "review", None) or FlowReview(flow=flow)


def _queue_from(data) -> str:
    queue = data.get("queue", "")
    return queue if queue in Queue.values else Queue.FIELDS


def _carry(queue: str, filters: QueueFilters) -> dict[str, str]:
    """What the review page passes on (in links and hidden inputs) so that the next flow
    comes from the queue and filters the agent was working on."""
    return {"queue": queue, **filters.as_params()}


def _review_url(flow_id: int, carry: dict[str, str]) -> str:
    return f"{reverse('review:flow', args=[flow_id])}?{urlencode(carry)}"


def _queue_url(queue: str, filters: QueueFilters) -> str:
    qs = filters.querystring()
    return reverse("review:queue", args=[queue]) + (f"?{qs}" if qs else "")


def _url_around(name: str, placeholder: int | str) -> tuple[str, str]:
    """The URL named `name` with one argument, as the text before and after that argument,
    so that a page needing it for many arguments reverses it once. The placeholder must
    pass the argument's converter and appear nowhere else in the URL."""
    head, found, tail = reverse(name, args=[placeholder]).rpartition(str(placeholder))
    if not found:
        raise ValueError(f"{placeholder!r} not in the URL of {name}")
    return head, tail


def _go(request: HttpRequest, url: str) -> HttpResponse:
    if request.htmx:
        return HttpResponseClientRedirect(url)
    return redirect(url)


# --- queues -------------------------------------------------------------------------------


@require_GET
@login_required
def home(request: HttpRequest) -> HttpResponse:
    return redirect("review:queue", Queue.FIELDS)


@require_GET
@login_required
@permission_required(VIEW, raise_exception=True)
@vary_on_headers("HX-Request")
def queue(request: HttpRequest, queue: str) -> HttpResponse:
    if queue not in Queue.values:
        raise Http404("No such queue")
    user = request.user
    filters = QueueFilters.from_query(request.GET)
    see_all = user.has_perm(SEE_ALL)
    page = queries.queue_page(
        queue, filters, user, see_all=see_all, cursor=request.GET.get("after")
    )
    carry = urlencode(_carry(queue, filters))
    # Each row links to its flow: the URL is reversed once, not once a row (reverse() is
    # most of what a {% url %} per row costs).
    flow_head, flow_tail = _url_around("review:flow", 999_999_999)
    now = timezone.now()
    for item in page.rows:
        item.review_url = f"{flow_head}{item.flow_id}{flow_tail}?{carry}"
        if not hasattr(item, "current_decisions"):
            # Only prefetched off the open queue; set, so the template's lookup of it does
            # not fail (a failed lookup costs Django a dir() of the item, per row).
            item.current_decisions = ()
        _row_display(item, queue, now)
    queue_head, queue_tail = _url_around("review:queue", "queue-placeholder")
    context = {
        "queue": queue,
        "queue_label": Queue(queue).label,
        "queue_tabs": [(v, label, f"{queue_head}{v}{queue_tail}") for v, label in Queue.choices],
        "queue_url": f"{queue_head}{queue}{queue_tail}",
        "now": now,
        "filters": filters,
        "page": page,
        "carry": carry,
        "next_url": f"?{filters.querystring(after=page.next_cursor)}" if page.next_cursor else "",
        "first_url": f"?{filters.querystring()}",
        "paged": bool(request.GET.get("after")),
        "statuses": [*ItemStatus.choices, (queries.STATUS_ALL, "All")],
        "ages": [
            ("", "Any age"),
            ("1h", "Older than 1 hour"),
            ("1d", "Older than 1 day"),
            ("7d", "Older than 7 days"),
        ],
        "see_all": see_all,
        "can_decide": user.has_perm(DECIDE),
    }
    if request.htmx:
        return render(request, "review/queue.html#rows", context)
    context["review_counts"] = queries.open_counts()
    context["holders"] = services.current_holders() if see_all else []
    return render(request, "review/queue.html", context)


def _row_display(item, queue: str, now) -> None:
    """What a queue row prints, computed here: each filter or tag a template applies per
    row costs more than the Python it runs (a 50-row page made ~1,400 template look-ups).
    Only what the queue shows: its rows join only that (queries._SHOWN_WITH)."""
    item.subject_text = item.subject
    item.priority_class = item.get_priority_display().lower()
    item.age_text = age(item.created_at, now)
    if queue == Queue.CHECKS:
        item.score_band = similarity_band(item.score)
        item.score_text = floatformat(item.score, "-1") or "–"
    elif queue not in (Queue.EXCEPTIONS, Queue.QA) and item.field_id:
        field = item.field
        item.shown_value = mask_value(field.document_type, field.name, field.value)
        item.value_masked = is_masked(field.document_type, field.name, field.value)
        item.confidence_band = band(field.confidence)
        item.confidence_text = percent(field.confidence)


@require_GET
@login_required
@permission_required(VIEW, raise_exception=True)
def nav_counts(request: HttpRequest) -> HttpResponse:
    """The queue links of the top bar with their open counts (loaded by htmx after the page,
    refreshed every 30 s)."""
    return render(request, "review/nav_counts.html", {"counts": queries.open_counts()})


@require_POST
@login_required
@permission_required(DECIDE, raise_exception=True)
def next_flow(request: HttpRequest, queue: str) -> HttpResponse:
    """Claim the first flow of the queue nobody holds, and open it."""
    if queue not in Queue.values:
        raise Http404("No such queue")
    filters = QueueFilters.from_query(request.POST)
    flow_id = services.claim_next(
        request.user, queue, filters, see_all=request.user.has_perm(SEE_ALL)
    )
    if flow_id is None:
        messages.info(request, "Nothing left in this queue that nobody else holds.")
        return _go(request, _queue_url(queue, filters))
    return _go(request, _review_url(flow_id, _carry(queue, filters)))


# --- the flow review page ----------------------------------------------------------------


@require_GET
@login_required
@permission_required(VIEW, raise_exception=True)
def flow_review(request: HttpRequest, flow_id: int) -> HttpResponse:
    user = request.user
    flow = _get_flow_for_user(request, flow_id)
    review = _review_of(flow)
    now = timezone.now()
    look_only = request.GET.get("view") == "1"  # a supervisor looking, not taking
    # Opening a flow claims it for the agent (or renews their claim). A GET with a side
    # effect, deliberately: it is idempotent, expires by itself, and the SameSite=Lax
    # session cookie keeps other sites from triggering it.
    if (
        user.has_perm(DECIDE)
        and not look_only
        and not review.is_closed
        and not review.held_by_other(user, now)
        and services.claim(flow.pk, user, now)
    ):
        review.claimed_by, review.claim_expires_at = user, services.claim_expiry(now)
    queue = _queue_from(request.GET)
    filters = QueueFilters.from_query(request.GET)
    context = _page_context(request, flow, review, _carry(queue, filters), now)
    return render(request, "review/flow.html", context)


def _can_act(user, review: FlowReview, now) -> bool:
    holder = review.holder(now)
    return (
        user.has_perm(DECIDE)
        and not review.is_closed
        and holder is not None
        and holder.pk == user.pk
    )


def _items(flow: Flow) -> list[ReviewItem]:
    items = list(
        ReviewItem.objects.filter(flow=flow)
        .exclude(status=ItemStatus.CLEARED)
        .select_related("field", "cross_check", "document")
        # The ✓/✗ check badges beside each field's confidence.
        .prefetch_related(queries.current_decisions(), "field__check_results")
    )
    for item in items:
        _decorate(item)
    items.sort(
        key=lambda i: (
            i.priority,
            _KIND_ORDER.get(i.kind, 9),
            i.document.position if i.document else 0,
            i.field.position if i.field else 0,
            i.pk,
        )
    )
    return items


def _decorate(item: ReviewItem) -> None:
    item.decision = item.current_decisions[0] if item.current_decisions else None
    # Personal data stays masked in what the page shows: a correction typed on an Aadhaar
    # field is one too. The Atlas value itself goes through the field_value tag (masked,
    # with its Reveal button).
    item.shown_corrected = (
        _shown(item, item.decision.corrected_value)
        if item.decision and item.decision.action == Action.CORRECT
        else ""
    )
    item.value_masked = bool(
        item.field and is_masked(item.field.document_type, item.field.name, item.field.value)
    )
    # What the Correct box starts with: never a masked text (saved back, it would become
    # the correction), so a masked value starts empty.
    if item.shown_corrected:
        clear = display(item.decision.corrected_value)
        item.prefill = clear if item.shown_corrected == clear else ""
    elif item.field and not item.value_masked:
        item.prefill = display(item.field.value)
    else:
        item.prefill = ""
    item.other_flow_id = flagging.reuse_partner(item.key) if item.kind == Kind.REUSE else None


def _shown(item: ReviewItem, value) -> str:
    return shown(
        value, document_type=item.document_type, field_name=item.name, check=item.cross_check
    )


def _timeline(flow: Flow) -> list:
    """The flow's last HISTORY_LIMIT events: decisions and outcomes, and who revealed which
    masked value (recorded by the checks app), newest first. Values shown masked."""
    events = list(
        DecisionEvent.objects.filter(flow=flow)
        .select_related("field", "cross_check")
        .order_by("-at", "-id")[:HISTORY_LIMIT]
    )
    for e in events:
        e.revealed = False
        if e.field is not None:
            e.shown_new_value = shown(
                e.new_value, document_type=e.field.document_type, field_name=e.field.name
            )
        elif e.cross_check is not None:
            e.shown_new_value = shown(e.new_value, check=e.cross_check)
        else:  # a "missing:" item: its subject is the document type and field name
            document_type, _dot, name = e.subject.partition(".")
            e.shown_new_value = shown(e.new_value, document_type=document_type, field_name=name)
    reveals = list(RevealEvent.objects.filter(flow=flow).order_by("-at", "-id")[:HISTORY_LIMIT])
    for r in reveals:
        r.revealed = True
    return sorted(events + reveals, key=lambda e: e.at, reverse=True)[:HISTORY_LIMIT]


def _partner_labels(items: list[ReviewItem]) -> None:
    """Reuse items link to the other application: its id, one query if there are any."""
    ids = {i.other_flow_id for i in items if i.other_flow_id}
    if not ids:
        return
    labels = dict(Flow.objects.filter(pk__in=ids).values_list("pk", "application_id"))
    for item in items:
        item.other_application_id = labels.get(item.other_flow_id, "")


def _page_context(request, flow: Flow, review: FlowReview, carry: dict, now) -> dict:
    user = request.user
    items = _items(flow)
    _partner_labels(items)
    documents = list(
        Document.objects.current()
        .filter(flow=flow)
        .prefetch_related(
            Prefetch(
                "fields",
                queryset=ExtractedField.objects.current()
                .order_by("position")
                .prefetch_related("check_results"),
            )
        )
    )
    flagged_fields = {i.field_id for i in items if i.field_id}
    first_of_type: dict[str, int] = {}
    for doc in documents:
        # Flagged fields first, then the rest in Atlas's order.
        doc.sorted_fields = sorted(doc.fields.all(), key=lambda f: f.pk not in flagged_fields)
        doc.flagged_fields = flagged_fields
        if doc.document_type:
            first_of_type.setdefault(doc.document_type, doc.pk)
    for item in items:
        if item.cross_check_id:
            c = item.cross_check
            item.doc_ids = [
                d for d in (first_of_type.get(c.source_doc), first_of_type.get(c.target_doc)) if d
            ]
        else:
            item.doc_ids = [item.document_id] if item.document_id else []
    checks = list(CrossCheck.objects.current().filter(flow=flow).order_by("similarity", "position"))
    can_act = _can_act(user, review, now)
    return {
        "flow": flow,
        "review": review,
        "holder": review.holder(now),
        "holder_message": services.holder_message(review, now),
        "items": items,
        "decision_items": [i for i in items if i.needs_decision],
        "flow_items": [i for i in items if not i.needs_decision and i.is_open],
        "documents": documents,
        "checks": checks,
        "reasons": list(ReasonCode.objects.filter(active=True)) if can_act else [],
        "events": _timeline(flow),
        "summary": _summary(items),
        "outcomes": Outcome.choices,
        "can_act": can_act,
        "user_can_release": user.has_perm(RELEASE),
        "user_can_reopen": user.has_perm(REOPEN),
        "carry": carry,
        "carry_qs": urlencode(carry),
        "back_url": _queue_url(carry["queue"], QueueFilters.from_query(carry)),
    }


def _summary(items: list[ReviewItem]) -> dict[str, int]:
    decided = [i.decision for i in items if i.needs_decision and i.decision]
    counts = {a: sum(1 for d in decided if d.action == a) for a in Action.values}
    undecided = sum(1 for i in items if i.needs_decision and i.status == ItemStatus.OPEN)
    return {**counts, "decided": len(decided), "undecided": undecided}


# --- decisions -----------------------------------------------------------------------------


@require_POST
@login_required
@permission_required(DECIDE, raise_exception=True)
def decide(request: HttpRequest, flow_id: int, item_id: int) -> HttpResponse:
    user = request.user
    item = get_object_or_404(
        ReviewItem.objects.select_related("field", "cross_check", "document"),
        pk=item_id,
        flow_id=flow_id,
    )
    action = request.POST.get("action", "")
    reason = None
    raw_reason = request.POST.get("reason", "")
    if action == Action.REJECT and raw_reason.isdigit():
        reason = ReasonCode.objects.filter(pk=int(raw_reason), active=True).first()
    try:
        version = int(request.POST.get("version") or 0)
    except ValueError:
        version = 0
    error, status = "", 200
    try:
        services.decide(
            item, user, action, corrected_value=request.POST.get("corrected_value"),
            reason=reason, comment=request.POST.get("comment", "")[:2000], version=version,
        )  # fmt: skip
    except services.ReviewError as exc:
        error, status = exc.message, exc.status

    carry = _carry(_queue_from(request.POST), QueueFilters.from_query(request.POST))
    if not request.htmx:
        if error:
            messages.error(request, error)
        return redirect(f"{_review_url(flow_id, carry)}#item-{item_id}")

    # The item, redrawn with its decision (or the refusal), and the close panel out of band.
    flow = Flow.objects.select_related("review__claimed_by", "review__closed_by").get(pk=flow_id)
    review = _review_of(flow)
    now = timezone.now()
    items = _items(flow)
    item = next((i for i in items if i.pk == item_id), None)
    if item is None:  # cleared by new Atlas data meanwhile
        return HttpResponse(status=204)
    _partner_labels([item])
    can_act = _can_act(user, review, now)
    context = {
        "flow": flow,
        "review": review,
        "item": item,
        "error": error,
        "can_act": can_act,
        "reasons": list(ReasonCode.objects.filter(active=True)) if can_act else [],
        "summary": _summary(items),
        "outcomes": Outcome.choices,
        "carry": carry,
        "oob": True,
    }
    html = render_to_string("review/flow.html#item", context, request) + render_to_string(
        "review/flow.html#close", context, request
    )
    return HttpResponse(html, status=status)


# --- closing, skipping, releasing, reopening ------------------------------------------------


@require_POST
@login_required
@permission_required(DECIDE, raise_exception=True)
def close(request: HttpRequest, flow_id: int) -> HttpResponse:
    """Give the flow its outcome, then open the next flow of the queue at once, claimed."""
    user = request.user
    flow = _get_flow_for_user(request, flow_id, DECIDE)
    queue, filters = _queue_from(request.POST), QueueFilters.from_query(request.POST)
    try:
        services.close(
            flow.pk, user, request.POST.get("outcome", ""), request.POST.get("comment", "")[:2000]
        )
    except services.ReviewError as exc:
        messages.error(request, exc.message)
        return _go(request, _review_url(flow.pk, _carry(queue, filters)))
    messages.success(request, f"Application {flow.application_id} closed.")
    return _open_next(request, queue, filters, exclude={flow.pk})


@require_POST
@login_required
@permission_required(DECIDE, raise_exception=True)
def skip(request: HttpRequest, flow_id: int) -> HttpResponse:
    """Leave this flow for someone else (release one's claim) and take the next one."""
    flow = _get_flow_for_user(request, flow_id, DECIDE)
    services.release(flow.pk, request.user, own=True)
    queue, filters = _queue_from(request.POST), QueueFilters.from_query(request.POST)
    return _open_next(request, queue, filters, exclude={flow.pk})


def _open_next(request, queue: str, filters: QueueFilters, exclude) -> HttpResponse:
    see_all = request.user.has_perm(SEE_ALL)
    next_id = services.claim_next(request.user, queue, filters, see_all=see_all, exclude=exclude)
    if next_id is None:
        messages.info(request, "The queue is empty: nothing left that nobody else holds.")
        return _go(request, _queue_url(queue, filters))
    return _go(request, _review_url(next_id, _carry(queue, filters)))


@require_POST
@login_required
@permission_required(RELEASE, raise_exception=True)
def release(request: HttpRequest, flow_id: int) -> HttpResponse:
    flow = _get_flow_for_user(request, flow_id, RELEASE)
    if services.release(flow.pk, request.user):
        messages.success(request, "Claim released; the flow is back in the queue.")
    else:
        messages.info(request, "Nobody holds this flow.")
    carry = _carry(_queue_from(request.POST), QueueFilters.from_query(request.POST))
    return _go(request, reverse("review:flow", args=[flow.pk]) + f"?{urlencode(carry)}&view=1")


@require_POST
@login_required
@permission_required(REOPEN, raise_exception=True)
def reopen(request: HttpRequest, flow_id: int) -> HttpResponse:
    flow = _get_flow_for_user(request, flow_id, REOPEN)
    try:
        services.reopen(flow.pk, request.user, request.POST.get("comment", "")[:2000])
    except services.ReviewError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, "Flow reopened; it is back in the exceptions queue.")
    carry = _carry(Queue.EXCEPTIONS, QueueFilters())
    return _go(request, _review_url(flow.pk, carry) + "&view=1")
