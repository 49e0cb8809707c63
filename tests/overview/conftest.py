"""A small review floor with known figures, made the way production makes it: Atlas's
payloads through the ingest service (the real flagging fills the queues), then decisions and
outcomes through the review services at chosen moments.

The floor, in numbers the tests check (all flows created today; the default thresholds:
confidence 0.80, similarity 90):

    flow A  PROD_CDL  BANK_STATEMENT account_holder .42  account_number .55  ifsc .61
                      bank_name .97; DEALER_ADDRESS 60, CUSTOMER_NAME 95
    flow B  PROD_CDL  account_holder .15  account_number .85  ifsc .99  bank_name .80;
                      DEALER_ADDRESS 85
    flow C  LOAN_APP  account_holder .05  bank_name 1.0; two documents Atlas could not
                      read (UNRECOGNISED, BLURRED)

Two days ago riya decides A's four items (accept, correct, reject, accept) at 10:00:00,
10:00:40, 10:01:40 and 10:02:10 and approves A. Yesterday otto corrects B's account_holder
at 09:00 and rejects its DEALER_ADDRESS at 09:10, and rejects B. C stays open: its field
flagged 30 h ago, its exceptions 2 h and 50 h ago; otto holds C since 20 minutes ago. The
exceptions queue has an SLA of 48 h (the others the 24 h default).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

import pytest
from django.core.cache import cache
from django.utils import timezone

from atlas_review.flows.models import Flow
from atlas_review.overview.models import QueueSla
from atlas_review.review import services
from atlas_review.review.models import FlowReview, ReasonCode, ReviewItem
from tests.conftest import make_user
from tests.review.builders import PLAIN, check, document, make_flow


@dataclass
class Floor:
    a: Flow
    b: Flow
    c: Flow
    today: date
    now: datetime

    @property
    def day1(self) -> date:
        return self.today - timedelta(days=2)

    @property
    def day2(self) -> date:
        return self.today - timedelta(days=1)


def local(day: date, hour: int, minute: int = 0, second: int = 0) -> datetime:
    return timezone.make_aware(datetime.combine(day, time(hour, minute, second)))


class Clock:
    """Makes the services act at a chosen moment (they all read django.utils.timezone.now)."""

    def __init__(self, monkeypatch):
        self.monkeypatch = monkeypatch

    def at(self, moment: datetime) -> None:
        self.monkeypatch.setattr(timezone, "now", lambda: moment)

    def reset(self, real=timezone.now) -> None:
        self.monkeypatch.setattr(timezone, "now", real)


def item(flow: Flow, name: str) -> ReviewItem:
    return ReviewItem.objects.get(flow=flow, name=name)


def bank_statement(**fields) -> dict:
    return document(PLAIN, {name: (f"value of {name}", c) for name, c in fields.items()})


def build_floor(monkeypatch, *, prefix: str = "") -> Floor:
    """The floor above; `prefix` makes the flows distinct when a test builds it twice."""
    clock = Clock(monkeypatch)
    real_now = timezone.now()
    today = timezone.localdate()
    riya = make_user(f"{prefix}riya", "reviewer")
    otto = make_user(f"{prefix}otto", "reviewer")
    illegible, _ = ReasonCode.objects.get_or_create(code="illegible", defaults={"label": "Illegible"})  # fmt: skip

    a = make_flow(
        [bank_statement(account_holder=0.42, account_number=0.55, ifsc=0.61, bank_name=0.97)],
        [check("DEALER_ADDRESS", "12 MG Road", "12 M.G. Rd", 60),
         check("CUSTOMER_NAME", "Asha Rao", "Asha Rao", 95)],
    )  # fmt: skip
    b = make_flow(
        [bank_statement(account_holder=0.15, account_number=0.85, ifsc=0.99, bank_name=0.80)],
        [check("DEALER_ADDRESS", "4 Park St", "4 Park Street", 85)],
    )
    c = make_flow(
        [
            bank_statement(account_holder=0.05, bank_name=1.0),
            document("", error_code="UNRECOGNISED", error_reason="not a known document"),
            document("", error_code="BLURRED", error_reason="too blurred to read"),
        ],
        product_type="LOAN_APP",
    )

    day1, day2 = today - timedelta(days=2), today - timedelta(days=1)
    for moment, name, action, extra in [
        (local(day1, 10, 0, 0), "account_holder", "accept", {}),
        (local(day1, 10, 0, 40), "account_number", "correct", {"corrected_value": "50100"}),
        (local(day1, 10, 1, 40), "ifsc", "reject", {"reason": illegible}),
        (local(day1, 10, 2, 10), "DEALER_ADDRESS", "accept", {}),
    ]:
        clock.at(moment)
        services.decide(item(a, name), riya, action, **extra)
    clock.at(local(day1, 10, 2, 30))
    services.close(a.pk, riya, "approved")

    clock.at(local(day2, 9, 0))
    services.decide(item(b, "account_holder"), otto, "correct", corrected_value="Asha")
    clock.at(local(day2, 9, 10))
    services.decide(item(b, "DEALER_ADDRESS"), otto, "reject", reason=illegible)
    clock.at(local(day2, 9, 11))
    services.close(b.pk, otto, "rejected")

    clock.at(real_now - timedelta(minutes=20))
    services.claim(c.pk, otto)
    clock.reset()

    ReviewItem.objects.filter(flow=c, kind="field").update(created_at=real_now - timedelta(hours=30))  # fmt: skip
    ReviewItem.objects.filter(flow=c, name="UNRECOGNISED").update(created_at=real_now - timedelta(hours=2))  # fmt: skip
    ReviewItem.objects.filter(flow=c, name="BLURRED").update(created_at=real_now - timedelta(hours=50))  # fmt: skip
    QueueSla.objects.get_or_create(queue="exceptions", defaults={"hours": 48})
    assert FlowReview.objects.get(pk=c.pk).claimed_by == otto
    return Floor(a=a, b=b, c=c, today=today, now=real_now)


@pytest.fixture(autouse=True)
def no_figure_cache(settings):
    """Figures computed on every request (test_views tests the cache on its own)."""
    settings.OVERVIEW_CACHE_SECONDS = 0
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def floor(db, monkeypatch) -> Floor:
    return build_floor(monkeypatch)


@pytest.fixture
def supervisor_client(client, supervisor):
    client.force_login(supervisor)
    return client
