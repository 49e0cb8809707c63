"""Differences between two values, for reading cross-check pairs side by side."""

from __future__ import annotations

import re
from difflib import SequenceMatcher

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from atlas_review.flows.models import display

_TOKENS = re.compile(r"\s+|[^\s]+")


def diff_pair(source, target) -> tuple[SafeString, SafeString]:
    """(source, target) as HTML: text only in the source wrapped in <del>, text only in
    the target in <ins>, everything escaped."""
    a, b = display(source), display(target)
    # Words for text with spaces (addresses, names); characters for single tokens (numbers,
    # ids), where one misread digit is the whole story.
    if " " in a.strip() or " " in b.strip():
        ta, tb = _TOKENS.findall(a), _TOKENS.findall(b)
    else:
        ta, tb = list(a), list(b)
    left, right = [], []
    for op, i1, i2, j1, j2 in SequenceMatcher(None, ta, tb, autojunk=False).get_opcodes():
        x, y = escape("".join(ta[i1:i2])), escape("".join(tb[j1:j2]))
        if op == "equal":
            left.append(x)
            right.append(y)
            continue
        if x:
            left.append(f"<del>{x}</del>")
        if y:
            right.append(f"<ins>{y}</ins>")
    return mark_safe("".join(left)), mark_safe("".join(right))  # noqa: S308 (escaped above)
