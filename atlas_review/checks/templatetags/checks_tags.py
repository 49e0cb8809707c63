"""Showing checks and personal data on pages.

    {% load checks_tags %}
    {{ field|masked }}                      the value, Aadhaar/PAN masked
    {% mask doc_type field_name value %}    the same for a value that is not a field
    {% mask_pair check as pair %}           a cross-check's two values: pair.0, pair.1
    {% field_value field %}                 masked value with a "Reveal" button
    {% field_checks field %}                "✓ Aadhaar checksum" / "✗ reason" badges
    {% reuse_alerts flow %}                 other applications sharing an identifier

field_checks reads field.check_results.all(): prefetch "check_results" (or
"fields__check_results") or it costs one query per field.
"""

from django import template

from atlas_review.checks.masking import is_masked, mask_cross_check, mask_value
from atlas_review.checks.reuse import reuse_alerts_for_flow

register = template.Library()


@register.filter
def masked(field) -> str:
    return mask_value(field.document_type, field.name, field.value)


@register.simple_tag
def mask(document_type: str, field_name: str, value) -> str:
    return mask_value(document_type, field_name, value)


@register.simple_tag
def mask_pair(check) -> tuple[str, str]:
    """Both values of a flows.CrossCheck: when either side is personal data, both are
    masked as it (the other side may be a field not named for it)."""
    return mask_cross_check(check)


@register.inclusion_tag("checks/widgets.html#field_value", takes_context=True)
def field_value(context, field) -> dict:
    return {
        "field": field,
        "text": mask_value(field.document_type, field.name, field.value),
        "is_masked": is_masked(field.document_type, field.name, field.value),
        "csrf_token": context.get("csrf_token"),
    }


@register.inclusion_tag("checks/widgets.html#field_checks")
def field_checks(field) -> dict:
    return {"results": list(field.check_results.all())}


@register.inclusion_tag("checks/widgets.html#reuse_alerts")
def reuse_alerts(flow) -> dict:
    return {"alerts": reuse_alerts_for_flow(flow)}
