"""The "truth" behind one loan application: who bought what from which dealer.

Every document of a flow is rendered from one Persona (with per-document OCR noise added
in generator.py), which is what makes cross-checks meaningful: two documents agree unless
the generator deliberately perturbs one of them. A Persona is a pure function of
(seed, key); key is the application id for v3 flows.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache

from stdnum import luhn, verhoeff

from . import data

GSTIN_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"

# A small pool of phones per seed whose IMEIs turn up in unrelated applications: the same
# handset financed twice is the fraud pattern the dashboard must be able to show.
SHARED_IMEI_POOL_SIZE = 4
SHARED_IMEI_RATE = 0.03
INVALID_AADHAAR_RATE = 0.07
INVALID_PAN_RATE = 0.07
INVALID_IMEI_RATE = 0.05
INVOICE_WINDOW_START = date(2025, 4, 1)
INVOICE_WINDOW_DAYS = 240


def rng(seed: object, *parts: object) -> random.Random:
    """A Random seeded from the parts. str seeds go through SHA-512, so this is stable across
    processes and Python runs (unlike hash())."""
    return random.Random("|".join(str(p) for p in (seed, *parts)))


def digits(r: random.Random, n: int) -> str:
    return "".join(r.choice("0123456789") for _ in range(n))


def letters(r: random.Random, n: int) -> str:
    return "".join(r.choice(UPPER) for _ in range(n))


def luhn_complete(body: str) -> str:
    return body + luhn.calc_check_digit(body)


def make_imei(r: random.Random, tac: str) -> str:
    return luhn_complete(tac + digits(r, 6))


def break_check_digit(number: str) -> str:
    """The same number with a different (hence wrong) final check digit."""
    last = number[-1]
    return number[:-1] + str((int(last) + 1 + (int(last) * 7) % 8) % 10)


def make_aadhaar(r: random.Random) -> str:
    while True:
        body = r.choice("23456789") + digits(r, 10)
        number = body + verhoeff.calc_check_digit(body)
        if number != number[::-1]:
            return number


def make_pan(r: random.Random, surname: str, holder: str = "P") -> str:
    return (
        letters(r, 3)
        + holder
        + surname[0].upper()
        + f"{r.randrange(1, 10000):04d}"
        + (letters(r, 1))
    )


def make_gstin(r: random.Random, state_code: str, trade_name: str) -> str:
    body = state_code + make_pan(r, trade_name, holder=r.choice("PFC")) + "1Z"
    return body + luhn.calc_check_digit(body, GSTIN_ALPHABET)


def make_mobile(r: random.Random) -> str:
    return r.choice("6789") + digits(r, 9)


def make_address(r: random.Random, city: tuple[str, str, str, str]) -> str:
    name, state, _, pin_prefix = city
    house = r.choice(
        (
            f"D. No. {r.randrange(1, 30)}-{r.randrange(1, 12)}-{r.randrange(1, 60)}",
            f"Flat {r.randrange(1, 15)}0{r.randrange(1, 9)}",
            f"H.No. {r.randrange(1, 20)}-{r.randrange(1, 200)}/{r.choice('ABC')}",
            f"#{r.randrange(1, 400)}",
        )
    )
    parts = [house]
    if house.startswith("Flat"):
        parts.append(r.choice(data.BUILDINGS))
    parts += [r.choice(data.STREETS), r.choice(data.LOCALITIES)]
    pin = pin_prefix + f"{r.randrange(0, 100):03d}"
    return ", ".join(parts) + f", {name}, {state} - {pin}"


@dataclass(frozen=True, slots=True)
class Dealer:
    name: str
    address: str
    gstin: str


@lru_cache(maxsize=512)
def make_dealer(seed: object, city_index: int, dealer_index: int) -> Dealer:
    # Keyed by city and a small index, so the same few dealers recur across applications.
    r = rng(seed, "dealer", city_index, dealer_index)
    city = data.CITIES[city_index]
    name = f"{r.choice(data.DEALER_PREFIX)} {r.choice(data.DEALER_SUFFIX)}"
    return Dealer(name=name, address=make_address(r, city), gstin=make_gstin(r, city[2], name))


@lru_cache(maxsize=64)
def shared_phones(seed: object) -> tuple[tuple[str, tuple[str, ...], int], ...]:
    """The pool of (model, imeis, price) that several applications may claim."""
    pool = []
    for i in range(SHARED_IMEI_POOL_SIZE):
        r = rng(seed, "shared-imei", i)
        model, tac, price = r.choice(data.PHONES)
        pool.append((model, (make_imei(r, tac),), price))
    return tuple(pool)


@dataclass(frozen=True, slots=True)
class Persona:
    key: str
    name: str
    gender: str
    relation: str
    father_name: str
    date_of_birth: date
    mobile: str
    address: str
    aadhaar: str
    pan: str
    dealer: Dealer
    model: str
    imeis: tuple[str, ...]
    imei_shared: bool
    price: int
    invoice_amount: int
    loan_amount: int
    invoice_number: str
    invoice_date: date
    do_date: date
    financier: str
    hypothecation: str


@lru_cache(maxsize=4096)
def make_persona(seed: object, key: str) -> Persona:
    r = rng(seed, "persona", key)
    gender = r.choice(("Male", "Female"))
    first = r.choice(data.MALE_FIRST if gender == "Male" else data.FEMALE_FIRST)
    surname = r.choice(data.SURNAMES)
    father = f"{r.choice(data.MALE_FIRST)} {surname}"
    relation = "S/O" if gender == "Male" else r.choice(("D/O", "W/O"))
    city_index = r.randrange(len(data.CITIES))
    dealer = make_dealer(seed, city_index, r.randrange(3))

    model, tac, base_price = r.choice(data.PHONES)
    if r.random() < SHARED_IMEI_RATE:
        model, imeis, base_price = r.choice(shared_phones(seed))
        shared = True
    else:
        imeis = (make_imei(r, tac),)
        if r.random() < 0.3:  # dual-SIM handsets carry two IMEIs
            imeis += (luhn_complete(imeis[0][:8] + f"{(int(imeis[0][8:14]) + 1) % 10**6:06d}"),)
        if r.random() < INVALID_IMEI_RATE:
            imeis = (break_check_digit(imeis[0]), *imeis[1:])
        shared = False
    price = base_price + r.choice((0, 0, 0, 500, 1000, -1000))
    invoice_amount = price + r.choice((0, 0, 0, 499, 999))  # sometimes an accessory
    loan_amount = round(invoice_amount * r.uniform(0.7, 0.95), -2)

    aadhaar = make_aadhaar(r)
    if r.random() < INVALID_AADHAAR_RATE:
        aadhaar = break_check_digit(aadhaar)
    pan = make_pan(r, surname)
    if r.random() < INVALID_PAN_RATE:
        # What OCR does to a PAN: a letter read as a digit, which breaks the format.
        pan = pan[:9] + r.choice("0815")

    invoice_date = INVOICE_WINDOW_START + timedelta(days=r.randrange(INVOICE_WINDOW_DAYS))
    return Persona(
        key=key,
        name=f"{first} {surname}",
        gender=gender,
        relation=relation,
        father_name=father,
        date_of_birth=date(1965, 1, 1) + timedelta(days=r.randrange(38 * 365)),
        mobile=make_mobile(r),
        address=make_address(r, data.CITIES[city_index]),
        aadhaar=aadhaar,
        pan=pan,
        dealer=dealer,
        model=model,
        imeis=tuple(imeis),
        imei_shared=shared,
        price=price,
        invoice_amount=invoice_amount,
        loan_amount=int(loan_amount),
        invoice_number=r.choice(
            (
                f"INV/{invoice_date.year % 100}-{invoice_date.year % 100 + 1}/{r.randrange(100, 9999):04d}",
                str(r.randrange(1000, 99999)),
                f"{letters(r, 2)}-{r.randrange(10000, 99999)}",
            )
        ),
        invoice_date=invoice_date,
        do_date=invoice_date - timedelta(days=r.choice((0, 0, 1, 2))),
        financier=r.choice(data.FINANCIERS),
        hypothecation="yes" if r.random() < 0.9 else "no",
    )


def canonical_fields(p: Persona, doc_type: str) -> dict[str, object]:
    """The values printed on the physical document (what the scan shows)."""
    dmy = "%d-%m-%Y"
    if doc_type == "INVOICE":
        return {
            "customer_name": p.name,
            "customer_address": p.address,
            "mobile_number": p.mobile,
            "dealership_name": p.dealer.name,
            "dealer_gst": p.dealer.gstin,
            "dealer_address": p.dealer.address,
            "total_invoice_amount": p.invoice_amount,
            "invoice_date": p.invoice_date.strftime(dmy),
            "invoice_number": p.invoice_number,
            "hypothecation": p.hypothecation,
            "dealer_sign": "yes",
            "dealer_stamp": "yes",
            "imei_number": [p.imeis[0]],
        }
    if doc_type == "DELIVERY_ORDER":
        return {
            "customer_name": p.name,
            "customer_delivery_address": p.address,
            "customer_mobile_number": p.mobile,
            "dealer_address": p.dealer.address,
            "dealer_name": p.dealer.name,
            "loan_amount": p.loan_amount,
            "do_date": p.do_date.strftime(dmy),
        }
    if doc_type == "AADHAAR":
        return {
            "name": p.name,
            "date_of_birth": p.date_of_birth.strftime("%d/%m/%Y"),
            "gender": p.gender,
            "aadhaar_number": p.aadhaar,
            "address": f"{p.relation}: {p.father_name}, {p.address}",
        }
    if doc_type == "PAN":
        return {
            "name": p.name.upper(),
            "father_name": p.father_name.upper(),
            "date_of_birth": p.date_of_birth.strftime("%d/%m/%Y"),
            "pan_number": p.pan,
        }
    if doc_type == "IMEI_CLOSEUP_IMAGE":
        return {"model": p.model, "imei_number": list(p.imeis), "price": p.price}
    if doc_type == "ASSET_OPEN_BOX_IMAGE":
        return {"customer_present": "yes", "number_of_faces_visible": 1}
    return {}
