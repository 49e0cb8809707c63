"""Atlas's values are untrusted: markup in any string Atlas sends renders as text on every
page (flows, review, queues, every admin page) and stays data in CSV exports (served as
attachments, formula starts neutralised); file_url values become links or images only when
they are http(s) URLs."""

from __future__ import annotations

import csv
import io
import re

import pytest
from django.contrib import admin
from django.urls import reverse

from atlas_review.atlas.payloads import parse_callback_data
from atlas_review.flows import ingest, journal
from atlas_review.flows.models import Document, Flow, Payload, Upload
from atlas_review.review import services
from atlas_review.review.models import ReviewItem
from tests.conftest import make_user

pytestmark = pytest.mark.django_db

SCRIPT = '<script>alert("xss")</script>'
ATTRIBUTE = '"><img src=x onerror=alert(1)>'
FORMULA = '=HYPERLINK("http://evil.example","click")'
RAW_MARKUP = re.compile(r"<script>alert|<img src=x onerror")


def hostile_flow() -> Flow:
    flow = Flow.objects.create(
        flow_uuid="hostile-render", application_id=f"APP{ATTRIBUTE}", product_type="PROD_CDL",
        last_error=f"Atlas said {SCRIPT}",
    )  # fmt: skip
    Upload.objects.create(batch_id="B-RENDER", api="v3", flow=flow, files=[])
    body = {
        "flow_uuid": flow.flow_uuid,
        "ocr_data": [
            {
                "data": {
                    "document_type": f"INV{ATTRIBUTE}"[:64],
                    f"name{SCRIPT}": {"value": f"{SCRIPT}{ATTRIBUTE}", "confidence_score": 0.3},
                    "formula": {"value": FORMULA, "confidence_score": 0.2},
                    "nested": {"value": [SCRIPT, {"k": ATTRIBUTE}], "confidence_score": 0.4},
                    "odd_key": {"shape": SCRIPT},
                },
                "document_id": f"D{ATTRIBUTE}",
                "file_uuid": f"F{SCRIPT}",
            },
            {
                "data": {"document_type": "PAN", "pan": {"value": SCRIPT, "confidence_score": 1}},
                "document_id": f"E{SCRIPT}",
                "error_code": "INVALID_DOC",
                "error_reason": f"{SCRIPT} reason",
            },
        ],
        "cross_checks": [
            {
                "name": f"CHECK{SCRIPT}",
                "source_doc": "DELIVERY_ORDER",
                "source_field_name": f"f{ATTRIBUTE}",
                "source_value": SCRIPT,
                "target_doc": "INVOICE",
                "target_field_name": "g",
                "target_value": ATTRIBUTE,
                "similarity_score": 40,
            }
        ],
    }
    ingest.apply_callback_data(parse_callback_data(body))
    journal.record(Payload.Source.CALLBACK_V3, SCRIPT.encode(), headers={"User-Agent": SCRIPT})
    return flow


@pytest.fixture
def flow(db):
    return hostile_flow()


def assert_escaped(html: str, url: str) -> None:
    found = RAW_MARKUP.search(html)
    assert found is None, (
        f"{url} renders markup from Atlas: ...{html[found.start() - 80 : found.end() + 40]}..."
    )


def test_markup_from_atlas_is_text_on_every_page(client, flow):
    client.force_login(make_user("sup", "supervisor"))
    reviewer = make_user("rev", "reviewer")
    item = ReviewItem.objects.filter(flow=flow).first()
    services.decide(item, reviewer, "correct", corrected_value=f"{SCRIPT}{FORMULA}")
    pages = [
        "/flows/", f"/flows/{flow.pk}/", "/flows/?q=APP",
        f"/review/flows/{flow.pk}/", "/review/queue/fields/", "/review/queue/checks/",
        "/review/queue/exceptions/", "/review/queue/fields/?status=all",
    ]  # fmt: skip
    shown = 0
    for url in pages:
        response = client.get(url)
        assert response.status_code == 200, url
        html = response.content.decode()
        assert_escaped(html, url)
        shown += "&lt;script&gt;alert(" in html
    assert shown >= 4, "the values were on the pages, escaped"


def test_markup_from_atlas_is_text_on_every_admin_page(admin_client, flow):
    """Every registered model's list and the change page of each of its rows."""
    reviewer = make_user("rev", "reviewer")
    services.decide(ReviewItem.objects.filter(flow=flow).first(), reviewer, "accept")
    visited = 0
    for model in admin.site._registry:
        info = (model._meta.app_label, model._meta.model_name)
        urls = [reverse("admin:{}_{}_changelist".format(*info))]
        pks = model._default_manager.values_list("pk", flat=True)[:5]
        urls += [reverse("admin:{}_{}_change".format(*info), args=[pk]) for pk in pks]
        for url in urls:
            response = admin_client.get(url)
            assert response.status_code in (200, 302), url
            if response.status_code == 200:
                assert_escaped(response.content.decode(), url)
                visited += 1
    assert visited >= 20


@pytest.mark.parametrize("kind", ["decisions", "flows"])
def test_exports_keep_markup_as_data_and_neutralise_formulas(client, flow, kind):
    reviewer = make_user("rev", "reviewer")
    for item in ReviewItem.objects.filter(flow=flow, field__isnull=False):
        services.decide(item, reviewer, "correct", corrected_value=FORMULA)
    client.force_login(make_user("aud", "auditor"))

    response = client.get(reverse("audit:download"), {"kind": kind})

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"].startswith("attachment;")  # never shown as a page
    assert response["X-Content-Type-Options"] == "nosniff"
    text = b"".join(response.streaming_content).decode("utf-8-sig")
    cells = [cell for row in csv.reader(io.StringIO(text)) for cell in row]
    assert not [c for c in cells if c[:1] in ("=", "+", "@")], "a formula would run in Excel"
    if kind == "decisions":
        assert f"'{FORMULA}" in cells
    assert any(ATTRIBUTE in c for c in cells), "the application id is exported as it is"


# --- file_url ------------------------------------------------------------------------------

HOSTILE_URLS = [
    "javascript:alert(1)",
    "JaVaScRiPt:alert(1)",
    " javascript:alert(1)",
    "java\tscript:alert(1)",
    "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
    "data:image/svg+xml;base64,PHN2Zy8+.png",
    "vbscript:msgbox(1)",
    "//evil.example/x.png",
    "ftp://files.example/a.png",
    "/etc/passwd.png",
]
SAFE_IMAGE = "https://files.example/ok.png"
SAFE_LINK = "http://files.example/doc.pdf"
ATTR = re.compile(r'\s(href|src|action|formaction)="([^"]*)"')


def test_file_urls_are_links_or_images_only_when_http(client, db):
    urls = [*HOSTILE_URLS, SAFE_IMAGE, SAFE_LINK]
    flow = Flow.objects.create(flow_uuid="urls", application_id="URLS", product_type="P")
    # What we uploaded names the file of each document_id (an admin could edit it).
    Upload.objects.create(
        batch_id="B-URLS", api="v3", flow=flow,
        files=[{"file_url": url, "document_id": str(i)} for i, url in enumerate(urls)],
    )  # fmt: skip
    docs = [
        {"data": {"document_type": "PAN", "x": {"value": "v", "confidence_score": 0.1}},
         "document_id": str(i), "batch_id": "B-URLS"}
        for i in range(len(urls))
    ]  # fmt: skip
    ingest.apply_callback_data(parse_callback_data({"flow_uuid": "urls", "ocr_data": docs}))
    assert set(Document.objects.filter(flow=flow).values_list("file_url", flat=True)) == set(urls)
    client.force_login(make_user("sup", "supervisor"))

    for page in (f"/flows/{flow.pk}/", f"/review/flows/{flow.pk}/"):
        html = client.get(page).content.decode()
        attributes = ATTR.findall(html)
        for name, value in attributes:
            value = value.replace("&amp;", "&")
            assert value.startswith(("/", "?", "#", "https://", "http://")) or value == "", (
                page, name, value,
            )  # fmt: skip
            assert "//evil.example" not in value and "files.example/a.png" not in value
        assert ("src", SAFE_IMAGE) in attributes and ("href", SAFE_IMAGE) in attributes, page
        assert ("href", SAFE_LINK) in attributes and ("src", SAFE_LINK) not in attributes, page
        assert html.count("No file link") == len(HOSTILE_URLS), page
