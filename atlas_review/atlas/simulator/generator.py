"""Deterministic Atlas results: the OCR items and cross-checks of a flow, without HTTP.

Pure functions: the same (seed, key, position, file_url, document_id) always gives the same
document, so tests, demos and bug reports are reproducible. The key is the application id
of a v3 flow (or the flow uuid when there is none); v1 batches use the subject found in the
file names, else a digest of the file list.

What the noise models, so the dashboard has something real to review:
- per field: confidence (about 35% below 0.8, some exactly 0.0, some the int 1), blank
  values ("" with 0.0), OCR character confusions on low-confidence text;
- per document: about 1 in 12 is an error (UNRECOGNISED with empty data, or INVALID_DOC
  with partial data), a few carry a field nobody has seen, a few invoices also yield an
  IMEI_CLOSEUP_IMAGE item sharing the invoice's document_id;
- per field and document: a perturbation of the persona's value (abbreviated, truncated,
  mistyped or simply different), which is what makes cross-check similarity vary.
"""

from __future__ import annotations

import hashlib
import random
import re
import uuid
from difflib import SequenceMatcher
from urllib.parse import unquote, urlsplit

from . import data
from .persona import canonical_fields, make_persona, rng

DOCUMENT_TYPES = (
    "INVOICE",
    "DELIVERY_ORDER",
    "AADHAAR",
    "PAN",
    "IMEI_CLOSEUP_IMAGE",
    "ASSET_OPEN_BOX_IMAGE",
)
_TYPE_WEIGHTS = (25, 20, 15, 12, 15, 13)

# Order matters: the first hint found wins. "do" and "pan" must be whole tokens, so that
# "document" or "company" in a path do not count.
_HINTS = (
    ("DELIVERY_ORDER", re.compile(r"delivery[\W_]*order|(?<![a-z0-9])do(?![a-z0-9])")),
    ("IMEI_CLOSEUP_IMAGE", re.compile(r"imei")),
    ("ASSET_OPEN_BOX_IMAGE", re.compile(r"open[\W_]*box")),
    ("AADHAAR", re.compile(r"aadh?aa?r")),
    ("PAN", re.compile(r"(?<![a-z0-9])pan(?:[\W_]*card)?(?![a-z0-9])")),
    ("INVOICE", re.compile(r"invoice")),
)

UNRECOGNISED_RATE = 1 / 24
INVALID_DOC_RATE = 1 / 24
UNKNOWN_FIELD_RATE = 0.08
SPLIT_INVOICE_RATE = 0.07
BLANK_RATE = 0.03
SIMILARITY_FLOOR = 40

# How each field is perturbed; fields not listed are left as printed.
_KINDS = {
    "customer_name": "name", "name": "name", "father_name": "name",
    "customer_address": "address", "customer_delivery_address": "address",
    "dealer_address": "address", "address": "address",
    "dealership_name": "text", "dealer_name": "text", "model": "text",
    "mobile_number": "mobile", "customer_mobile_number": "mobile",
    "imei_number": "imei", "total_invoice_amount": "amount", "loan_amount": "amount",
    "price": "price", "invoice_date": "date", "do_date": "date", "date_of_birth": "date",
}  # fmt: skip
# Probabilities of (exact, light, medium, heavy) perturbation per kind. Identifiers are
# mostly read exactly; free text is where OCR and clerks disagree.
_LEVELS = {
    "name": (0.55, 0.25, 0.15, 0.05),
    "address": (0.4, 0.3, 0.25, 0.05),
    "text": (0.6, 0.23, 0.12, 0.05),
    "mobile": (0.78, 0.12, 0.06, 0.04),
    "imei": (0.88, 0.07, 0.02, 0.03),
    "amount": (0.8, 0.14, 0.0, 0.06),
    "price": (0.92, 0.0, 0.0, 0.08),  # stays an int, as the contract shows it
    "date": (0.88, 0.08, 0.0, 0.04),
}

# name, source doc, source field, target doc, target field, how to compare
CROSS_CHECKS = (
    ("DEALER_ADDRESS", "DELIVERY_ORDER", "dealer_address", "INVOICE", "dealer_address", "text"),
    ("CUSTOMER_NAME", "DELIVERY_ORDER", "customer_name", "INVOICE", "customer_name", "text"),
    ("CUSTOMER_DELIVERY_ADDRESS", "DELIVERY_ORDER", "customer_delivery_address",
     "INVOICE", "customer_address", "text"),
    ("CUSTOMER_MOBILE_NUMBER", "DELIVERY_ORDER", "customer_mobile_number",
     "INVOICE", "mobile_number", "text"),
    ("DEALER_NAME", "DELIVERY_ORDER", "dealer_name", "INVOICE", "dealership_name", "text"),
    ("LOAN_AMOUNT", "DELIVERY_ORDER", "loan_amount", "INVOICE", "total_invoice_amount",
     "amount"),
    ("IMEI_NUMBER", "IMEI_CLOSEUP_IMAGE", "imei_number", "INVOICE", "imei_number", "text"),
    ("ASSET_PRICE", "IMEI_CLOSEUP_IMAGE", "price", "INVOICE", "total_invoice_amount", "amount"),
    ("CUSTOMER_NAME", "AADHAAR", "name", "INVOICE", "customer_name", "text"),
    ("CUSTOMER_NAME", "PAN", "name", "AADHAAR", "name", "text"),
    ("DATE_OF_BIRTH", "PAN", "date_of_birth", "AADHAAR", "date_of_birth", "text"),
)  # fmt: skip


# --- document type and subject from file names -------------------------------------------


def _hint_text(file_url: str, document_id: str = "") -> str:
    parts = urlsplit(file_url or "")
    path = parts.path if parts.scheme else (file_url or "")
    return unquote(f"{path} {document_id or ''}").lower()


def detect_document_type(file_url: str, document_id: str = "") -> str | None:
    """The document type a file name or document id hints at, or None."""
    text = _hint_text(file_url, document_id)
    for doc_type, pattern in _HINTS:
        if pattern.search(text):
            return doc_type
    return None


def subject_of(file_url: str) -> str:
    """The part of a file name that is not the type hint: "APP-7-invoice.svg" -> "APP-7".

    Demo file URLs name the application, so a v1 batch and the /files scans of the same
    application render the same persona."""
    name = unquote(urlsplit(file_url or "").path.rsplit("/", 1)[-1])
    stem = name.rsplit(".", 1)[0] if "." in name else name
    lowered = stem.lower()
    for _, pattern in _HINTS:
        match = pattern.search(lowered)
        if match:
            return (stem[: match.start()] + stem[match.end() :]).strip("-_. ")
    return ""


def derived_uuid(*parts: object) -> str:
    """A version-4-shaped UUID that is a pure function of the parts."""
    digest = hashlib.sha256("|".join(str(p) for p in parts).encode()).digest()
    return str(uuid.UUID(bytes=digest[:16], version=4))


# --- perturbation ------------------------------------------------------------------------


def ocr_typo(r: random.Random, text: str) -> str:
    positions = [i for i, ch in enumerate(text) if ch in data.OCR_CONFUSIONS]
    if not positions:
        return text
    i = r.choice(positions)
    return text[:i] + data.OCR_CONFUSIONS[text[i]] + text[i + 1 :]


def _abbreviate(text: str) -> str:
    for long, short in data.ABBREVIATIONS:
        text = text.replace(long, short)
    return text


def _perturb_text(r: random.Random, kind: str, value: str, level: int, other: str) -> str:
    if level == 3:
        return other
    if kind == "name":
        words = value.split()
        if level == 1:
            return r.choice((value.upper(), ocr_typo(r, value), f"{words[0][0]}. {words[-1]}"))
        return words[0] if len(words) > 1 else ocr_typo(r, ocr_typo(r, value))
    if kind == "address":
        if level == 1:
            return r.choice((_abbreviate(value), ocr_typo(r, value), value.replace(",", "")))
        parts = value.split(", ")
        keep = max(2, len(parts) - r.randrange(1, 3))
        return ", ".join(parts[:keep]) + (f" {value[-6:]}" if r.random() < 0.5 else "")
    if kind == "mobile":
        if level == 1:
            return r.choice((f"+91 {value}", f"+91-{value}", f"0{value}"))
        return ocr_typo(r, value)
    if kind == "date":
        return ocr_typo(r, value)
    if kind == "text":
        if level == 1:
            return r.choice((value.upper(), ocr_typo(r, value), _abbreviate(value)))
        return value.split()[0] if " " in value else ocr_typo(r, value)
    return value


def _perturb(r: random.Random, kind: str, value: object, level: int, other: object) -> object:
    if level == 0:
        return value
    if kind == "imei":
        assert isinstance(value, list) and isinstance(other, list)
        if level == 3:
            return other[: len(value)]
        first = ocr_typo(r, value[0])
        return [ocr_typo(r, first) if level == 2 else first, *value[1:]]
    if kind in ("amount", "price"):
        assert isinstance(value, int)
        if level == 3:
            return int(round(value * r.choice((0.8, 1.2, 1.5)), -2))
        return r.choice((str(value), f"{value}.00"))  # a numeric string
    return _perturb_text(r, kind, str(value), level, str(other))


def _confidence(r: random.Random) -> float | int:
    u = r.random()
    if u < 0.05:
        return 0.0
    if u < 0.35:
        return round(r.uniform(0.3, 0.79), 2)
    if u < 0.5:
        return 1
    return round(r.uniform(0.8, 0.99), 2)


def _level(r: random.Random, kind: str) -> int:
    u, total = r.random(), 0.0
    for level, share in enumerate(_LEVELS[kind]):
        total += share
        if u < total:
            return level
    return 3


# --- documents ---------------------------------------------------------------------------


def generate_document(
    seed: object,
    key: str,
    position: int,
    file_url: str = "",
    document_id: str = "",
    *,
    doc_type: str | None = None,
    salt: str = "",
) -> dict:
    """One ocr_data item (without batch_id/file_uuid): data, document_id, error_code,
    error_reason. doc_type forces the type; salt separates several items from one file."""
    r = rng(seed, "doc", key, position, file_url, document_id, salt)
    doc_type = doc_type or detect_document_type(file_url, document_id)
    if doc_type is None:
        doc_type = r.choices(DOCUMENT_TYPES, weights=_TYPE_WEIGHTS)[0]
    persona = make_persona(seed, key)
    # A different persona supplies the "simply wrong" values of heavy perturbations.
    stranger = make_persona(seed, f"{key}|stranger|{position}")
    fate = r.random()

    if fate < UNRECOGNISED_RATE:
        return {
            "data": {},
            # The vendor's example shows errors without the lender's id; mimic it sometimes.
            "document_id": "" if r.random() < 0.4 else document_id,
            "error_code": "UNRECOGNISED",
            "error_reason": "document not in list",
        }

    truth = canonical_fields(persona, doc_type)
    other = canonical_fields(stranger, doc_type)
    fields: dict[str, dict] = {}
    for name, value in truth.items():
        fields[name] = _field(r, name, value, other[name])

    if r.random() < UNKNOWN_FIELD_RATE:
        extra_name, extra_value = data.UNKNOWN_FIELDS.get(doc_type, ("extra_field", "yes"))
        fields[extra_name] = {"value": extra_value, "confidence_score": _confidence(r)}

    error_code = error_reason = ""
    if fate < UNRECOGNISED_RATE + INVALID_DOC_RATE:
        error_code = "INVALID_DOC"
        error_reason = r.choice(data.INVALID_REASONS.get(doc_type, ("image blurred",)))
        if error_reason == "multiple people":
            fields["number_of_faces_visible"] = {
                "value": r.randrange(2, 5),
                "confidence_score": _confidence(r),
            }
        names = list(fields)
        keep = set(r.sample(names, max(1, len(names) // 2))) if names else set()
        if error_reason == "multiple people":
            keep.add("number_of_faces_visible")  # the reason must stay explainable
        fields = {n: v for n, v in fields.items() if n in keep}

    return {
        "data": {"document_type": doc_type, **fields},
        "document_id": document_id,
        "error_code": error_code,
        "error_reason": error_reason,
    }


def _field(r: random.Random, name: str, value: object, other: object) -> dict:
    kind = _KINDS.get(name)
    if kind:
        value = _perturb(r, kind, value, _level(r, kind), other)
    if r.random() < BLANK_RATE:
        return {"value": "", "confidence_score": 0.0}
    confidence = _confidence(r)
    # Low confidence is where OCR misreads characters.
    if kind in ("name", "address", "text") and confidence < 0.6 and r.random() < 0.4:
        value = ocr_typo(r, str(value))
    return {"value": value, "confidence_score": confidence}


def generate_items(seed: object, key: str, files: list[dict]) -> list[tuple[int, int, dict]]:
    """(file position, sub-index, item) for each file; a few invoices yield two items."""
    out = []
    for position, f in enumerate(files):
        file_url, document_id = f.get("file_url", ""), f.get("document_id", "")
        item = generate_document(seed, key, position, file_url, document_id)
        out.append((position, 0, item))
        split = rng(seed, "split", key, position, file_url, document_id).random()
        if item["data"].get("document_type") == "INVOICE" and split < SPLIT_INVOICE_RATE:
            extra = generate_document(
                seed, key, position, file_url, document_id,
                doc_type="IMEI_CLOSEUP_IMAGE", salt="split",
            )  # fmt: skip
            extra["document_id"] = document_id
            out.append((position, 1, extra))
    return out


def generate_flow_result(
    seed: object, flow_uuid: str, files: list[dict], *, application_id: str = ""
) -> dict:
    """The CallbackData payload for a flow whose uploads were `files` (in upload order).

    Each file is {"file_url", "document_id"} plus optional "batch_id" and "file_uuid"; a
    missing file_uuid is derived from (flow_uuid, position), so it is unique per flow and
    stable across calls."""
    key = application_id or flow_uuid
    ocr_data = []
    for position, sub, item in generate_items(seed, key, files):
        f = files[position]
        item["batch_id"] = f.get("batch_id", "")
        item["file_uuid"] = (f.get("file_uuid") if sub == 0 else "") or derived_uuid(
            flow_uuid, position, sub
        )
        ocr_data.append(item)
    return {
        "flow_uuid": flow_uuid,
        "ocr_data": ocr_data,
        "cross_checks": generate_cross_checks(ocr_data),
    }


def batch_key(files: list[dict]) -> str:
    for f in files:
        subject = subject_of(f.get("file_url", ""))
        if subject:
            return subject
    digest = hashlib.sha256(
        "\n".join(f"{f.get('file_url', '')}|{f.get('document_id', '')}" for f in files).encode()
    ).hexdigest()
    return f"batch:{digest[:16]}"


def generate_batch_items(seed: object, batch_id: str, files: list[dict]) -> list[dict]:
    """The v1 docstream `data[]` items of a batch: document_id, file_data, file_uuid,
    batch_id, plus error_code/error_reason only for documents that have an error."""
    items = []
    for position, sub, item in generate_items(seed, batch_key(files), files):
        out = {
            "document_id": item["document_id"],
            "file_data": item["data"],
            "file_uuid": files[position].get("file_uuid") if sub == 0 else None,
            "batch_id": batch_id,
        }
        out["file_uuid"] = out["file_uuid"] or derived_uuid(batch_id, position, sub)
        if item["error_code"]:
            out["error_code"] = item["error_code"]
            out["error_reason"] = item["error_reason"]
        items.append(out)
    return items


# --- cross-checks ------------------------------------------------------------------------


def _plain(value: object) -> str:
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return "" if value is None else str(value)


def _number(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(str(value).replace(",", "").strip())
    except ValueError:
        return None


def _normal(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9]+", " ", text.lower()).split())


def similarity(a: object, b: object, how: str = "text") -> int:
    """0..100 like Atlas' similarity_score, floored at 40 (Atlas never reports lower)."""
    if how == "amount":
        x, y = _number(a), _number(b)
        score = 0.0 if not x or not y else 100 * min(x, y) / max(x, y)
    else:
        x, y = _normal(_plain(a)), _normal(_plain(b))
        if not x or not y:
            score = 0.0
        elif x == y:
            score = 100.0
        else:
            # Character similarity, lifted when one value's words all appear in the other
            # ("Deepak" vs "Deepak Yadav"), the way fuzzy name matchers score.
            tx, ty = set(x.split()), set(y.split())
            contained = len(tx & ty) / min(len(tx), len(ty))
            ratio = SequenceMatcher(None, x, y).ratio()
            score = 100 * max(ratio, 0.5 * ratio + 0.5 * contained) - 2
    return max(SIMILARITY_FLOOR, min(100, round(score)))


def generate_cross_checks(ocr_data: list[dict]) -> list[dict]:
    """Pairwise checks between the first readable document of each type."""
    by_type: dict[str, dict] = {}
    for item in ocr_data:
        doc_type = item.get("data", {}).get("document_type")
        if doc_type and item.get("error_code") != "UNRECOGNISED":
            by_type.setdefault(doc_type, item["data"])
    checks = []
    for name, src_doc, src_field, dst_doc, dst_field, how in CROSS_CHECKS:
        src, dst = by_type.get(src_doc), by_type.get(dst_doc)
        if not src or not dst or src_field not in src or dst_field not in dst:
            continue
        src_value, dst_value = src[src_field]["value"], dst[dst_field]["value"]
        if isinstance(src_value, list) or isinstance(dst_value, list):
            src_value, dst_value = _plain(src_value), _plain(dst_value)
        checks.append(
            {
                "source_doc": src_doc,
                "source_field_name": src_field,
                "source_value": src_value,
                "target_doc": dst_doc,
                "target_field_name": dst_field,
                "target_value": dst_value,
                "similarity_score": similarity(src_value, dst_value, how),
                "name": name,
            }
        )
    return checks
