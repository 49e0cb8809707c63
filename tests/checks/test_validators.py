"""Each check with valid and invalid numbers in real formats (no database)."""

from datetime import date

import pytest

from atlas_review.checks.validators import CHECKS, FAILED, NOT_APPLICABLE, PASSED, run_check

from .conftest import VALID_PAN, valid_aadhaar, valid_gstin, valid_imei, wrong_check_digit

TODAY = date(2026, 11, 27)


def outcome(code, value):
    result = run_check(code, value, today=TODAY)
    return result.status, result.reason


@pytest.mark.parametrize(
    "value",
    [valid_aadhaar(), valid_aadhaar("98765432109"), " ".join(["2345", "6789", "012"]) + valid_aadhaar()[-1],
     int(valid_aadhaar())],
)  # fmt: skip
def test_it_passes_real_aadhaar_numbers(value):
    assert outcome("aadhaar", value) == (PASSED, "")


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (wrong_check_digit(valid_aadhaar()), "Aadhaar check digit (Verhoeff) does not match"),
        ("23456789012", "Aadhaar number must have 12 digits (has 11)"),
        ("1234 5678 9012", "Aadhaar number cannot start with 0 or 1"),
        ("2345678A9012", "Aadhaar number must contain only digits"),
        ("234567765432", "Aadhaar number cannot be a palindrome"),
    ],
)
def test_it_names_why_an_aadhaar_number_cannot_exist(value, reason):
    assert outcome("aadhaar", value) == (FAILED, reason)


def test_pan_format():
    assert outcome("pan", VALID_PAN) == (PASSED, "")
    assert outcome("pan", "abcpe 1234 f") == (PASSED, "")  # OCR spacing and case
    assert outcome("pan", "ABCPE12340") == (
        FAILED,
        "PAN must be 5 letters, 4 digits and a letter (like ABCPE1234F)",
    )
    assert outcome("pan", "ABCPE123F") == (FAILED, "PAN must have 10 characters (has 9)")
    assert outcome("pan", "ABCXE1234F") == (FAILED, "PAN 4th letter X is not a known holder type")
    assert outcome("pan", "ABCPE0000F") == (FAILED, "PAN serial number 0000 is never issued")


def test_gstin_check_digit():
    gstin = valid_gstin()
    assert outcome("gstin", gstin) == (PASSED, "")
    assert outcome("gstin", valid_gstin("27AAPFU0939F1Z")) == (PASSED, "")
    wrong = gstin[:-1] + ("A" if gstin[-1] != "A" else "B")
    assert outcome("gstin", wrong) == (FAILED, "GSTIN check digit does not match")
    # The contract example's GSTIN lost a character.
    assert outcome("gstin", "29SFWYT8463N1Z") == (FAILED, "GSTIN must have 15 characters (has 14)")
    assert outcome("gstin", valid_gstin("99ABCPE1234F1Z")) == (
        FAILED,
        "GSTIN state code, PAN or entity code is not valid",
    )


def test_imei_luhn_on_every_value_of_a_list():
    first, second = valid_imei(), valid_imei("86753090000001")
    assert outcome("imei", [first, second]) == (PASSED, "")
    assert outcome("imei", "35-686800-004141-" + first[-1]) == (PASSED, "")
    assert outcome("imei", [first, wrong_check_digit(second)]) == (
        FAILED,
        "IMEI check digit (Luhn) does not match (value 2 of 2)",
    )
    assert outcome("imei", wrong_check_digit(first)) == (
        FAILED,
        "IMEI check digit (Luhn) does not match",
    )
    # The contract example: 8 digits read off a label.
    assert outcome("imei", ["36732632"]) == (FAILED, "IMEI must have 15 digits (has 8)")
    assert outcome("imei", ["", None]) == (NOT_APPLICABLE, "")


@pytest.mark.parametrize("value", ["14-02-1990", "14/02/1990", "1990-02-14"])
def test_dates_parse_in_the_formats_atlas_uses(value):
    assert outcome("date_of_birth", value) == (PASSED, "")


def test_date_of_birth_must_be_an_adult_alive():
    assert outcome("date_of_birth", "28-11-2008") == (FAILED, "age 17 is under 18")
    assert outcome("date_of_birth", "27-11-2008") == (PASSED, "")  # 18 today
    assert outcome("date_of_birth", "01-01-1920") == (FAILED, "age 106 is over 100")
    assert outcome("date_of_birth", "01-01-2825") == (FAILED, "date of birth is in the future")
    assert outcome("date_of_birth", "31-02-1990") == (
        FAILED,
        "'31-02-1990' is not a date (DD-MM-YYYY, DD/MM/YYYY or YYYY-MM-DD)",
    )
    assert outcome("date_of_birth", 1990)[0] == FAILED


def test_invoice_dates_are_recent_and_not_in_the_future():
    assert outcome("document_date", "27-11-2026") == (PASSED, "")
    assert outcome("document_date", "28-11-2026") == (FAILED, "date 28-11-2026 is in the future")
    assert outcome("document_date", "01-11-2024") == (
        FAILED,
        "date 01-11-2024 is more than 2 years old",
    )
    assert outcome("document_date", "2025-04-01") == (PASSED, "")


@pytest.mark.parametrize(
    "value", [30000, 23499.5, "30000", "23,499.00", "₹ 1,23,456", "Rs. 30000/-", "INR 499"]
)
def test_amounts_as_numbers_or_printed(value):
    assert outcome("amount", value) == (PASSED, "")


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (0, "amount must be positive (is 0)"),
        ("-500", "amount must be positive (is -500)"),
        ("30O00", "amount '30O00' is not a number"),
        (True, "amount 'True' is not a number"),
        ("NaN", "amount 'NaN' is not a number"),
    ],
)
def test_amounts_that_are_not_positive_numbers(value, reason):
    assert outcome("amount", value) == (FAILED, reason)


@pytest.mark.parametrize(
    "value", ["9876543210", "+91 98765 43210", "+91-9876543210", "09876543210", "919876543210"]
)
def test_mobile_numbers_with_indian_prefixes(value):
    assert outcome("mobile", value) == (PASSED, "")


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("5876543210", "mobile number must start with 6, 7, 8 or 9"),
        ("987654321", "mobile number must have 10 digits (has 9)"),
        ("98765O3210", "mobile number must contain only digits"),
    ],
)
def test_mobile_numbers_that_cannot_be_dialled(value, reason):
    assert outcome("mobile", value) == (FAILED, reason)


@pytest.mark.parametrize("code", sorted(CHECKS))
@pytest.mark.parametrize("empty", [None, "", "   ", []])
def test_an_empty_value_is_not_applicable(code, empty):
    assert outcome(code, empty) == (NOT_APPLICABLE, "")


def test_a_nested_value_fails_instead_of_crashing():
    assert outcome("pan", {"value": VALID_PAN}) == (FAILED, "value is not text or a number")
