"""An agent reviews a flow in a real browser with the keyboard only (Debian's Chromium
driven by Playwright), and a second agent is refused the flow the first one holds.

Saves docs/screenshots/queue.png and docs/screenshots/review.png for the README."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

try:
    from playwright.sync_api import expect
except ImportError:  # the module is skipped below
    expect = None

from atlas_review.atlas.simulator.svg import render_document_svg
from atlas_review.review import services
from atlas_review.review.models import Decision, FlowReview, ReasonCode, ReviewItem
from tests.browser.conftest import BROWSER_MARKS, SCREENSHOTS
from tests.conftest import make_user
from tests.review.builders import check, document, make_flow

pytestmark = BROWSER_MARKS


def new_page(browser):
    context = browser.new_context(viewport={"width": 1440, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(10_000)
    # Atlas's pre-signed document URLs, answered with the simulator's generated scans.
    page.route(
        "https://files.example.com/**",
        lambda route: route.fulfill(
            content_type="image/svg+xml",
            body=render_document_svg("demo", route.request.url.rsplit("/", 1)[-1]),
        ),
    )
    return page


def log_in(page, base_url: str, username: str) -> None:
    page.goto(f"{base_url}/accounts/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", f"pw-{username}")
    page.keyboard.press("Enter")
    page.wait_for_url(lambda url: "/accounts/login/" not in url)


def invoice_flow(application_id: str, flow_uuid: str):
    return make_flow(
        [
            document(
                "INVOICE",
                {
                    "customer_name": ("Pashangh Irani", 0.42),
                    "invoice_number": ("INV-4332", 0.55),
                    "total_invoice_amount": ("30,000", 0.61),
                    "dealership_name": ("Mobile Point", 0.97),
                },
            ),
        ],
        [
            check(
                "CUSTOMER_NAME",
                "Pashangh Irani",
                "Pashangh Irani",
                96,
                source=("DELIVERY_ORDER", "customer_name"),
                target=("INVOICE", "customer_name"),
            )
        ],
        application_id=application_id,
        flow_uuid=flow_uuid,
        file_url=f"https://files.example.com/{application_id}-invoice.svg",
    )


def test_an_agent_reviews_a_flow_with_the_keyboard_only(browser, live_server):
    rita = make_user("rita", "reviewer")
    otto = make_user("otto", "reviewer")
    ReasonCode.objects.get_or_create(code="illegible", defaults={"label": "Document illegible"})
    first = invoice_flow("APP-1001", "flow-browser-1")
    second = invoice_flow("APP-1002", "flow-browser-2")
    held = invoice_flow("APP-1003", "flow-browser-3")
    services.claim(held.pk, otto)
    now = timezone.now()
    for flow, age in (
        (first, timedelta(hours=3)),
        (second, timedelta(hours=2)),
        (held, timedelta(minutes=1)),
    ):
        ReviewItem.objects.filter(flow=flow).update(created_at=now - age)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    page = new_page(browser)
    log_in(page, live_server.url, "rita")
    page.goto(f"{live_server.url}/review/queue/fields/")
    expect(page.locator("tr[data-row]")).to_have_count(9)
    expect(page.locator(".topbar .count").first).to_have_text("9")  # nav counts loaded
    page.screenshot(path=str(SCREENSHOTS / "queue.png"), full_page=True)

    # Open the first flow from the queue: select the first row, Enter.
    page.keyboard.press("j")
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/review/flows/{first.pk}/**")
    page.wait_for_selector("article.item.selected")

    decided = page.locator("article.item.decided")
    next_open = page.locator("article.item.status-open.selected")
    # (The page's CSP forbids eval, so waits use locators, not wait_for_function.)
    # Accept the first item; the selection then moves on to the next undecided one.
    page.keyboard.press("a")
    expect(decided).to_have_count(1)
    expect(next_open).to_be_focused()
    # Correct the second: c focuses its value, type, Enter saves.
    page.keyboard.press("c")
    page.keyboard.press("Control+A")
    page.keyboard.type("INV-4333")
    page.keyboard.press("Enter")
    expect(decided).to_have_count(2)
    expect(next_open).to_be_focused()
    # Reject the third: r focuses its reason, an arrow picks one, Enter saves.
    page.keyboard.press("r")
    page.keyboard.press("ArrowDown")
    page.keyboard.press("Enter")
    expect(decided).to_have_count(3)
    expect(page.locator("#close-form")).to_be_visible()
    page.screenshot(path=str(SCREENSHOTS / "review.png"), full_page=False)

    # n: choose the outcome, Enter closes and opens the next flow at once.
    page.keyboard.press("n")
    page.keyboard.press("ArrowDown")  # Approved
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/review/flows/{second.pk}/**")

    decisions = {
        d.item.name: d for d in Decision.objects.filter(flow=first).select_related("item", "reason")
    }
    assert decisions["customer_name"].action == "accept"
    assert decisions["customer_name"].atlas_value == "Pashangh Irani"
    assert (decisions["invoice_number"].action, decisions["invoice_number"].corrected_value) == (
        "correct",
        "INV-4333",
    )
    assert decisions["total_invoice_amount"].action == "reject"
    assert decisions["total_invoice_amount"].reason.code == "illegible"
    assert {d.author for d in decisions.values()} == {rita}
    closed = FlowReview.objects.get(pk=first.pk)
    assert (closed.outcome, closed.closed_by) == ("approved", rita)
    assert FlowReview.objects.get(pk=second.pk).claimed_by == rita, "otto's flow was skipped"

    # A second agent opens the flow rita now holds: refused, told who holds it.
    other = new_page(browser)
    log_in(other, live_server.url, "otto")
    other.goto(f"{live_server.url}/review/flows/{second.pk}/")
    assert "rita is reviewing this flow" in other.inner_text("#claim")
    assert other.locator('[data-action="accept"]').count() == 0
    other.keyboard.press("a")  # the shortcut has nothing to press
    assert not Decision.objects.filter(flow=second).exists()
    assert ReviewItem.objects.filter(flow=second, status="open").count() == 3
