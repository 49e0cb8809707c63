from django import template

from atlas_review.review import queries
from atlas_review.review.diff import diff_pair

register = template.Library()


@register.simple_tag
def diff(source, target):
    """{% diff a b as pair %} → pair.0 / pair.1: both values with differences marked."""
    return diff_pair(source, target)


@register.filter
def capped(count: int) -> str:
    return f"{queries.COUNT_CAP}+" if count > queries.COUNT_CAP else str(count)


@register.filter
def get_count(counts: dict | None, queue: str) -> int:
    return (counts or {}).get(queue, 0)
