"""A generated "scan" for /files/<name>: a card with the document's printed values.

The card shows the persona's true values (what is printed on the paper), not the OCR
result, so a reviewer comparing image and extracted fields sees the OCR errors the
generator injected. Names follow the demo convention <application_id>-<doctype>.svg;
anything else still renders a card.
"""

from __future__ import annotations

from html import escape

from .generator import DOCUMENT_TYPES, detect_document_type, subject_of
from .persona import canonical_fields, make_persona, rng

_TITLES = {
    "INVOICE": "TAX INVOICE",
    "DELIVERY_ORDER": "DELIVERY ORDER",
    "AADHAAR": "AADHAAR",
    "PAN": "INCOME TAX DEPARTMENT - PERMANENT ACCOUNT NUMBER",
    "IMEI_CLOSEUP_IMAGE": "IMEI LABEL (close-up)",
    "ASSET_OPEN_BOX_IMAGE": "OPEN BOX PHOTO",
}
_COLOURS = {
    "INVOICE": "#f7f3e8",
    "DELIVERY_ORDER": "#eef4fb",
    "AADHAAR": "#fdf6ec",
    "PAN": "#e9f1f7",
    "IMEI_CLOSEUP_IMAGE": "#f2f2f2",
    "ASSET_OPEN_BOX_IMAGE": "#eef7ee",
}
WIDTH, LINE, TOP = 640, 30, 96


def _show(value: object) -> str:
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


def _wrap(text: str, width: int = 52) -> list[str]:
    lines, current = [], ""
    for word in text.split():
        if current and len(current) + 1 + len(word) > width:
            lines.append(current)
            current = word
        else:
            current = f"{current} {word}".strip()
    return [*lines, current] if current else lines or [""]


def render_document_svg(seed: object, name: str) -> str:
    """The SVG for /files/<name>; a pure function of (seed, name)."""
    doc_type = detect_document_type(name) or rng(seed, "svg", name).choice(DOCUMENT_TYPES)
    stem = name.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    key = subject_of(name) or stem
    fields = canonical_fields(make_persona(seed, key), doc_type)

    rows: list[str] = []
    y = TOP
    for field, value in fields.items():
        label = field.replace("_", " ").title()
        rows.append(f'<text x="32" y="{y}" class="l">{escape(label)}</text>')
        for part in _wrap(_show(value)):
            rows.append(f'<text x="230" y="{y}" class="v">{escape(part)}</text>')
            y += LINE - 8
        y += 8
    height = y + 40
    if doc_type == "ASSET_OPEN_BOX_IMAGE":
        # A box and a face, so the "photo" looks like one at a glance.
        rows.append(
            f'<rect x="420" y="{TOP - 20}" width="160" height="110" fill="#c9a46b" '
            'stroke="#7a5a2a"/>'
            f'<circle cx="360" cy="{TOP + 20}" r="28" fill="#e0b48a" stroke="#8a6040"/>'
        )
        height = max(height, TOP + 130)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" role="img" aria-label="{escape(doc_type)} scan">'
        "<style>.t{font:bold 20px sans-serif;fill:#1d2a3a}.s{font:12px monospace;fill:#667}"
        ".l{font:13px sans-serif;fill:#556}.v{font:15px serif;fill:#111}</style>"
        f'<rect width="{WIDTH}" height="{height}" fill="{_COLOURS.get(doc_type, "#fff")}" '
        'stroke="#9aa" stroke-width="2" rx="10"/>'
        f'<text x="32" y="40" class="t">{escape(_TITLES.get(doc_type, doc_type))}</text>'
        f'<text x="32" y="62" class="s">{escape(stem[:70])} - simulated scan</text>'
        f'<line x1="32" y1="72" x2="{WIDTH - 32}" y2="72" stroke="#9aa"/>'
        + "".join(rows)
        + "</svg>"
    )
