from urllib.parse import urlsplit

from django import template
from django.conf import settings

from atlas_review.flows.models import display

register = template.Library()

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".gif", ".webp", ".svg")


@register.filter
def band(confidence: float | None) -> str:
    """Confidence as a band a reviewer reads at a glance."""
    if confidence is None:
        return "none"
    if confidence < 0.5:
        return "low"
    if confidence < settings.REVIEW_CONFIDENCE_THRESHOLD:
        return "medium"
    return "high"


@register.filter
def similarity_band(score: float | None) -> str:
    if score is None:
        return "none"
    if score < settings.REVIEW_SIMILARITY_HIGH_PRIORITY:
        return "low"
    if score < settings.REVIEW_SIMILARITY_THRESHOLD:
        return "medium"
    return "high"


@register.filter
def percent(confidence: float | None) -> str:
    return "–" if confidence is None else f"{confidence * 100:.0f}%"


@register.filter
def show(value) -> str:
    return display(value)


@register.filter
def http_url(url: str) -> str:
    """Only http(s) URLs are ever rendered as links or images (never javascript: etc.)."""
    try:
        scheme = urlsplit(url or "").scheme.lower()
    except ValueError:
        return ""
    return url if scheme in ("http", "https") else ""


@register.filter
def is_image(url: str) -> bool:
    path = urlsplit(url or "").path.lower()
    return path.endswith(IMAGE_EXTENSIONS)
