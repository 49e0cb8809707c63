"""The push path: token exchange at /atlas/auth and receipt of callback deliveries.

The views only translate HTTP to these functions and back. A delivery is written to the
payload journal before it is looked at, so whatever happens afterwards (invalid JSON, an
unknown flow, a lost task, a crash) the bytes Atlas sent are kept.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

from django.conf import settings
from django.contrib.auth.hashers import make_password
from django.core.cache import cache
from django.db import connection, transaction
from django.utils import timezone
from django.utils.crypto import salted_hmac
from django.views.decorators.debug import sensitive_variables

from atlas_review.atlas import payloads
from atlas_review.flows import journal
from atlas_review.flows.models import Payload, Upload

from .models import AuthAttempt, CallbackCredential, CallbackToken, token_digest

log = logging.getLogger(__name__)

Reason = AuthAttempt.Reason

# Request headers worth keeping with a delivery (never Token: it is a bearer credential).
KEPT_HEADERS = ("Content-Type", "User-Agent", "Date", "Content-Length", "X-Request-Id")
MAX_HEADER_CHARS = 500

# Checked against when a client id is unknown, so a wrong id costs as much time as a
# wrong secret and response times do not reveal which client ids exist.
_DUMMY_HASH = None


# --- /atlas/auth -------------------------------------------------------------------------------


class AuthRefused(Exception):
    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(reason)


@dataclass(frozen=True)
class IssuedToken:
    access_token: str
    expires_in: int

    def __repr__(self) -> str:  # the token itself never reaches a log line
        return f"IssuedToken(expires_in={self.expires_in})"


def env_fingerprint() -> str:
    """A keyed digest of the environment pair ('' if none is configured)."""
    client_id = settings.ATLAS_CALLBACK_CLIENT_ID
    secret = settings.ATLAS_CALLBACK_CLIENT_SECRET
    if not (client_id and secret):
        return ""
    return salted_hmac(
        "callbacks.env-pair", f"{client_id}\n{secret}", algorithm="sha256"
    ).hexdigest()


def _equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


# Error reports (DEBUG=False) show none of the variables of this frame or of anything it
# calls: they hold secrets or tokens. The same below.
@sensitive_variables()
def check_credentials(client_id: str, client_secret: str) -> CallbackCredential | None:
    """Which issuer the pair belongs to: None for the environment pair, a credential for an
    admin-issued pair. Raises AuthRefused(reason) otherwise."""
    global _DUMMY_HASH
    if not client_id or not client_secret:
        raise AuthRefused(Reason.MISSING_CREDENTIALS)
    env_id = settings.ATLAS_CALLBACK_CLIENT_ID
    env_secret = settings.ATLAS_CALLBACK_CLIENT_SECRET
    if env_id and env_secret and _equal(client_id, env_id):
        if _equal(client_secret, env_secret):
            return None
        raise AuthRefused(Reason.WRONG_SECRET)
    credential = CallbackCredential.objects.filter(client_id=client_id).first()
    if credential is None:
        _DUMMY_HASH = _DUMMY_HASH or make_password(secrets.token_urlsafe(32))
        CallbackCredential(secret_hash=_DUMMY_HASH).check_secret(client_secret)
        raise AuthRefused(Reason.UNKNOWN_CLIENT)
    if not credential.check_secret(client_secret):
        raise AuthRefused(Reason.WRONG_SECRET)
    if not credential.is_active:
        raise AuthRefused(Reason.REVOKED)
    return credential


@sensitive_variables()
def issue_token(client_id: str, client_secret: str) -> IssuedToken:
    credential = check_credentials(client_id, client_secret)
    now = timezone.now()
    ttl = settings.ATLAS_CALLBACK_TOKEN_TTL
    token = secrets.token_urlsafe(32)
    CallbackToken.objects.create(
        token_hash=token_digest(token),
        credential=credential,
        client_id=client_id,
        env_fingerprint="" if credential else env_fingerprint(),
        expires_at=now + timedelta(seconds=ttl),
    )
    if credential is not None:
        CallbackCredential.objects.filter(pk=credential.pk).update(last_used_at=now)
    # Housekeeping rides on the (rare) token exchange instead of needing its own schedule.
    CallbackToken.objects.expired(now).delete()
    return IssuedToken(token, ttl)


# --- throttling ----------------------------------------------------------------------------------


def _failure_key(scope: str, remote_addr: str | None) -> str:
    return f"callbacks:failures:{scope}:{remote_addr or 'unknown'}"


def failures(scope: str, remote_addr: str | None) -> int:
    return cache.get(_failure_key(scope, remote_addr), 0)


def is_throttled(scope: str, remote_addr: str | None) -> bool:
    return failures(scope, remote_addr) >= settings.ATLAS_CALLBACK_AUTH_FAILURE_LIMIT


def count_failure(scope: str, remote_addr: str | None) -> int:
    """One more failure from this address in the current window (fixed window, which starts
    at the first failure; Redis and LocMem keep the expiry across incr)."""
    key = _failure_key(scope, remote_addr)
    cache.add(key, 0, settings.ATLAS_CALLBACK_AUTH_FAILURE_WINDOW)
    try:
        return cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.set(key, 1, settings.ATLAS_CALLBACK_AUTH_FAILURE_WINDOW)
        return 1


def refuse(endpoint: str, reason: str, *, client_id: str = "", remote_addr: str | None) -> None:
    """Record and log a refused attempt. Past the failure limit of an address only the log
    line is written, so a flood of bad requests cannot grow the table without bound."""
    scope = "auth" if endpoint == AuthAttempt.Endpoint.AUTH else "callback"
    count = count_failure(scope, remote_addr)
    log.warning(
        "callback %s refused from %s: %s (client_id=%r)",
        endpoint,
        remote_addr,
        reason,
        client_id[:100],
    )
    if count <= settings.ATLAS_CALLBACK_AUTH_FAILURE_LIMIT:
        AuthAttempt.objects.create(
            endpoint=endpoint, reason=reason, client_id=client_id[:100], remote_addr=remote_addr
        )


# --- callback tokens --------------------------------------------------------------------------


@sensitive_variables()
@dataclass(frozen=True)
class ValidToken:
    client_id: str
    credential_id: int | None


# Every callback runs this: one raw statement, as the ORM spent ~1.3 ms building this join
# against ~0.3 ms for the query itself (bench/callbacks_bench.py).
_TOKEN_SQL = (
    "SELECT t.expires_at, t.credential_id, c.revoked_at, t.env_fingerprint, t.client_id"
    " FROM callbacks_callbacktoken t"
    " LEFT JOIN callbacks_callbackcredential c ON c.id = t.credential_id"
    " WHERE t.token_hash = %s"
)


def authenticate_token(raw: str) -> ValidToken:
    """The issued token the Token header names, if still valid. Raises AuthRefused."""
    if not raw:
        raise AuthRefused(Reason.MISSING_TOKEN)
    with connection.cursor() as cursor:
        cursor.execute(_TOKEN_SQL, [token_digest(raw)])
        row = cursor.fetchone()
    if row is None:
        raise AuthRefused(Reason.INVALID_TOKEN)
    expires_at, credential_id, revoked_at, fingerprint, client_id = row
    if timezone.is_naive(expires_at):  # SQLite (the quick start) stores UTC without a zone
        expires_at = timezone.make_aware(expires_at, UTC)
    if expires_at <= timezone.now():
        raise AuthRefused(Reason.EXPIRED_TOKEN)
    if credential_id is not None and revoked_at is not None:
        raise AuthRefused(Reason.REVOKED)
    if credential_id is None and not _equal(fingerprint, env_fingerprint()):
        # The environment pair changed (or was removed) since the token was issued.
        raise AuthRefused(Reason.REVOKED)
    return ValidToken(client_id, credential_id)


# --- credentials (admin) ----------------------------------------------------------------------


@sensitive_variables()
def create_credential(*, client_id: str = "", label: str = "") -> tuple[CallbackCredential, str]:
    credential = CallbackCredential(label=label)
    if client_id:
        credential.client_id = client_id
    secret = credential.set_new_secret()
    credential.full_clean()
    credential.save()
    return credential, secret


@sensitive_variables()
def rotate_credential(credential: CallbackCredential) -> str:
    """A new secret; the old one and every token issued under it stop working at once."""
    with transaction.atomic():
        secret = credential.set_new_secret()
        credential.rotated_at = timezone.now()
        credential.save(update_fields=["secret_hash", "rotated_at"])
        credential.tokens.all().delete()
    log.info("callback credential %s rotated", credential.client_id)
    return secret


def revoke_credential(credential: CallbackCredential) -> bool:
    """Returns False if it was already revoked (the conditional UPDATE matched nothing)."""
    with transaction.atomic():
        revoked = CallbackCredential.objects.filter(
            pk=credential.pk, revoked_at__isnull=True
        ).update(revoked_at=timezone.now())
        credential.tokens.all().delete()
    if revoked:
        log.info("callback credential %s revoked", credential.client_id)
    return bool(revoked)


# --- deliveries ------------------------------------------------------------------------------


@dataclass
class Delivery:
    payload: Payload
    # "accepted", "rejected" or "unmatched"
    status: str
    message: str = ""


def as_of_from(date_header: str, received_at: datetime) -> datetime:
    """When Atlas produced the delivery: its Date header if parseable, else receipt time.
    Never later than receipt, so a sender clock running ahead cannot make every later
    delivery look stale."""
    if date_header:
        try:
            sent = parsedate_to_datetime(date_header)
        except (TypeError, ValueError, IndexError):
            sent = None
        if sent is not None and sent.tzinfo is not None:
            return min(sent, received_at)
    return received_at


def kept_headers(headers) -> dict[str, str]:
    return {name: str(headers[name])[:MAX_HEADER_CHARS] for name in KEPT_HEADERS if name in headers}


def receive(source: str, body: bytes, headers) -> Delivery:
    """Journal the raw body, validate it, and hand a valid one to the apply task.

    Raises DatabaseError if the journal cannot be written (the caller answers 5xx so Atlas
    retries); everything after the write is best effort, because the sweeper re-applies
    any payload left in outcome `received`.
    """
    received_at = timezone.now()
    payload = journal.record(
        source,
        body,
        headers=kept_headers(headers),
        as_of=as_of_from(headers.get("Date", ""), received_at),
    )
    try:
        parsed = parse_delivery(payload)
    except payloads.PayloadError as exc:
        message = str(exc)[:2000]
        _set_outcome(payload, Payload.Outcome.REJECTED, error=message)
        return Delivery(payload, "rejected", message)

    if isinstance(parsed, payloads.CallbackData):
        payload.flow_uuid = parsed.flow_uuid[:64]

        def known() -> bool:
            # Raw, as authenticate_token: on every callback the ORM cost twice the query.
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1 FROM flows_flow WHERE flow_uuid = %s", [parsed.flow_uuid])
                return cursor.fetchone() is not None

        what = f"flow_uuid {parsed.flow_uuid!r}"
    else:
        payload.batch_id = parsed.batch_id[:128]
        known = Upload.objects.filter(batch_id=parsed.batch_id, api=Upload.Api.V1).exists
        what = f"batch_id {parsed.batch_id!r}"

    if known():
        dispatch_apply(payload.pk)
        return Delivery(payload, "accepted")

    message = f"unknown {what}; the delivery is kept and applied once it is known"
    _set_outcome(payload, Payload.Outcome.UNMATCHED, error=f"unknown {what}")
    # The flow may have been stored between the check above and the outcome write, after
    # flow/init's retry_unmatched_for looked for unmatched rows: look once more, so one of
    # the two sides always sees the other's write.
    if known():
        dispatch_apply(payload.pk)
    return Delivery(payload, "unmatched", message)


def parse_delivery(payload: Payload):
    """The typed content of a delivery; raises PayloadError naming the problem."""
    parsed = journal.parse(payload)
    if isinstance(parsed, payloads.BatchPage):
        check_batch_page(parsed)
    return parsed


def check_batch_page(page: payloads.BatchPage) -> None:
    """A v1 callback names its batch in the body: top-level "batch_id", else the items'
    "batch_id" (all the same). One delivery is one whole batch (a single page)."""
    if not page.batch_id:
        raise payloads.PayloadError(
            "batch_id", "is required (top-level or in every data[] item) for a v1 callback"
        )
    if page.total_pages > 1 or page.page > 1:
        # Applied alone, one page would withdraw the documents of the others (ingest treats
        # a delivery as the whole batch). The poller reads every page instead.
        raise payloads.PayloadError(
            "total_pages",
            f"a v1 callback must carry the whole batch, got page {page.page} of "
            f"{page.total_pages}; the batch is read by polling instead",
        )
    for doc in page.documents:
        if doc.batch_id and doc.batch_id != page.batch_id:
            raise payloads.PayloadError(
                f"data[{doc.position}].batch_id",
                f"{doc.batch_id!r} differs from the delivery's batch_id {page.batch_id!r}",
            )


def _set_outcome(payload: Payload, outcome: str, *, error: str) -> None:
    # Conditional: an apply task that already ran wins over the receipt-time verdict.
    Payload.objects.filter(pk=payload.pk, outcome=Payload.Outcome.RECEIVED).update(
        outcome=outcome, error=error, flow_uuid=payload.flow_uuid, batch_id=payload.batch_id
    )
    payload.outcome, payload.error = outcome, error


def dispatch_apply(payload_id: int) -> None:
    """Queue (or, without a broker, run) the apply. A broker failure is not the sender's
    problem: the payload is stored, and the sweeper applies anything left `received`."""
    transaction.on_commit(lambda: _delay_apply(payload_id))


def _delay_apply(payload_id: int) -> None:
    # apply_payload.delay_on_commit, with the broker error caught where it is raised: at
    # commit time, which is after this module's code if a caller holds a transaction open.
    from atlas_review.flows.tasks import apply_payload

    try:
        apply_payload.delay(payload_id)
    except Exception:
        log.exception("could not queue payload %s; the sweeper will apply it", payload_id)


def reapply(payload_ids) -> int:
    ids = list(payload_ids)
    for pk in ids:
        dispatch_apply(pk)
    return len(ids)
