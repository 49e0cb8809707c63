"""A full sync and callback round with known secrets, then a look everywhere they could leak:
every log record (DEBUG and up, every logger, tracebacks included), the pages, every admin
page, the CSV exports, the journal, and the error reports Django sends administrators.

The secrets: our client secret at Atlas, the tokens Atlas issued us, the callback secret we
issued Atlas, and the tokens we issued Atlas in exchange."""

from __future__ import annotations

import logging
import secrets
import time

import pytest
from django.contrib import admin
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from atlas_review.atlas.simulator import start_simulator
from atlas_review.callbacks import services as callback_services
from atlas_review.callbacks.models import CallbackToken
from atlas_review.flows import services, tasks
from atlas_review.flows.models import Flow, Payload, SyncState
from tests.conftest import make_user

pytestmark = pytest.mark.django_db(transaction=True)

CLIENT_SECRET = "atlas-client-secret-" + secrets.token_hex(8)
CALLBACK_ID = "atlas-callback-" + secrets.token_hex(4)
CALLBACK_SECRET = "callback-secret-" + secrets.token_hex(8)


class Everything(logging.Handler):
    """Every record of every logger, formatted as a log file would have it."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(self.format(record))


@pytest.fixture
def everything():
    handler, root = Everything(), logging.getLogger()
    quiet = {name: logging.getLogger(name).level for name in ("urllib3", "axes", "django")}
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    for name in quiet:
        logging.getLogger(name).setLevel(logging.DEBUG)
    yield handler
    root.removeHandler(handler)
    root.setLevel(old_level)
    for name, level in quiet.items():
        logging.getLogger(name).setLevel(level)


@pytest.fixture
def issued(monkeypatch):
    """The tokens our /atlas/auth hands out (only their hashes are stored)."""
    tokens: list[str] = []
    real = callback_services.issue_token

    def recording(client_id, client_secret):
        token = real(client_id, client_secret)
        tokens.append(token.access_token)
        return token

    monkeypatch.setattr(callback_services, "issue_token", recording)
    return tokens


@pytest.fixture
def sim(live_server, settings):
    settings.ATLAS_CLIENT_SECRET = CLIENT_SECRET
    settings.ATLAS_CALLBACK_CLIENT_ID = CALLBACK_ID
    settings.ATLAS_CALLBACK_CLIENT_SECRET = CALLBACK_SECRET
    settings.PUBLIC_BASE_URL = live_server.url
    services._local.client = None
    with start_simulator(
        processing_seconds=0.3, client_secret=CLIENT_SECRET, callback_client_id=CALLBACK_ID,
        callback_client_secret=CALLBACK_SECRET, callback_backoff=0.1,
    ) as handle:  # fmt: skip
        settings.ATLAS_BASE_URL = handle.v3_url
        settings.ATLAS_DOCSTREAM_URL = handle.v1_url
        yield handle
    services._local.client = None


def wait_for(predicate, timeout=15.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_no_secret_or_token_reaches_a_log_page_export_or_error_report(
    sim, everything, issued, client, settings
):
    # A flow completed by Atlas's callback, one by polling, tokens expiring on the way, and
    # refused attempts with a wrong secret and a stale token.
    pushed = services.create_flow("SECRET-PUSH", [(sim.file_url("SECRET-PUSH-pan.svg"), "1")])
    wait_for(lambda: Flow.objects.get(pk=pushed.pk).sync_state == SyncState.DONE)
    sim.knobs.update({"callbacks": False})
    atlas_tokens = set(sim.state.tokens)  # renewing drops expired ones from the simulator
    sim.expire_tokens()
    polled = services.create_flow("SECRET-POLL", [(sim.file_url("SECRET-POLL-pan.svg"), "1")])
    time.sleep(0.4)  # Atlas finishes it; the next sweep finds it due and fetches it
    Flow.objects.filter(pk=polled.pk).update(next_sync_at=timezone.now())
    tasks.sweep()
    assert Flow.objects.get(pk=polled.pk).sync_state == SyncState.DONE
    client.post("/atlas/auth", headers={"Client-Id": CALLBACK_ID, "Client-Secret": "wrong"})
    stale = issued[0]
    CallbackToken.objects.all().delete()
    client.post("/atlas/callback", b"{}", content_type="application/json", headers={"Token": stale})

    atlas_tokens |= set(sim.state.tokens)
    known = [CLIENT_SECRET, CALLBACK_SECRET, *atlas_tokens, *issued]
    assert len(atlas_tokens) >= 2 and issued, "tokens were issued both ways"

    def leaks(text: str) -> list[str]:
        return [s[:12] + "…" for s in known if s in text]

    # Logs: every record, with tracebacks.
    assert len(everything.lines) > 20
    assert leaks("\n".join(everything.lines)) == []

    # Pages a reviewer, a supervisor or an auditor sees, and every admin page.
    client.force_login(make_user("sup", "supervisor"))
    for url in ("/flows/", f"/flows/{pushed.pk}/", f"/review/flows/{polled.pk}/",
                "/review/queue/fields/", "/audit/exports/"):  # fmt: skip
        response = client.get(url)
        assert response.status_code == 200 and leaks(response.content.decode()) == [], url
    for kind in ("decisions", "flows"):
        response = client.get(reverse("audit:download"), {"kind": kind})
        assert leaks(b"".join(response.streaming_content).decode()) == [], kind
    client.force_login(make_user("root", is_staff=True, is_superuser=True))
    for model in admin.site._registry:
        info = (model._meta.app_label, model._meta.model_name)
        urls = [reverse("admin:{}_{}_changelist".format(*info))]
        urls += [
            reverse("admin:{}_{}_change".format(*info), args=[pk])
            for pk in model._default_manager.values_list("pk", flat=True)[:3]
        ]
        for url in urls:
            assert leaks(client.get(url).content.decode()) == [], url

    # The journal keeps headers worth keeping, never the Token.
    for payload in Payload.objects.all():
        assert leaks(repr(payload.headers) + bytes(payload.body).decode(errors="replace")) == []


def test_error_reports_hide_secrets(client, settings, monkeypatch):
    """A crash inside /atlas/auth with DEBUG=False: the 500 page, the mail to ADMINS, and
    the full HTML report (every frame's variables, as AdminEmailHandler(include_html=True)
    or an error tracker would send it)."""
    from django.views.debug import ExceptionReporter

    settings.DEBUG = False
    settings.ADMINS = ["ops@example.com"]
    settings.ATLAS_CALLBACK_CLIENT_ID = CALLBACK_ID
    settings.ATLAS_CALLBACK_CLIENT_SECRET = CALLBACK_SECRET
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    logging.getLogger("django.request").addHandler(handler)

    def crash(**kwargs):
        raise RuntimeError("the database driver fell over")

    monkeypatch.setattr(CallbackToken.objects, "create", crash)
    client.raise_request_exception = False
    mail.outbox.clear()
    try:
        response = client.post(
            "/atlas/auth", headers={"Client-Id": CALLBACK_ID, "Client-Secret": CALLBACK_SECRET}
        )
    finally:
        logging.getLogger("django.request").removeHandler(handler)

    assert response.status_code == 500
    assert CALLBACK_SECRET not in response.content.decode()
    assert len(mail.outbox) == 1 and "RuntimeError" in mail.outbox[0].body
    assert CALLBACK_SECRET not in mail.outbox[0].body
    (record,) = [r for r in records if r.exc_info]
    html = ExceptionReporter(record.request, *record.exc_info).get_traceback_html()
    assert "check_credentials" in html, "the frames are in the report"
    assert CALLBACK_SECRET not in html, "a frame shows the secret"


def report_of_a_crash_under(client, rf):
    """The error report of a bug under the client's requests (the transport raises). Called
    from a frame that holds no secret itself (a test's own variables are reported too)."""
    import sys

    from django.views.debug import ExceptionReporter

    def broken(*args, **kwargs):
        raise RuntimeError("a bug in the transport")

    client.session.request = broken
    try:
        client.status("a-flow")
    except RuntimeError:
        return ExceptionReporter(rf.get("/"), *sys.exc_info())
    raise AssertionError("no crash")


def test_error_reports_from_the_atlas_client_hide_its_secret_and_token(settings, rf):
    """While the client holds the secret (fetching a token) or a token (any call)."""
    from atlas_review.atlas.client import AtlasClient

    settings.DEBUG = False
    with start_simulator(client_secret=CLIENT_SECRET) as handle:
        with_token = AtlasClient(handle.v3_url, handle.v1_url, "atlas-review-demo", CLIENT_SECRET)
        tokens = [with_token.authtoken()]
        fresh = AtlasClient(handle.v3_url, handle.v1_url, "atlas-review-demo", CLIENT_SECRET)
    for reporter in (report_of_a_crash_under(with_token, rf), report_of_a_crash_under(fresh, rf)):
        text, html = reporter.get_traceback_text(), reporter.get_traceback_html()
        assert "_send" in text and "_exchange" in html, "the frames are reported"
        for secret in (CLIENT_SECRET, *tokens):
            assert secret not in text and secret not in html
