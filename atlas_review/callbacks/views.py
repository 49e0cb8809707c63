"""The three endpoints Atlas calls. Machine clients: CSRF does not apply, the Token does.

Status codes Atlas sees, and what each means for it:
- 202: stored and valid; it will be (or has been) applied. Do not send it again.
- 400: the body is not valid JSON / not the expected shape (kept as `rejected`).
- 401: missing, unknown or expired credentials or token; get a new token.
- 411/413: no Content-Length / body larger than ATLAS_CALLBACK_MAX_BYTES (nothing stored).
- 422: valid, but for a flow or batch we do not know (kept as `unmatched`).
- 429: too many failed /atlas/auth attempts from this address; wait Retry-After seconds.
- 503: our database is unavailable; nothing is acknowledged, retry later.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import DatabaseError
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from atlas_review.flows.models import Payload

from . import services
from .models import AuthAttempt

log = logging.getLogger(__name__)


def _message(text: str, status: int, **extra) -> JsonResponse:
    return JsonResponse({"message": text, **extra}, status=status)


def _unavailable() -> JsonResponse:
    log.exception("callback endpoint: database unavailable")
    response = _message("temporarily unavailable, please retry", 503)
    response["Retry-After"] = "30"
    return response


def _remote_addr(request: HttpRequest) -> str | None:
    # REMOTE_ADDR only: X-Forwarded-For is trivially forged unless a proxy we trust sets it.
    return request.META.get("REMOTE_ADDR") or None


@csrf_exempt
@require_POST
@never_cache
def auth(request: HttpRequest) -> JsonResponse:
    remote_addr = _remote_addr(request)
    client_id = request.headers.get("Client-Id", "")
    if services.is_throttled("auth", remote_addr):
        log.warning("callback auth throttled for %s (client_id=%r)", remote_addr, client_id[:100])
        response = _message("too many failed attempts, retry later", 429)
        response["Retry-After"] = str(settings.ATLAS_CALLBACK_AUTH_FAILURE_WINDOW)
        return response
    try:
        issued = services.issue_token(client_id, request.headers.get("Client-Secret", ""))
    except services.AuthRefused as refused:
        try:
            services.refuse(
                AuthAttempt.Endpoint.AUTH,
                refused.reason,
                client_id=client_id,
                remote_addr=remote_addr,
            )
        except DatabaseError:
            return _unavailable()
        if refused.reason == AuthAttempt.Reason.MISSING_CREDENTIALS:
            return _message("Client-Id and Client-Secret headers are required", 401)
        return _message("invalid client credentials", 401)
    except DatabaseError:
        return _unavailable()
    return JsonResponse({"access_token": issued.access_token, "expires_in": issued.expires_in})


def _receive(request: HttpRequest, source: str, endpoint: str) -> JsonResponse:
    remote_addr = _remote_addr(request)
    try:
        services.authenticate_token(request.headers.get("Token", ""))
    except services.AuthRefused as refused:
        try:
            services.refuse(endpoint, refused.reason, remote_addr=remote_addr)
        except DatabaseError:
            return _unavailable()
        if refused.reason == AuthAttempt.Reason.MISSING_TOKEN:
            return _message("the Token header is required", 401)
        if refused.reason == AuthAttempt.Reason.EXPIRED_TOKEN:
            return _message("token expired; get a new one from the auth_url", 401)
        return _message("invalid token; get a new one from the auth_url", 401)
    except DatabaseError:
        return _unavailable()

    limit = settings.ATLAS_CALLBACK_MAX_BYTES
    length = request.META.get("CONTENT_LENGTH", "")
    if not length:
        # Without it Django's WSGI stream reads nothing: a chunked body would arrive empty.
        return _message("Content-Length is required", 411)
    try:
        declared = int(length)
    except ValueError:
        return _message("Content-Length is not a number", 400)
    if declared > limit:
        return _message(f"body is larger than {limit} bytes", 413)
    body = request.read(limit + 1)
    if len(body) > limit:
        return _message(f"body is larger than {limit} bytes", 413)

    try:
        delivery = services.receive(source, body, request.headers)
    except DatabaseError:
        return _unavailable()
    if delivery.status == "rejected":
        return _message(delivery.message, 400, delivery=delivery.payload.pk)
    if delivery.status == "unmatched":
        return _message(delivery.message, 422, delivery=delivery.payload.pk)
    return JsonResponse({"status": "accepted", "delivery": delivery.payload.pk}, status=202)


@csrf_exempt
@require_POST
def callback(request: HttpRequest) -> JsonResponse:
    return _receive(request, Payload.Source.CALLBACK_V3, AuthAttempt.Endpoint.CALLBACK)


@csrf_exempt
@require_POST
def callback_v1(request: HttpRequest) -> JsonResponse:
    return _receive(request, Payload.Source.CALLBACK_V1, AuthAttempt.Endpoint.CALLBACK_V1)
