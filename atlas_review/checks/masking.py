"""Personal data masked in what is shown: Aadhaar numbers show their last four digits, PANs
their first and last two characters. Stored data and the audit trail keep real values;
only pages, admin lists and (by setting) exports call these functions.

Which values are personal is decided per field: the registry below names the fields that
hold an Aadhaar or a PAN whatever they contain (OCR garbage included), and any field whose
name mentions Aadhaar (or PAN) is masked when its value looks like one.
"""

from __future__ import annotations

import re

from django.conf import settings

from atlas_review.flows.models import display

AADHAAR, PAN = "aadhaar", "pan"

# (document_type, field_name) -> what it holds. Masked whatever the value looks like.
PERSONAL_FIELDS: dict[tuple[str, str], str] = {
    ("AADHAAR", "aadhaar_number"): AADHAAR,
    ("PAN", "pan_number"): PAN,
}

_AADHAAR_NAME = re.compile(r"aadh?aa?r", re.IGNORECASE)
_PAN_NAME = re.compile(r"(?:^|_)pan(?:_|$)", re.IGNORECASE)
_AADHAAR_VALUE = re.compile(r"^\d{12}$")
_PAN_VALUE = re.compile(r"^[A-Z0-9]{10}$")


def _compact(text: str) -> str:
    return re.sub(r"[\s-]", "", text).upper()


def _scalar(value) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def mask_aadhaar(text: str) -> str:
    """ "XXXX XXXX 1234" (the MeitY format); a value that is not 12 digits keeps at most
    its last four characters."""
    compact = _compact(text)
    if _AADHAAR_VALUE.match(compact):
        return f"XXXX XXXX {compact[-4:]}"
    return _keep_last(compact, 4)


def mask_pan(text: str) -> str:
    """ "ABXXXXXX4F": the first and last two characters of a PAN."""
    compact = _compact(text)
    if len(compact) < 8:
        return "X" * len(compact)
    return compact[:2] + "X" * (len(compact) - 4) + compact[-2:]


def _keep_last(text: str, n: int) -> str:
    if len(text) <= n + 2:  # too short to show anything and still hide most of it
        return "X" * len(text)
    return "X" * (len(text) - n) + text[-n:]


_MASKERS = {AADHAAR: mask_aadhaar, PAN: mask_pan}


def personal_kind(document_type: str, field_name: str) -> str | None:
    """What personal identifier a field is named for (it may not hold one)."""
    kind = PERSONAL_FIELDS.get((document_type, field_name))
    if kind:
        return kind
    if _AADHAAR_NAME.search(field_name or ""):
        return AADHAAR
    if _PAN_NAME.search(field_name or ""):
        return PAN
    return None


def _mask_scalar(document_type: str, field_name: str, value) -> tuple[str, bool]:
    text = _scalar(value)
    kind = personal_kind(document_type, field_name)
    if kind is None or not text.strip():
        return text, False
    if (document_type, field_name) not in PERSONAL_FIELDS:
        # Only the name suggests it: mask values that look like the identifier.
        pattern = _AADHAAR_VALUE if kind == AADHAAR else _PAN_VALUE
        if not pattern.match(_compact(text)):
            return text, False
    return _MASKERS[kind](text), True


def mask_value(document_type: str, field_name: str, value) -> str:
    """The text to show for a field's value, with personal identifiers masked."""
    if isinstance(value, list):
        return ", ".join(mask_value(document_type, field_name, v) for v in value)
    if value is None or isinstance(value, bool | dict):
        return display(value)
    return _mask_scalar(document_type, field_name, value)[0]


def is_masked(document_type: str, field_name: str, value) -> bool:
    """Whether mask_value hides anything (a page offers "reveal" only then)."""
    if isinstance(value, list):
        return any(is_masked(document_type, field_name, v) for v in value)
    if value is None or isinstance(value, bool | dict):
        return False
    return _mask_scalar(document_type, field_name, value)[1]


def mask_identifier(kind: str, value: str) -> str:
    """A reuse alert's identifier as shown (kinds of IdentifierSighting)."""
    masker = _MASKERS.get(kind)
    return masker(value) if masker else value


def export_value(document_type: str, field_name: str, value) -> str:
    """A field's value for an auditor export: masked unless EXPORT_MASK_PERSONAL_DATA is off."""
    if settings.EXPORT_MASK_PERSONAL_DATA:
        return mask_value(document_type, field_name, value)
    return display(value)


def mask_as(kind: str, value) -> str:
    """Mask every scalar of `value` as the identifier `kind`, whatever it looks like."""
    if isinstance(value, list):
        return ", ".join(mask_as(kind, v) for v in value)
    if value is None or isinstance(value, bool | dict):
        return display(value)
    text = _scalar(value)
    return _MASKERS[kind](text) if text.strip() else text


def cross_check_kind(check) -> str | None:
    """The identifier a flows.CrossCheck compares, if either side is personal data."""
    for document_type, field_name, value in (
        (check.source_doc, check.source_field_name, check.source_value),
        (check.target_doc, check.target_field_name, check.target_value),
    ):
        if is_masked(document_type, field_name, value):
            return personal_kind(document_type, field_name)
    return None


def mask_cross_check(check) -> tuple[str, str]:
    """Both values of a cross-check as shown. A pair compares one thing: when either side is
    personal data both sides are masked as that identifier, so an Aadhaar compared with a
    field not named for it is not shown whole on the other side."""
    kind = cross_check_kind(check)
    if kind is None:
        return display(check.source_value), display(check.target_value)
    return mask_as(kind, check.source_value), mask_as(kind, check.target_value)


def shown(value, *, document_type: str = "", field_name: str = "", check=None) -> str:
    """Any value about a field or a cross-check as a page shows it (a snapshot, a
    correction typed by a reviewer): masked as the field's, or as the pair's, values are."""
    if check is not None:
        kind = cross_check_kind(check)
        if kind is None:
            return display(value)
        if isinstance(value, dict):
            return display({k: mask_as(kind, v) for k, v in value.items()})
        return mask_as(kind, value)
    if isinstance(value, dict):
        return display({k: mask_value(document_type, field_name, v) for k, v in value.items()})
    return mask_value(document_type, field_name, value)
