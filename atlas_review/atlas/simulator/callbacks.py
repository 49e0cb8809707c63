"""Atlas pushing results to the lender: POST auth_url for a token, then POST callback_url.

The exchange follows ATLAS_API.md ("Callbacks"): Client-Id/Client-Secret headers on the
auth call, the access_token from its JSON answer in the Token header of the callback.
Non-2xx answers and connection errors are retried with exponential backoff; every attempt
and the final outcome are counted in the simulator's stats.
"""

from __future__ import annotations

import json
import logging
import threading
import urllib.error
import urllib.request
from urllib.parse import urlsplit

from .state import Delivery, Knobs, SimulatorState

log = logging.getLogger("atlas_review.atlas.simulator")


class CallbackFailed(Exception):
    pass


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # A redirected POST would silently become a GET; report the 3xx instead.
    def redirect_request(self, *args, **kwargs):
        return None


_opener = urllib.request.build_opener(_NoRedirect)


def _post(url: str, headers: dict[str, str], body: bytes, timeout: float) -> tuple[int, bytes]:
    if urlsplit(url).scheme not in ("http", "https"):
        raise CallbackFailed(f"unsupported URL scheme in {url!r}")
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310
    try:
        with _opener.open(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise CallbackFailed(f"connection failed: {reason}") from None


def _attempt(delivery: Delivery, knobs: Knobs) -> int:
    """One auth + callback round trip; returns the callback's HTTP status."""
    status, raw = _post(
        delivery.auth_url,
        {"Client-Id": knobs.callback_client_id, "Client-Secret": knobs.callback_client_secret},
        b"",
        knobs.callback_timeout,
    )
    if not 200 <= status < 300:
        raise CallbackFailed(f"auth_url answered {status}")
    try:
        token = json.loads(raw)["access_token"]
    except (ValueError, KeyError, TypeError):
        raise CallbackFailed("auth_url answer has no access_token") from None
    if not isinstance(token, str) or not token:
        raise CallbackFailed("auth_url answer has no access_token")
    body = json.dumps(delivery.body, ensure_ascii=False).encode()
    status, _ = _post(
        delivery.callback_url,
        {"Token": token, "Content-Type": "application/json"},
        body,
        knobs.callback_timeout,
    )
    return status


def deliver(delivery: Delivery, state: SimulatorState, stop: threading.Event) -> bool:
    """Send one callback with retries; True when the callback URL answered 2xx."""
    knobs = state.knobs
    attempts, last = 0, ""
    for attempt in range(knobs.callback_retries + 1):
        if attempt and stop.wait(knobs.callback_backoff * 2 ** (attempt - 1)):
            break  # the simulator is stopping
        attempts += 1
        state.count("callback_attempts")
        try:
            status = _attempt(delivery, knobs)
        except CallbackFailed as exc:
            last = str(exc)
        else:
            if 200 <= status < 300:
                state.count("callbacks_sent")
                state.record_delivery(_record(delivery, True, attempts, str(status)))
                log.info("callback %s %s delivered (HTTP %s)", delivery.kind, delivery.ref, status)
                return True
            last = f"callback_url answered {status}"
        log.warning(
            "callback %s %s attempt %d failed: %s", delivery.kind, delivery.ref, attempts, last
        )
    state.count("callbacks_failed")
    state.record_delivery(_record(delivery, False, attempts, last))
    return False


def _record(delivery: Delivery, ok: bool, attempts: int, detail: str) -> dict:
    return {
        "kind": delivery.kind,
        "ref": delivery.ref,
        "callback_url": delivery.callback_url,
        "ok": ok,
        "attempts": attempts,
        "detail": detail,
    }
