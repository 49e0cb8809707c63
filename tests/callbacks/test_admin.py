import json
import re

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.urls import reverse

from atlas_review.callbacks import services
from atlas_review.callbacks.models import AuthAttempt, CallbackCredential, CallbackToken
from atlas_review.flows import journal
from atlas_review.flows.models import Document, Flow, Payload

from .conftest import ENV_ID, get_token

pytestmark = pytest.mark.django_db

CREDENTIALS = reverse("admin:callbacks_callbackcredential_changelist")
PAYLOADS = reverse("admin:flows_payload_changelist")


def auth_status(client, client_id, secret) -> int:
    return client.post(
        "/atlas/auth", headers={"Client-Id": client_id, "Client-Secret": secret}
    ).status_code


def secret_on(page) -> str:
    match = re.search(rb'<code class="callback-secret">([^<]+)</code>', page.content)
    assert match, page.content
    return match.group(1).decode()


def run_action(admin_client, url, action, pks, *, confirm=True):
    data = {"action": action, ACTION_CHECKBOX_NAME: [str(pk) for pk in pks]}
    if confirm:
        data["confirm"] = "yes"
    return admin_client.post(url, data)


# --- credentials -------------------------------------------------------------------------------


def test_creating_a_credential_shows_its_secret_once(admin_client, client):
    response = admin_client.post(
        reverse("admin:callbacks_callbackcredential_add"),
        {"client_id": "atlas-prod", "label": "Atlas production"},
    )

    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    secret = secret_on(response)
    credential = CallbackCredential.objects.get(client_id="atlas-prod")
    assert secret not in credential.secret_hash
    assert credential.check_secret(secret)
    # Never again: not on the list, not on the change page.
    for url in (
        CREDENTIALS,
        reverse("admin:callbacks_callbackcredential_change", args=[credential.pk]),
    ):
        assert secret.encode() not in admin_client.get(url).content
    assert auth_status(client, "atlas-prod", secret) == 200


def test_the_environment_client_id_cannot_be_issued_again(admin_client):
    response = admin_client.post(
        reverse("admin:callbacks_callbackcredential_add"), {"client_id": ENV_ID, "label": ""}
    )

    assert response.status_code == 200
    assert b"is the one set in the environment" in response.content
    assert CallbackCredential.objects.count() == 0


def test_rotating_asks_first_then_refuses_the_old_secret_and_its_tokens(
    admin_client, client, post_callback, flow, contract_payload
):
    credential, old_secret = services.create_credential(label="Atlas")
    old_token = get_token(client, credential.client_id, old_secret)

    confirm = run_action(admin_client, CREDENTIALS, "rotate", [credential.pk], confirm=False)
    assert b"Yes, rotate" in confirm.content
    assert CallbackCredential.objects.get().check_secret(old_secret)

    response = run_action(admin_client, CREDENTIALS, "rotate", [credential.pk])
    new_secret = secret_on(response)

    assert auth_status(client, credential.client_id, old_secret) == 401
    assert auth_status(client, credential.client_id, new_secret) == 200
    assert post_callback(contract_payload, token=old_token).status_code == 401
    assert Payload.objects.count() == 0
    assert CallbackCredential.objects.get().rotated_at is not None


def test_revoking_refuses_the_secret_and_its_tokens(
    admin_client, client, post_callback, flow, contract_payload
):
    credential, secret = services.create_credential()
    token = get_token(client, credential.client_id, secret)

    run_action(admin_client, CREDENTIALS, "revoke", [credential.pk])

    assert CallbackCredential.objects.get().revoked_at is not None
    assert not CallbackToken.objects.filter(credential=credential).exists()
    assert auth_status(client, credential.client_id, secret) == 401
    assert post_callback(contract_payload, token=token).status_code == 401


def test_a_credential_page_never_shows_the_hash(admin_client):
    credential, _secret = services.create_credential()

    page = admin_client.get(
        reverse("admin:callbacks_callbackcredential_change", args=[credential.pk])
    )

    assert page.status_code == 200
    assert credential.secret_hash.encode() not in page.content


def test_refused_attempts_are_listed(admin_client, client):
    client.post("/atlas/auth", headers={"Client-Id": "intruder", "Client-Secret": "guess-123"})

    page = admin_client.get(reverse("admin:callbacks_authattempt_changelist"))

    assert page.status_code == 200
    assert b"intruder" in page.content
    assert b"guess-123" not in page.content
    assert AuthAttempt.objects.count() == 1


# --- the journal --------------------------------------------------------------------------------


def stored(body: bytes, outcome="received", **kwargs) -> Payload:
    payload = journal.record(Payload.Source.CALLBACK_V3, body, **kwargs)
    Payload.objects.filter(pk=payload.pk).update(outcome=outcome, error=kwargs.get("error", ""))
    return payload


def test_the_journal_lists_outcomes_with_errors_without_loading_bodies(
    admin_client, django_assert_max_num_queries
):
    for i in range(30):
        stored(b"x" * 10_000, outcome="rejected", flow_uuid=f"f-{i}", error=f"problem {i}")

    # session, user, the page of payloads, filter choices: constant however many rows.
    with django_assert_max_num_queries(8) as queries:
        page = admin_client.get(PAYLOADS, {"outcome__exact": "rejected"})

    assert page.status_code == 200
    assert page.content.count(b"problem ") >= 30
    assert not any('"body"' in q["sql"] for q in queries.captured_queries)


def test_the_journal_can_be_searched_by_flow_uuid(admin_client):
    stored(b"{}", flow_uuid="flow-needle")
    stored(b"{}", flow_uuid="flow-hay")

    page = admin_client.get(PAYLOADS, {"q": "flow-needle"})

    assert b"flow-needle" in page.content
    assert b"flow-hay" not in page.content


def test_a_body_is_shown_escaped_and_truncated(admin_client):
    body = b'{"flow_uuid": "<script>alert(1)</script>", "pad": "' + b"y" * 50_000 + b'"}'
    payload = stored(body)

    page = admin_client.get(reverse("admin:flows_payload_change", args=[payload.pk]))

    assert page.status_code == 200
    assert b"<script>alert(1)" not in page.content
    assert b"&lt;script&gt;alert(1)&lt;/script&gt;" in page.content
    assert b"first 20,000 of 50," in page.content
    assert b"y" * 30_000 not in page.content
    # Read-only: no save button, no delete.
    assert b'name="_save"' not in page.content
    assert b"deletelink" not in page.content


def test_reapply_applies_an_unmatched_payload_once_the_flow_exists(
    admin_client, contract_payload, django_capture_on_commit_callbacks
):
    payload = journal.record(Payload.Source.CALLBACK_V3, json.dumps(contract_payload).encode())
    assert journal.apply(payload.pk).outcome == "unmatched"
    applied = stored(b"{}", outcome="applied")
    Flow.objects.create(flow_uuid=contract_payload["flow_uuid"], application_id="A-1")

    with django_capture_on_commit_callbacks(execute=True):
        response = run_action(admin_client, PAYLOADS, "reapply", [payload.pk, applied.pk])

    assert response.status_code == 302
    payload.refresh_from_db()
    assert payload.outcome == "applied"
    assert Document.objects.count() == 4
    # The already-applied row is left as it was.
    assert Payload.objects.get(pk=applied.pk).outcome == "applied"


def test_staff_without_permissions_cannot_see_the_journal(client, django_user_model):
    user = django_user_model.objects.create_user("staffer", password="pw", is_staff=True)
    client.force_login(user)

    assert client.get(PAYLOADS).status_code == 403
    assert client.get(CREDENTIALS).status_code == 403
