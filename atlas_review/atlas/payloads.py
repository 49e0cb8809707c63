"""Atlas JSON becomes typed objects here, and only here.

Everything else in the project works with these dataclasses. Parsing is strict about
structure (a wrong shape raises PayloadError naming the path of the problem) and lenient
about content: unknown document types and fields are kept, values may be strings, numbers,
lists, objects or empty, and unknown status values are kept as they are.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

JSONValue = Any

# Atlas' own keys inside ocr_data[].data that are not extracted fields.
DOCUMENT_TYPE_KEY = "document_type"
MAX_STRING = 100_000
# Longest accepted names and identifiers: the columns they are stored in (flows.models).
# Longer is refused here, with the path named, instead of failing in the database later.
MAX_TYPE = 64  # document_type, error_code, cross-check source_doc/target_doc
MAX_NAME = 128  # field names, cross-check names and field names, batch_id
MAX_FILE_UUID = 128  # leaves room for the document key "uuid:<file_uuid>#<position>"
MAX_DOCUMENT_ID = 160
MAX_FLOW_UUID = 64
MAX_STATUS = 32
MAX_DEPTH = 100  # arrays/objects inside one another; Atlas's values are flat
# What PostgreSQL cannot store in text or jsonb: NUL, and surrogates that pair with nothing.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


class PayloadError(ValueError):
    """The JSON is not what the Atlas contract says; the message names where and why."""

    def __init__(self, path: str, problem: str):
        self.path = path
        self.problem = problem
        super().__init__(f"{path}: {problem}" if path else problem)


@dataclass(frozen=True, slots=True)
class ExtractedValue:
    name: str
    value: JSONValue
    confidence: float | None


@dataclass(frozen=True, slots=True)
class OcrDocument:
    position: int
    document_type: str
    document_id: str
    file_uuid: str
    batch_id: str
    error_code: str
    error_reason: str
    fields: tuple[ExtractedValue, ...]
    # Keys of the item or its data that are neither fields nor known keys, kept verbatim.
    extra: dict[str, JSONValue] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CrossCheckResult:
    position: int
    name: str
    source_doc: str
    source_field_name: str
    source_value: JSONValue
    target_doc: str
    target_field_name: str
    target_value: JSONValue
    similarity: float | None
    extra: dict[str, JSONValue] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CallbackData:
    """The v3 result for one flow: what /extracts returns and what the callback posts."""

    flow_uuid: str
    documents: tuple[OcrDocument, ...]
    cross_checks: tuple[CrossCheckResult, ...]

    def content_hash(self) -> str:
        return canonical_hash(
            {
                "flow_uuid": self.flow_uuid,
                "documents": [_doc_key(d) for d in self.documents],
                "cross_checks": [_check_key(c) for c in self.cross_checks],
            }
        )


@dataclass(frozen=True, slots=True)
class BatchPage:
    """One page of v1 docstream extracts (also the v1 callback body)."""

    batch_id: str
    documents: tuple[OcrDocument, ...]
    page: int
    per_page: int
    total_pages: int
    total_items: int
    has_next: bool


@dataclass(frozen=True, slots=True)
class FlowStatus:
    upload_status: str
    processing_status: str
    crosscheck_status: str
    master_status: str

    @property
    def finished(self) -> bool:
        return self.master_status in ("SUCCESS", "FAILED")


@dataclass(frozen=True, slots=True)
class Token:
    access_token: str
    expires_in: int

    def __repr__(self) -> str:  # never print the token itself
        return f"Token(expires_in={self.expires_in})"


def canonical_hash(obj: JSONValue) -> str:
    data = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(data.encode()).hexdigest()


def documents_hash(documents) -> str:
    return canonical_hash([_doc_key(d) for d in documents])


def _doc_key(d: OcrDocument) -> dict:
    return {
        "p": d.position,
        "t": d.document_type,
        "id": d.document_id,
        "f": d.file_uuid,
        "b": d.batch_id,
        "e": [d.error_code, d.error_reason],
        "v": [[f.name, f.value, f.confidence] for f in d.fields],
        "x": d.extra,
    }


def _check_key(c: CrossCheckResult) -> list:
    return [
        c.name,
        c.source_doc,
        c.source_field_name,
        c.source_value,
        c.target_doc,
        c.target_field_name,
        c.target_value,
        c.similarity,
        c.extra,
    ]


# --- parsing helpers -----------------------------------------------------------------------


def loads(body: bytes | str) -> JSONValue:
    """json.loads that refuses NaN/Infinity, duplicate keys and invalid UTF-8 clearly."""
    if isinstance(body, bytes):
        try:
            body = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise PayloadError("", f"body is not valid UTF-8 (byte {exc.start})") from None

    def _no_constants(name: str) -> None:
        raise PayloadError("", f"{name} is not valid JSON")

    def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict:
        result: dict[str, Any] = {}
        for key, value in pairs:
            if key in result:
                raise PayloadError("", f"duplicate key {key!r}")
            result[key] = value
        return result

    def _finite(text: str) -> float:
        number = float(text)
        if not math.isfinite(number):  # 1e999 parses as infinity, which JSON has not
            raise PayloadError("", f"number {text[:40]} is out of range")
        return number

    try:
        data = json.loads(
            body,
            parse_constant=_no_constants,
            parse_float=_finite,
            object_pairs_hook=_no_duplicates,
        )
    except RecursionError:
        raise PayloadError("", "JSON is nested too deeply") from None
    except json.JSONDecodeError as exc:
        raise PayloadError(
            "", f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except PayloadError:
        raise
    except ValueError as exc:  # an integer of more than 4300 digits
        raise PayloadError("", f"malformed JSON: {exc}"[:200]) from None
    _check_storable(data)
    return data


def _check_storable(data: JSONValue) -> None:
    """Refuse what parses but cannot be stored or shown: strings with NUL or unpaired
    surrogates (PostgreSQL refuses them), nesting deeper than MAX_DEPTH."""
    stack = [(data, 0)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str):
            if _UNSTORABLE.search(value):
                raise PayloadError(
                    "", "a string holds \\u0000 or an unpaired surrogate, which cannot be stored"
                )
        elif isinstance(value, dict | list):
            if depth >= MAX_DEPTH:
                raise PayloadError("", f"JSON is nested more than {MAX_DEPTH} levels deep")
            if isinstance(value, dict):
                stack.extend((key, depth) for key in value)
                stack.extend((item, depth + 1) for item in value.values())
            else:
                stack.extend((item, depth + 1) for item in value)


def _obj(value: JSONValue, path: str) -> dict:
    if not isinstance(value, dict):
        raise PayloadError(path, f"expected an object, got {_kind(value)}")
    return value


def _list(value: JSONValue, path: str) -> list:
    if not isinstance(value, list):
        raise PayloadError(path, f"expected a list, got {_kind(value)}")
    return value


def _str(
    container: dict, key: str, path: str, *, required: bool = False, max_length: int = MAX_STRING
) -> str:
    value = container.get(key)
    if value is None:
        if required:
            raise PayloadError(f"{path}.{key}" if path else key, "is required")
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise PayloadError(
            f"{path}.{key}" if path else key, f"expected a string, got {_kind(value)}"
        )
    text = str(value)
    if len(text) > max_length:
        raise PayloadError(
            f"{path}.{key}" if path else key,
            f"string is too long ({len(text)} characters, at most {max_length})",
        )
    return text


def _score(value: JSONValue, path: str, upper: float) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PayloadError(path, f"expected a number, got {_kind(value)}")
    try:
        score = float(value)
    except OverflowError:  # an integer too large for a float
        raise PayloadError(path, f"must be between 0 and {upper:g}") from None
    if math.isnan(score) or not 0 <= score <= upper:
        raise PayloadError(path, f"must be between 0 and {upper:g}, got {value}")
    return score


def _kind(value: JSONValue) -> str:
    return {
        dict: "an object",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
        type(None): "null",
    }.get(type(value), type(value).__name__)


def _fields(data: dict, path: str) -> tuple[tuple[ExtractedValue, ...], dict]:
    fields: list[ExtractedValue] = []
    extra: dict[str, JSONValue] = {}
    for name, raw in data.items():
        if name == DOCUMENT_TYPE_KEY:
            continue
        if isinstance(raw, dict) and ("value" in raw or "confidence_score" in raw):
            if len(name) > MAX_NAME:
                raise PayloadError(
                    f"{path}.{name[:40]}…", f"field name is longer than {MAX_NAME} characters"
                )
            fields.append(
                ExtractedValue(
                    name=name,
                    value=raw.get("value"),
                    confidence=_score(
                        raw.get("confidence_score"), f"{path}.{name}.confidence_score", 1
                    ),
                )
            )
        else:
            # Not the {value, confidence_score} shape: kept, never dropped.
            extra[name] = raw
    return tuple(fields), extra


_ITEM_KEYS = {
    "data",
    "file_data",
    "document_id",
    "error_code",
    "error_reason",
    "batch_id",
    "file_uuid",
    "file_url",
}


def parse_document(
    item: JSONValue, position: int, path: str, *, data_key: str = "data", batch_id: str = ""
) -> OcrDocument:
    item = _obj(item, path)
    data = item.get(data_key)
    data = {} if data is None else _obj(data, f"{path}.{data_key}")
    fields, extra = _fields(data, f"{path}.{data_key}")
    extra.update({k: v for k, v in item.items() if k not in _ITEM_KEYS})
    return OcrDocument(
        position=position,
        document_type=_str(data, DOCUMENT_TYPE_KEY, f"{path}.{data_key}", max_length=MAX_TYPE),
        document_id=_str(item, "document_id", path, max_length=MAX_DOCUMENT_ID),
        file_uuid=_str(item, "file_uuid", path, max_length=MAX_FILE_UUID),
        batch_id=_str(item, "batch_id", path, max_length=MAX_NAME) or batch_id,
        error_code=_str(item, "error_code", path, max_length=MAX_TYPE),
        error_reason=_str(item, "error_reason", path),
        fields=fields,
        extra=extra,
    )


_CHECK_KEYS = {
    "name", "source_doc", "source_field_name", "source_value", "target_doc",
    "target_field_name", "target_value", "similarity_score",
}  # fmt: skip


def parse_cross_check(item: JSONValue, position: int, path: str) -> CrossCheckResult:
    item = _obj(item, path)
    return CrossCheckResult(
        position=position,
        name=_str(item, "name", path, max_length=MAX_NAME),
        source_doc=_str(item, "source_doc", path, max_length=MAX_TYPE),
        source_field_name=_str(item, "source_field_name", path, max_length=MAX_NAME),
        source_value=item.get("source_value"),
        target_doc=_str(item, "target_doc", path, max_length=MAX_TYPE),
        target_field_name=_str(item, "target_field_name", path, max_length=MAX_NAME),
        target_value=item.get("target_value"),
        similarity=_score(item.get("similarity_score"), f"{path}.similarity_score", 100),
        extra={k: v for k, v in item.items() if k not in _CHECK_KEYS},
    )


def _or_empty(value: JSONValue) -> JSONValue:
    return [] if value is None else value


def parse_callback_data(payload: JSONValue) -> CallbackData:
    payload = _obj(payload, "")
    flow_uuid = _str(payload, "flow_uuid", "", required=True)
    if not flow_uuid.strip():
        raise PayloadError("flow_uuid", "must not be empty")
    ocr = _list(_or_empty(payload.get("ocr_data")), "ocr_data")
    checks = _list(_or_empty(payload.get("cross_checks")), "cross_checks")
    return CallbackData(
        flow_uuid=flow_uuid,
        documents=tuple(parse_document(item, i, f"ocr_data[{i}]") for i, item in enumerate(ocr)),
        cross_checks=tuple(
            parse_cross_check(item, i, f"cross_checks[{i}]") for i, item in enumerate(checks)
        ),
    )


def _int(container: dict, key: str, default: int) -> int:
    value = container.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise PayloadError(key, f"expected an integer, got {_kind(value)}")
    return value


def parse_batch_page(payload: JSONValue, batch_id: str = "") -> BatchPage:
    """A v1 extracts page. The batch id comes from the request (poll) or the body (callback)."""
    payload = _obj(payload, "")
    batch_id = _str(payload, "batch_id", "", max_length=MAX_NAME) or batch_id
    items = _list(payload.get("data"), "data") if "data" in payload else None
    if items is None:
        raise PayloadError("data", "is required")
    documents = tuple(
        parse_document(item, i, f"data[{i}]", data_key="file_data", batch_id=batch_id)
        for i, item in enumerate(items)
    )
    page = _int(payload, "page", 1)
    per_page = _int(payload, "per_page", len(items) or 1)
    return BatchPage(
        batch_id=batch_id or next((d.batch_id for d in documents if d.batch_id), ""),
        documents=documents,
        page=page,
        per_page=per_page,
        total_pages=_int(payload, "total_pages", 1),
        total_items=_int(payload, "total_items", len(items)),
        has_next=bool(payload.get("has_next", False)),
    )


def parse_status(payload: JSONValue) -> FlowStatus:
    payload = _obj(payload, "")
    return FlowStatus(
        upload_status=_str(payload, "upload_status", "", max_length=MAX_STATUS),
        processing_status=_str(payload, "processing_status", "", max_length=MAX_STATUS),
        # The vendor spells it "crossheck_status"; accept the corrected spelling too.
        crosscheck_status=_str(payload, "crossheck_status", "", max_length=MAX_STATUS)
        or _str(payload, "crosscheck_status", "", max_length=MAX_STATUS),
        master_status=_str(payload, "master_status", "", required=True, max_length=MAX_STATUS),
    )


def parse_token(payload: JSONValue) -> Token:
    payload = _obj(payload, "")
    token = payload.get("access_token")
    if not isinstance(token, str) or not token:
        raise PayloadError("access_token", "is required")
    expires = payload.get("expires_in", 3600)
    if isinstance(expires, bool) or not isinstance(expires, int | float) or expires <= 0:
        raise PayloadError("expires_in", "must be a positive number")
    return Token(access_token=token, expires_in=int(expires))


def parse_flow_init(payload: JSONValue) -> str:
    payload = _obj(payload, "")
    return _str(payload, "flow_uuid", "", required=True, max_length=MAX_FLOW_UUID)


def parse_upload(payload: JSONValue) -> list[str]:
    """multiupload answers one object or (despite the docs' example) a list of them."""
    items = payload if isinstance(payload, list) else [payload]
    ids = [
        _str(_obj(item, f"[{i}]"), "batch_id", f"[{i}]", required=True, max_length=MAX_NAME)
        for i, item in enumerate(items)
    ]
    if not ids:
        raise PayloadError("", "no batch_id in the upload response")
    return ids
