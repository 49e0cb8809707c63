"""A supervisor reads the overview in a real browser (Debian's Chromium driven by
Playwright): the charts draw, the filters refresh the figures through htmx and stay in the
URL, a threshold can be tried, the numbers open under a chart.

Saves docs/screenshots/overview.png for the README."""

from __future__ import annotations

import random
from datetime import datetime, time, timedelta

from django.utils import timezone

try:
    from playwright.sync_api import expect
except ImportError:  # the module is skipped below
    expect = None

from atlas_review.overview.models import QueueSla
from atlas_review.review import services
from atlas_review.review.models import ReasonCode, ReviewItem
from tests.browser.conftest import BROWSER_MARKS, SCREENSHOTS
from tests.conftest import make_user
from tests.review.builders import check, document, make_flow

pytestmark = BROWSER_MARKS

FIELDS = {
    "INVOICE": ["customer_name", "invoice_number", "total_invoice_amount"],
    "DELIVERY_ORDER": ["customer_name", "loan_amount", "dealer_address"],
}


def a_week_on_the_floor(monkeypatch) -> None:
    """Thirty flows through ingest, and a week of four reviewers deciding and closing most
    of them (the services act at chosen moments), for a screenshot with something in it."""
    r = random.Random(8)
    reason, _ = ReasonCode.objects.get_or_create(code="illegible", defaults={"label": "Illegible"})
    reviewers = [make_user(name, "reviewer") for name in ("asha", "bilal", "chen", "dev")]
    today, real_now, real_clock = timezone.localdate(), timezone.now(), timezone.now
    flows = []
    for n in range(30):
        docs = [
            document(t, {f: (f"{f} {n}", round(r.betavariate(5, 1.6), 2)) for f in names})
            for t, names in FIELDS.items()
        ]
        if n % 7 == 3:
            docs.append(document("", error_code=r.choice(["UNRECOGNISED", "BLURRED"])))
        flows.append(
            make_flow(
                docs,
                [check("DEALER_ADDRESS", "12 MG Road", "12 M.G. Road", r.randint(55, 100)),
                 check("CUSTOMER_NAME", "Asha Rao", "Asha Rao", r.randint(75, 100))],
                product_type="LOAN_APP" if n % 3 == 0 else "PROD_CDL",
            )
        )  # fmt: skip
    for n, flow in enumerate(flows[:22]):
        who = reviewers[n % 4]
        moment = timezone.make_aware(
            datetime.combine(today - timedelta(days=n % 7), time(9 + n % 8, r.randint(0, 40)))
        )
        for item in ReviewItem.objects.filter(flow=flow).needing_decision().order_by("pk"):
            moment += timedelta(seconds=r.randint(20, 240))
            monkeypatch.setattr(timezone, "now", lambda m=moment: m)
            action = r.choices(["accept", "correct", "reject"], [6, 3, 1])[0]
            extra = {"corrected_value": "fixed"} if action == "correct" else {}
            services.decide(item, who, action, reason=reason if action == "reject" else None, **extra)  # fmt: skip
        monkeypatch.setattr(timezone, "now", lambda m=moment: m + timedelta(seconds=30))
        services.close(flow.pk, who, r.choices(["approved", "rejected", "needs_info"], [7, 2, 1])[0])  # fmt: skip
    monkeypatch.setattr(timezone, "now", lambda: real_now - timedelta(minutes=12))
    services.claim(flows[22].pk, reviewers[0])
    services.claim(flows[23].pk, reviewers[2])
    monkeypatch.setattr(timezone, "now", real_clock)
    for n, flow in enumerate(flows[22:]):
        ReviewItem.objects.filter(flow=flow).update(created_at=real_now - timedelta(hours=5 + 9 * n))  # fmt: skip
    QueueSla.objects.create(queue="exceptions", hours=8)


def test_a_supervisor_reads_the_overview(browser, live_server, monkeypatch):
    a_week_on_the_floor(monkeypatch)
    make_user("lead", "supervisor")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    page = browser.new_context(viewport={"width": 1440, "height": 1000}).new_page()
    page.set_default_timeout(10_000)
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("input[name=username]", "lead")
    page.fill("input[name=password]", "pw-lead")
    page.keyboard.press("Enter")
    page.wait_for_url(lambda url: "/accounts/login/" not in url)

    page.click("text=Overview")
    page.wait_for_url("**/overview/")
    expect(page.locator("article.figure")).to_have_count(10)
    expect(page.locator("article.figure svg.chart")).to_have_count(10)
    expect(page.locator("#figure-decisions svg rect.heat").first).to_be_visible()
    page.screenshot(path=str(SCREENSHOTS / "overview.png"), full_page=True)

    # The numbers are one click away.
    table = page.locator("#figure-queues details table")
    expect(table).to_be_hidden()
    page.click("#figure-queues summary")
    expect(table).to_be_visible()
    expect(table.locator("tbody tr")).to_have_count(4)

    # A product filter refreshes the figures in place (htmx) and lands in the URL.
    page.fill("input[name=product_type]", "LOAN_APP")
    page.keyboard.press("Enter")
    expect(page.locator(".as-of")).to_contain_text("product LOAN_APP")
    assert "product_type=LOAN_APP" in page.url
    assert page.locator("#overview-form").count() == 1  # the page itself was not reloaded

    # Try a threshold: the verdict compares it with the thresholds in force.
    page.fill("input[name=t_confidence]", "0.9")
    page.keyboard.press("Enter")
    expect(page.locator("#threshold-verdict")).to_contain_text("At 0.9:")
    assert "t_confidence=0.9" in page.url

    # The URL is the whole state: reloading it shows the same figures.
    page.reload()
    expect(page.locator("input[name=product_type]")).to_have_value("LOAN_APP")
    expect(page.locator("#threshold-verdict")).to_contain_text("At 0.9:")
