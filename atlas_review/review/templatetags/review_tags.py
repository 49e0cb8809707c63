from django import template

from atlas_review.checks.masking import mask_cross_check
from atlas_review.review import flagging, queries
from atlas_review.review.diff import diff_pair

register = template.Library()


@register.simple_tag
def diff(source, target):
    """{% diff a b as pair %} → pair.0 / pair.1: both values with differences marked. Shows
    the values in clear: a cross-check pair goes through pair_diff (masked)."""
    return diff_pair(source, target)


@register.simple_tag
def pair_diff(check):
    """{% pair_diff cross_check as pair %}: the pair's two values with differences marked,
    computed on the masked values, so a personal identifier never reaches the page whole
    (the diff of two clear Aadhaar numbers would print both)."""
    return diff_pair(*mask_cross_check(check))


@register.filter
def reuse_partner(item) -> int | None:
    """The other flow a reuse item links to (None for other items)."""
    return flagging.reuse_partner(item.key)


@register.filter
def capped(count: int) -> str:
    return f"{queries.COUNT_CAP}+" if count > queries.COUNT_CAP else str(count)


@register.filter
def get_count(counts: dict | None, queue: str) -> int:
    return (counts or {}).get(queue, 0)
