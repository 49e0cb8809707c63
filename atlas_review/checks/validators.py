"""Deterministic checks on values Atlas extracted: can this number exist, does this date
make sense. Atlas tells us how sure its OCR is; these tell us whether what it read is
possible at all.

Pure functions, no database. `run_check(code, value)` takes a raw Atlas value (string,
number, list or empty) and returns a CheckResult: passed, failed with a short reason a
reviewer reads, or not applicable (nothing to check). Identity numbers are validated with
python-stdnum (Verhoeff for Aadhaar, Luhn for IMEI and GSTIN); dates, amounts and mobile
numbers are our own rules.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation

from django.utils import timezone
from stdnum import imei as std_imei
from stdnum import luhn, verhoeff
from stdnum.exceptions import InvalidChecksum, ValidationError
from stdnum.in_ import aadhaar as std_aadhaar
from stdnum.in_ import gstin as std_gstin
from stdnum.in_ import pan as std_pan

PASSED, FAILED, NOT_APPLICABLE = "passed", "failed", "not_applicable"

DATE_FORMATS = ("%d-%m-%Y", "%d/%m/%Y", "%Y-%m-%d")
DATE_FORMATS_HELP = "DD-MM-YYYY, DD/MM/YYYY or YYYY-MM-DD"
MIN_AGE, MAX_AGE = 18, 100
# Invoices and delivery orders older than this are not what a new loan is made on.
MAX_DOCUMENT_AGE_DAYS = 2 * 365


@dataclass(frozen=True, slots=True)
class CheckResult:
    status: str
    reason: str = ""

    @property
    def passed(self) -> bool:
        return self.status == PASSED

    @property
    def failed(self) -> bool:
        return self.status == FAILED

    @property
    def applicable(self) -> bool:
        return self.status != NOT_APPLICABLE


OK = CheckResult(PASSED)
SKIPPED = CheckResult(NOT_APPLICABLE)


def fail(reason: str) -> CheckResult:
    return CheckResult(FAILED, reason)


# --- one scalar value each ---------------------------------------------------------------


def _text(value) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # 234567890123.0 from a JSON number
    return str(value).strip()


def _digits_only(text: str, separators: str = " -") -> str:
    for sep in separators:
        text = text.replace(sep, "")
    return text


def check_aadhaar(value) -> CheckResult:
    number = std_aadhaar.compact(_text(value))
    if not number.isdigit():
        return fail("Aadhaar number must contain only digits")
    if len(number) != 12:
        return fail(f"Aadhaar number must have 12 digits (has {len(number)})")
    if number[0] in "01":
        return fail("Aadhaar number cannot start with 0 or 1")
    if number == number[::-1]:
        return fail("Aadhaar number cannot be a palindrome")
    try:
        verhoeff.validate(number)
    except InvalidChecksum:
        return fail("Aadhaar check digit (Verhoeff) does not match")
    return OK


PAN_RE = re.compile(r"^[A-Z]{5}[0-9]{4}[A-Z]$")


def check_pan(value) -> CheckResult:
    number = std_pan.compact(_text(value))
    if len(number) != 10:
        return fail(f"PAN must have 10 characters (has {len(number)})")
    if not PAN_RE.match(number):
        return fail("PAN must be 5 letters, 4 digits and a letter (like ABCPE1234F)")
    try:
        std_pan.validate(number)
    except ValidationError:
        if number[5:9] == "0000":
            return fail("PAN serial number 0000 is never issued")
        return fail(f"PAN 4th letter {number[3]} is not a known holder type")
    return OK


GSTIN_RE = re.compile(r"^[0-9]{2}[A-Z]{5}[0-9]{4}[A-Z][0-9A-Z]{3}$")
GSTIN_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def check_gstin(value) -> CheckResult:
    number = std_gstin.compact(_text(value))
    if len(number) != 15:
        return fail(f"GSTIN must have 15 characters (has {len(number)})")
    if not GSTIN_RE.match(number):
        return fail("GSTIN must be a state code, a PAN and 3 characters")
    try:
        luhn.validate(number, GSTIN_ALPHABET)
    except InvalidChecksum:
        return fail("GSTIN check digit does not match")
    if not std_gstin.is_valid(number):
        return fail("GSTIN state code, PAN or entity code is not valid")
    return OK


def check_imei(value) -> CheckResult:
    number = std_imei.compact(_text(value))
    if not number.isdigit():
        return fail("IMEI must contain only digits")
    # A handset's label carries the 15-digit IMEI; 14 or 16 digits is a digit lost or
    # gained by OCR (stdnum accepts them as IMEI without check digit / IMEISV).
    if len(number) != 15:
        return fail(f"IMEI must have 15 digits (has {len(number)})")
    try:
        std_imei.validate(number)
    except ValidationError:
        return fail("IMEI check digit (Luhn) does not match")
    return OK


def parse_date(value) -> date | None:
    """A date in one of the formats Atlas uses, or None."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    for fmt in DATE_FORMATS:
        try:
            return datetime.strptime(text, fmt).date()
        except ValueError:
            continue
    return None


def _years_between(earlier: date, later: date) -> int:
    return later.year - earlier.year - ((later.month, later.day) < (earlier.month, earlier.day))


def _parsed_or_reason(value) -> date | CheckResult:
    parsed = parse_date(value)
    if parsed is None:
        return fail(f"{_text(value)!r} is not a date ({DATE_FORMATS_HELP})")
    return parsed


def check_date_of_birth(value, today: date | None = None) -> CheckResult:
    parsed = _parsed_or_reason(value)
    if isinstance(parsed, CheckResult):
        return parsed
    today = today or timezone.localdate()
    if parsed > today:
        return fail("date of birth is in the future")
    age = _years_between(parsed, today)
    if age < MIN_AGE:
        return fail(f"age {age} is under {MIN_AGE}")
    if age > MAX_AGE:
        return fail(f"age {age} is over {MAX_AGE}")
    return OK


def check_document_date(value, today: date | None = None) -> CheckResult:
    parsed = _parsed_or_reason(value)
    if isinstance(parsed, CheckResult):
        return parsed
    today = today or timezone.localdate()
    if parsed > today:
        return fail(f"date {parsed:%d-%m-%Y} is in the future")
    if (today - parsed).days > MAX_DOCUMENT_AGE_DAYS:
        return fail(f"date {parsed:%d-%m-%Y} is more than {MAX_DOCUMENT_AGE_DAYS // 365} years old")
    return OK


_CURRENCY = re.compile(r"^(?:₹|rs\.?|inr)\s*|\s*(?:/-|₹)$", re.IGNORECASE)


def parse_amount(value) -> Decimal | None:
    """A number, or a numeric string as printed on Indian documents: "₹ 1,23,456.00",
    "Rs. 30000/-". None if it is not a number."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return Decimal(str(value)) if math.isfinite(value) else None
    if not isinstance(value, str):
        return None
    text = _CURRENCY.sub("", value.strip()).replace(",", "").replace(" ", "")
    try:
        amount = Decimal(text)
    except InvalidOperation:
        return None
    return amount if amount.is_finite() else None


def check_amount(value) -> CheckResult:
    amount = parse_amount(value)
    if amount is None:
        return fail(f"amount {_text(value)!r} is not a number")
    if amount <= 0:
        return fail(f"amount must be positive (is {_text(value)})")
    return OK


def normalize_mobile(value) -> str:
    """Digits of an Indian mobile number without +91 / 91 / 0 prefixes."""
    text = _digits_only(_text(value), " -().")
    if text.startswith("+91"):
        text = text[3:]
    elif len(text) == 12 and text.startswith("91"):
        text = text[2:]
    elif len(text) == 11 and text.startswith("0"):
        text = text[1:]
    return text


def check_mobile(value) -> CheckResult:
    number = normalize_mobile(value)
    if not number.isdigit():
        return fail("mobile number must contain only digits")
    if len(number) != 10:
        return fail(f"mobile number must have 10 digits (has {len(number)})")
    if number[0] not in "6789":
        return fail("mobile number must start with 6, 7, 8 or 9")
    return OK


# --- the registry ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Check:
    code: str
    label: str  # what a passed check reads as: "✓ Aadhaar checksum"
    fn: Callable[..., CheckResult]
    dated: bool = False  # takes `today`


# Codes are stored in FieldCheck / FieldCheckResult rows: never rename one.
CHECKS: dict[str, Check] = {
    c.code: c
    for c in (
        Check("aadhaar", "Aadhaar checksum", check_aadhaar),
        Check("pan", "PAN format", check_pan),
        Check("gstin", "GSTIN checksum", check_gstin),
        Check("imei", "IMEI checksum", check_imei),
        Check("date_of_birth", "Plausible date of birth", check_date_of_birth, dated=True),
        Check("document_date", "Plausible document date", check_document_date, dated=True),
        Check("amount", "Positive amount", check_amount),
        Check("mobile", "Mobile number format", check_mobile),
    )
}
CHECK_CHOICES = [(c.code, c.label) for c in CHECKS.values()]


def is_empty(value) -> bool:
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, list | dict):
        return not value
    return False


def run_check(code: str, value, *, today: date | None = None) -> CheckResult:
    """Run the check `code` on a raw Atlas value. Lists (IMEIs of a dual-SIM phone) are
    checked item by item; the first failure is the result."""
    check = CHECKS[code]
    if is_empty(value):
        return SKIPPED
    if isinstance(value, dict):
        return fail("value is not text or a number")
    items = value if isinstance(value, list) else [value]
    present = [item for item in items if not is_empty(item)]
    if not present:
        return SKIPPED
    for index, item in enumerate(present, start=1):
        if isinstance(item, list | dict):
            result = fail("value is not text or a number")
        else:
            result = check.fn(item, today) if check.dated else check.fn(item)
        if result.failed:
            if len(present) > 1:
                return fail(f"{result.reason} (value {index} of {len(present)})")
            return result
    return OK
