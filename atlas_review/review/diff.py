"""Differences between two values, for reading cross-check pairs side by side."""

from __future__ import annotations

import re
from difflib import SequenceMatcher
from html import escape  # what django.utils.html.escape calls, without its lazy wrapper
from typing import NamedTuple

from django.utils.safestring import SafeString, mark_safe

from atlas_review.flows.models import display

_TOKENS = re.compile(r"\s+|[^\s]+")

# Tokens (words, or characters of a single token) per side that SequenceMatcher is run on.
# Its cost grows with the product of the lengths; cross-check values are names, numbers and
# addresses, far below this. Longer values keep their common start and end unmarked and
# the rest marked whole, or diffed if that rest is short.
MAX_TOKENS = 300


class DiffPair(NamedTuple):
    """(source, target) as HTML; a tuple, so pair.0 / pair.1 read as before."""

    source: SafeString
    target: SafeString


def diff_pair(source, target) -> DiffPair:
    """(source, target) as HTML: text only in the source wrapped in <del>, text only in
    the target in <ins>, everything escaped."""
    return diff_text(display(source), display(target))


def diff_text(a: str, b: str) -> DiffPair:
    """diff_pair of two texts (values already as shown)."""
    if a == b:  # most pairs of a page differ, but when they do not there is nothing to do
        same = mark_safe(escape(a))  # noqa: S308 (escaped)
        return DiffPair(same, same)
    # Words for text with spaces (addresses, names); characters for single tokens (numbers,
    # ids), where one misread digit is the whole story.
    if " " in a.strip() or " " in b.strip():
        ta, tb = _TOKENS.findall(a), _TOKENS.findall(b)
    else:
        ta, tb = list(a), list(b)
    left: list[str] = []
    right: list[str] = []
    if len(ta) <= MAX_TOKENS and len(tb) <= MAX_TOKENS:
        _diff_into(left, right, ta, tb)
    else:
        _diff_long_into(left, right, ta, tb)
    return DiffPair(mark_safe("".join(left)), mark_safe("".join(right)))  # noqa: S308 (escaped)


def _diff_into(left: list[str], right: list[str], ta: list[str], tb: list[str]) -> None:
    for op, i1, i2, j1, j2 in SequenceMatcher(None, ta, tb, autojunk=False).get_opcodes():
        if op == "equal":  # the same tokens on both sides
            x = escape("".join(ta[i1:i2]))
            left.append(x)
            right.append(x)
            continue
        if i2 > i1:
            left.append(f"<del>{escape(''.join(ta[i1:i2]))}</del>")
        if j2 > j1:
            right.append(f"<ins>{escape(''.join(tb[j1:j2]))}</ins>")


def _diff_long_into(left: list[str], right: list[str], ta: list[str], tb: list[str]) -> None:
    """Long values: the common start and end as equal, the middle diffed if short enough,
    else marked whole (linear time whatever the lengths)."""
    n = min(len(ta), len(tb))
    start = 0
    while start < n and ta[start] == tb[start]:
        start += 1
    end = 0
    while end < n - start and ta[-1 - end] == tb[-1 - end]:
        end += 1
    head = escape("".join(ta[:start]))
    left.append(head)
    right.append(head)
    ma, mb = ta[start : len(ta) - end], tb[start : len(tb) - end]
    if len(ma) <= MAX_TOKENS and len(mb) <= MAX_TOKENS:
        _diff_into(left, right, ma, mb)
    else:
        if ma:
            left.append(f"<del>{escape(''.join(ma))}</del>")
        if mb:
            right.append(f"<ins>{escape(''.join(mb))}</ins>")
    tail = escape("".join(ta[len(ta) - end :]))
    left.append(tail)
    right.append(tail)
