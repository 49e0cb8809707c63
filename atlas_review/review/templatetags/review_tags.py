from datetime import datetime

from django import template

from atlas_review.checks.masking import mask_cross_check
from atlas_review.review import flagging, queries
from atlas_review.review.diff import DiffPair, diff_pair, diff_text

register = template.Library()

_PAIR_DIFFS = "review_tags.pair_diff"  # the render's cache of pair_diff results


@register.simple_tag
def diff(source, target):
    """{% diff a b as pair %} → pair.0 / pair.1: both values with differences marked. Shows
    the values in clear: a cross-check pair goes through pair_diff (masked)."""
    return diff_pair(source, target)


@register.simple_tag(takes_context=True)
def pair_diff(context, check) -> DiffPair:
    """{% pair_diff cross_check as pair %}: the pair's two values with differences marked,
    computed on the masked values, so a personal identifier never reaches the page whole
    (the diff of two clear Aadhaar numbers would print both). A page diffs each distinct
    pair of shown values once (the cache lives as long as the template's render)."""
    shown = mask_cross_check(check)
    cache = context.render_context.setdefault(_PAIR_DIFFS, {})
    pair = cache.get(shown)
    if pair is None:
        pair = cache[shown] = diff_text(*shown)
    return pair


@register.filter
def age(when: datetime | None, now: datetime | None) -> str:
    """How long before `now` (computed once per page) `when` was, in its largest whole unit:
    "12 min", "5 h", "3 d". What a queue row needs, at a fraction of timesince's cost."""
    if when is None or now is None:
        return ""
    seconds = max(0, int((now - when).total_seconds()))
    if seconds < 3600:
        return f"{seconds // 60} min"
    if seconds < 86400:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} d"


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
