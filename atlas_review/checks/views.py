from django.contrib.auth.decorators import login_required, permission_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from atlas_review.flows.models import ExtractedField

from .services import record_reveal


@require_POST
@login_required
@permission_required("flows.view_extractedfield", raise_exception=True)
@never_cache  # a clear personal value must not sit in any cache
def reveal(request: HttpRequest, field_id: int) -> HttpResponse:
    """Show one masked value in clear, and record who saw it."""
    field = get_object_or_404(ExtractedField.objects.select_related("flow"), pk=field_id)
    event = record_reveal(request.user, field)
    template = "checks/reveal.html#value" if request.htmx else "checks/reveal.html"
    return render(request, template, {"field": field, "event": event})
