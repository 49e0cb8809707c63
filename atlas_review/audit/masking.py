"""Masking of Indian identity numbers in exported text (setting EXPORT_MASK_PERSONAL_DATA).

Exports leave the building, so Aadhaar and PAN numbers found anywhere in a masked cell
(Atlas's values, corrections, comments) are masked in the formats the pages use
(checks/masking.py): an Aadhaar keeps its last four digits, a PAN its first and last two
characters. Names and addresses are left alone: the auditor needs them to check decisions.
This looks at the text, not at which field it came from, so it also catches a number an
agent typed into a comment.
"""

from __future__ import annotations

import re

# One pass over the text finds both (exports call this for millions of cells).
# Aadhaar: 12 digits, never starting with 0 or 1, often printed as 4-4-4. The lookarounds
# keep longer numbers (IMEIs, account numbers) whole. No checksum test on purpose: a number
# OCR misread is still somebody's (almost) Aadhaar number.
# PAN: five letters (the fourth says who holds it), four digits, a letter, as a whole word
# (a GSTIN embeds a PAN between digits and is a business's number: not masked).
_IDENTITY = re.compile(
    r"(?<![0-9])[2-9][0-9]{3}(?P<sep>[ -]?)[0-9]{4}(?P=sep)(?P<last4>[0-9]{4})(?![0-9])"
    r"|(?P<pan>\b[A-Z]{3}[ABCFGHJLPT][A-Z][0-9]{4}[A-Z]\b)",
    re.IGNORECASE,
)


def _mask(m: re.Match) -> str:
    pan = m.group("pan")
    if pan:
        return pan[:2] + "XXXXXX" + pan[-2:]
    return "XXXX XXXX " + m.group("last4")


def mask_personal(text: str) -> str:
    """ "234567890123" -> "XXXX XXXX 0123"; "ABCPE1234F" -> "ABXXXXXX4F"."""
    if len(text) < 10:
        return text
    return _IDENTITY.sub(_mask, text)
