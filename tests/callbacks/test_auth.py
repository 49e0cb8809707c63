import logging
from unittest import mock

import pytest
from django.db import OperationalError

from atlas_review.callbacks import services
from atlas_review.callbacks.models import AuthAttempt, CallbackToken, token_digest

from .conftest import ENV_ID, ENV_SECRET

pytestmark = pytest.mark.django_db


def auth(client, client_id=ENV_ID, secret=ENV_SECRET, **extra):
    headers = {}
    if client_id is not None:
        headers["Client-Id"] = client_id
    if secret is not None:
        headers["Client-Secret"] = secret
    return client.post("/atlas/auth", headers=headers, **extra)


def test_it_issues_a_token_for_the_environment_pair(client):
    response = auth(client)

    assert response.status_code == 200
    body = response.json()
    assert body["expires_in"] == 3600
    assert len(body["access_token"]) >= 40
    assert response["Cache-Control"].startswith("max-age=0")
    # Only a hash of the token is stored.
    stored = CallbackToken.objects.get()
    assert stored.token_hash == token_digest(body["access_token"])
    assert body["access_token"] not in str(list(CallbackToken.objects.values()))
    assert stored.credential is None and stored.client_id == ENV_ID
    assert AuthAttempt.objects.count() == 0


def test_it_issues_a_token_for_an_admin_credential(client):
    credential, secret = services.create_credential(label="Atlas prod")

    response = auth(client, credential.client_id, secret)

    assert response.status_code == 200
    credential.refresh_from_db()
    assert credential.last_used_at is not None
    assert CallbackToken.objects.get().credential == credential
    assert secret not in credential.secret_hash


def test_each_exchange_gives_a_new_token(client):
    assert auth(client).json()["access_token"] != auth(client).json()["access_token"]


@pytest.mark.parametrize(
    ("client_id", "secret", "reason", "message"),
    [
        (None, None, "missing_credentials", "Client-Id and Client-Secret headers are required"),
        (ENV_ID, None, "missing_credentials", "Client-Id and Client-Secret headers are required"),
        (ENV_ID, "wrong-secret-xyz", "wrong_secret", "invalid client credentials"),
        ("nobody", "wrong-secret-xyz", "unknown_client", "invalid client credentials"),
        (ENV_ID.upper(), ENV_SECRET, "unknown_client", "invalid client credentials"),
    ],
)
def test_it_refuses_bad_credentials_and_logs_without_the_secret(
    client, caplog, client_id, secret, reason, message
):
    with caplog.at_level(logging.INFO):
        response = auth(client, client_id, secret, REMOTE_ADDR="10.1.2.3")

    assert response.status_code == 401
    assert response.json() == {"message": message}
    assert CallbackToken.objects.count() == 0
    attempt = AuthAttempt.objects.get()
    assert (attempt.endpoint, attempt.reason) == ("auth", reason)
    assert attempt.client_id == (client_id or "")
    assert attempt.remote_addr == "10.1.2.3"
    assert "refused" in caplog.text and reason in caplog.text
    if secret:
        assert secret not in caplog.text
        assert secret not in str(list(AuthAttempt.objects.values()))


def test_a_revoked_credential_gets_no_token(client):
    credential, secret = services.create_credential()
    services.revoke_credential(credential)

    response = auth(client, credential.client_id, secret)

    assert response.status_code == 401
    assert AuthAttempt.objects.get().reason == "revoked"


def test_get_is_not_allowed(client):
    assert client.get("/atlas/auth").status_code == 405


def test_repeated_failures_from_one_address_are_throttled(client, settings):
    settings.ATLAS_CALLBACK_AUTH_FAILURE_LIMIT = 3
    settings.ATLAS_CALLBACK_AUTH_FAILURE_WINDOW = 120
    for _ in range(3):
        assert auth(client, secret="guess", REMOTE_ADDR="10.0.0.9").status_code == 401

    # Even the right secret is refused from that address until the window passes...
    throttled = auth(client, REMOTE_ADDR="10.0.0.9")
    assert throttled.status_code == 429
    assert throttled["Retry-After"] == "120"
    assert "too many" in throttled.json()["message"]
    # ... while another address is unaffected.
    assert auth(client, REMOTE_ADDR="10.0.0.10").status_code == 200
    assert AuthAttempt.objects.count() == 3


def test_a_flood_of_failures_stops_growing_the_attempts_table(client, settings):
    settings.ATLAS_CALLBACK_AUTH_FAILURE_LIMIT = 2
    for _ in range(6):
        client.post("/atlas/callback", b"{}", content_type="application/json")

    assert AuthAttempt.objects.count() == 2


def test_expired_tokens_are_pruned_at_the_next_exchange(client):
    auth(client)
    CallbackToken.objects.update(expires_at="2020-01-01T00:00:00Z")

    auth(client)

    assert CallbackToken.objects.count() == 1


def test_a_database_outage_is_a_503_not_a_401(client):
    with mock.patch.object(
        services.CallbackToken.objects, "create", side_effect=OperationalError("down")
    ):
        response = auth(client)

    assert response.status_code == 503
    assert response["Retry-After"]
