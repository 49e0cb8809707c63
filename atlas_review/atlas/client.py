"""The only code that talks HTTP to Atlas: both API families, tokens, retries, errors.

    client = AtlasClient.from_settings()
    flow_uuid = client.init_flow("APP-1", "PROD_CDL", auth_url, callback_url)
    client.upload(flow_uuid, [("https://bucket/invoice.jpg", "1")])
    if client.status(flow_uuid).finished:
        raw, data = client.fetch_extracts(flow_uuid)

Every method returns the typed objects of payloads.py or raises an AtlasError:

- AtlasUnavailable (transient=True): network trouble, timeouts, 429 or 5xx after the retries
  are spent. Try again later; `retry_after` says when, if Atlas said so.
- AtlasAuthError: Atlas refused our credentials, or refused a freshly issued token.
- AtlasRequestError: any other 4xx; `status` and Atlas's own `message`.
- AtlasPayloadError: a 2xx whose body is not what the contract says.

Credentials and tokens are only ever put in request headers. They are not logged, not put in
exception messages, not shown by repr, and redirects are not followed (requests would
forward the custom Client-Secret and Token headers to wherever a redirect points).
"""

from __future__ import annotations

import email.utils
import json
import logging
import math
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
from django.views.decorators.debug import sensitive_variables
from urllib3.exceptions import NewConnectionError

from . import payloads
from .tokens import CacheTokenStore, MemoryTokenStore, TokenStore, TokenStoreTimeout, token_key

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 15.0
DEFAULT_MAX_RETRIES = 3
BACKOFF_BASE = 0.5
BACKOFF_CAP = 30.0
RETRY_AFTER_CAP = 60.0
MAX_PAGES = 10_000
MAX_RESPONSE_BYTES = 64 * 1024 * 1024
MESSAGE_CHARS = 200
# Atlas tokens are JWTs; one echoed back in an error body may not be the one we sent.
JWT_PATTERN = re.compile(r"eyJ[\w-]*\.[\w-]+\.[\w-]*")

RETRYABLE_STATUSES = frozenset({408, 429, *range(500, 600)})
# Statuses that mean the server turned the request away without acting on it, so even a
# non-idempotent POST can be sent again.
REJECTED_UNPROCESSED = frozenset({429, 503})


# --- errors ----------------------------------------------------------------------------------


class AtlasError(Exception):
    transient = False

    def __init__(self, message: str, *, status: int | None = None, endpoint: str = ""):
        self.message = message
        self.status = status
        self.endpoint = endpoint
        where = f"{endpoint}: " if endpoint else ""
        code = f"HTTP {status}: " if status is not None else ""
        super().__init__(f"Atlas {where}{code}{message}")


class AtlasUnavailable(AtlasError):
    """Atlas could not be reached or was overloaded; the same call may succeed later."""

    transient = True

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        endpoint: str = "",
        retry_after: float | None = None,
        outcome_unknown: bool = False,
    ):
        super().__init__(message, status=status, endpoint=endpoint)
        self.retry_after = retry_after
        # True when a non-idempotent POST (flow/init, multiupload) failed in a way that does
        # not tell whether Atlas acted on it; check before sending it again.
        self.outcome_unknown = outcome_unknown


class AtlasAuthError(AtlasError):
    """Atlas refused the client credentials or a token it had just issued."""


class AtlasRequestError(AtlasError):
    """Atlas answered 4xx (other than auth): our request was wrong; retrying will not help."""


class AtlasPayloadError(AtlasError):
    """Atlas answered 2xx with a body that does not match the contract."""

    def __init__(self, message: str, *, status: int | None = None, endpoint: str = ""):
        super().__init__(message, status=status, endpoint=endpoint)


# --- internals ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Api:
    name: str  # "v3" or "v1", used in endpoint names and request_counts keys
    root: str


@dataclass(frozen=True, slots=True)
class _Reply:
    status: int
    body: bytes
    headers: Any


class _Secret:
    """Holds the client secret so that repr/vars/debuggers show *** instead."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "***"


def _clean(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    text = JWT_PATTERN.sub("***", text)
    # One line, so a hostile body cannot forge log lines.
    return " ".join(text.split())


def _atlas_message(body: bytes) -> str:
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if isinstance(data, dict):
        for key in ("message", "detail", "error"):
            value = data.get(key)
            if isinstance(value, str) and value.strip():
                return value[:MESSAGE_CHARS]
            if isinstance(value, dict | list) and value:
                return json.dumps(value, ensure_ascii=False)[:MESSAGE_CHARS]
    text = body.decode("utf-8", "replace").strip()
    return text[:MESSAGE_CHARS] or "(empty response body)"


def _retry_after(headers: Any) -> float | None:
    value = (headers or {}).get("Retry-After")
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - time.time()
    if math.isnan(seconds):
        return None
    return max(0.0, seconds)


def _describe(exc: requests.RequestException) -> str:
    """Name the failure without str(exc), which carries URLs and nested reprs."""
    name = type(exc).__name__
    reason = exc.args[0] if exc.args else None
    inner = getattr(reason, "reason", None) or reason
    if isinstance(inner, BaseException) and type(inner) is not type(exc):
        return f"{name} ({type(inner).__name__})"
    return name


def _never_sent(exc: requests.RequestException) -> bool:
    """The connection was never established, so the server cannot have seen the request."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    reason = exc.args[0] if exc.args else None
    return isinstance(getattr(reason, "reason", None), NewConnectionError)


_WARNED_PLAIN_HTTP: set[str] = set()

TRANSIENT_EXCEPTIONS = (
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
)


# --- the client --------------------------------------------------------------------------------


class AtlasClient:
    def __init__(
        self,
        base_url: str,
        docstream_url: str,
        client_id: str,
        client_secret: str,
        *,
        timeout: float | tuple[float, float] = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        token_store: TokenStore | None = None,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: Callable[[], float] = random.random,
        backoff_base: float = BACKOFF_BASE,
        backoff_cap: float = BACKOFF_CAP,
        retry_after_cap: float = RETRY_AFTER_CAP,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
    ):
        """base_url is the v3 root (…/v3/verification), docstream_url the v1 root.

        timeout is seconds for connect and for each read, or a (connect, read) pair.
        max_retries is the number of retries after the first attempt on transient failures.
        sleep and rng are injectable so tests neither wait nor depend on chance.
        """
        if not base_url or not docstream_url:
            raise ValueError("both Atlas base URLs are required")
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        connect, read = timeout if isinstance(timeout, tuple) else (timeout, timeout)
        if connect <= 0 or read <= 0:
            raise ValueError("timeouts must be positive")
        self.v3 = _Api("v3", base_url.rstrip("/"))
        self.v1 = _Api("v1", docstream_url.rstrip("/"))
        self.client_id = client_id
        self._secret = _Secret(client_secret)
        self.timeout = (float(connect), float(read))
        self.max_retries = max_retries
        self.token_store: TokenStore = (
            token_store if token_store is not None else MemoryTokenStore()
        )
        self._owns_session = session is None
        self.session = session if session is not None else requests.Session()
        self._sleep = sleep
        self._rng = rng
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.retry_after_cap = retry_after_cap
        self.max_response_bytes = max_response_bytes
        # HTTP attempts per endpoint ("v3 GET /status"), retries included.
        self.request_counts: Counter[str] = Counter()
        self._counts_lock = threading.Lock()
        for api in (self.v3, self.v1):
            parts = urlsplit(api.root)
            local = parts.hostname in ("127.0.0.1", "localhost", "::1")
            # Once per URL: from_settings() builds a client per task.
            if parts.scheme != "https" and not local and api.root not in _WARNED_PLAIN_HTTP:
                _WARNED_PLAIN_HTTP.add(api.root)
                logger.warning(
                    "Atlas %s URL is not https; credentials will travel unencrypted", api.name
                )

    @classmethod
    def from_settings(cls, **overrides: Any) -> AtlasClient:
        """A client configured from the ATLAS_* settings, with tokens in Django's cache."""
        from django.conf import settings

        kwargs: dict[str, Any] = {
            "base_url": settings.ATLAS_BASE_URL,
            "docstream_url": settings.ATLAS_DOCSTREAM_URL,
            "client_id": settings.ATLAS_CLIENT_ID,
            "client_secret": settings.ATLAS_CLIENT_SECRET,
            "timeout": getattr(settings, "ATLAS_TIMEOUT_SECONDS", DEFAULT_TIMEOUT),
            "max_retries": getattr(settings, "ATLAS_MAX_RETRIES", DEFAULT_MAX_RETRIES),
        }
        kwargs.update(overrides)
        if kwargs.get("token_store") is None:
            kwargs["token_store"] = CacheTokenStore(
                alias=getattr(settings, "ATLAS_TOKEN_CACHE_ALIAS", "default")
            )
        return cls(**kwargs)

    def __repr__(self) -> str:
        return (
            f"<AtlasClient v3={self.v3.root} v1={self.v1.root} "
            f"client_id={self.client_id!r} store={self.token_store!r}>"
        )

    def close(self) -> None:
        if self._owns_session:
            self.session.close()

    def __enter__(self) -> AtlasClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- v3 verification (flows) -------------------------------------------------------------

    def authtoken(self, api: str = "v3") -> str:
        """The current token for the v3 (or "v1") family, fetched only if none is cached."""
        return self._token(self.v1 if api == "v1" else self.v3)

    def init_flow(
        self,
        application_id: str,
        product_type: str,
        auth_url: str,
        callback_url: str,
        flow_params: dict[str, Any] | None = None,
    ) -> str:
        body = {
            "product_type": product_type,
            "application_id": application_id,
            "auth_url": auth_url,
            "callback_url": callback_url,
            "flow_params": flow_params or {},
        }
        _, flow_uuid = self._call(
            self.v3, "POST", "/flow/init", json_body=body, parse=payloads.parse_flow_init
        )
        if not flow_uuid.strip():
            raise AtlasPayloadError("flow_uuid is empty", status=200, endpoint="v3 POST /flow/init")
        return flow_uuid

    def upload(self, flow_uuid: str, files: list[tuple[str, str]]) -> list[str]:
        """Send (file_url, document_id) pairs to a flow; returns the batch id(s) Atlas gave."""
        body = {"flow_uuid": flow_uuid, "file_urls": _file_urls(files)}
        _, batch_ids = self._call(
            self.v3, "POST", "/multiupload", json_body=body, parse=payloads.parse_upload
        )
        return batch_ids

    def status(self, flow_uuid: str) -> payloads.FlowStatus:
        _, status = self._call(
            self.v3,
            "GET",
            "/status",
            params={"flow_uuid": flow_uuid},
            parse=payloads.parse_status,
        )
        return status

    def fetch_extracts(self, flow_uuid: str) -> tuple[bytes, payloads.CallbackData]:
        """The flow's results, with the exact body received so the caller can journal it."""
        raw, data = self._call(
            self.v3,
            "GET",
            "/extracts",
            params={"flow_uuid": flow_uuid},
            parse=payloads.parse_callback_data,
        )
        if data.flow_uuid != flow_uuid:
            # Storing another flow's documents under this application would be worse than
            # storing nothing.
            raise AtlasPayloadError(
                "response is for a different flow_uuid", status=200, endpoint="v3 GET /extracts"
            )
        return raw, data

    def extracts(self, flow_uuid: str) -> payloads.CallbackData:
        return self.fetch_extracts(flow_uuid)[1]

    # --- v1 docstream (batches) ----------------------------------------------------------------

    def v1_upload(self, product_type: str, files: list[tuple[str, str]]) -> str:
        body = {"product_type": product_type, "file_urls": _file_urls(files)}
        _, batch_ids = self._call(
            self.v1, "POST", "/multiupload", json_body=body, parse=payloads.parse_upload
        )
        if len(set(batch_ids)) != 1:
            raise AtlasPayloadError(
                f"expected one batch_id, got {len(set(batch_ids))}",
                status=200,
                endpoint="v1 POST /multiupload",
            )
        return batch_ids[0]

    def v1_extracts(
        self, batch_id: str, per_page: int = 50, *, max_pages: int = MAX_PAGES
    ) -> list[tuple[bytes, payloads.BatchPage]]:
        """Every page of a batch's extracts, in order, each with its raw body."""
        endpoint = "v1 GET /extracts"
        pages: list[tuple[bytes, payloads.BatchPage]] = []
        seen: set[str] = set()
        number = 1
        while True:
            if number > max_pages:
                raise AtlasPayloadError(
                    f"more than {max_pages} pages; refusing to continue", endpoint=endpoint
                )
            raw, (page, data_hash) = self._call(
                self.v1,
                "GET",
                "/extracts",
                params={"batch_id": batch_id, "page": number, "per_page": per_page},
                parse=lambda payload: (
                    payloads.parse_batch_page(payload, batch_id),
                    payloads.canonical_hash(
                        payload.get("data") if isinstance(payload, dict) else None
                    ),
                ),
            )
            # A server that ignores the page parameter would otherwise be read forever.
            if page.page != number:
                raise AtlasPayloadError(
                    f"asked for page {number}, got page {page.page}", status=200, endpoint=endpoint
                )
            if page.documents and data_hash in seen:
                raise AtlasPayloadError(
                    f"page {number} repeats an earlier page", status=200, endpoint=endpoint
                )
            seen.add(data_hash)
            pages.append((raw, page))
            more = page.has_next or number < page.total_pages
            # An empty page past the first means the listing is exhausted whatever it claims.
            if not more or (not page.documents and number > 1):
                return pages
            number += 1

    # --- request machinery ---------------------------------------------------------------------

    def _count(self, endpoint: str) -> None:
        with self._counts_lock:
            self.request_counts[endpoint] += 1

    # Error reports (DEBUG=False) show none of the variables of this frame or of anything it
    # calls (requests included): they hold the client secret or a token.
    @sensitive_variables()
    def _token(self, api: _Api, reject: str | None = None) -> str:
        key = token_key(f"{api.root}/authtoken", self.client_id, self._secret.reveal())
        try:
            return self.token_store.get_token(key, lambda: self._fetch_token(api), reject=reject)
        except TokenStoreTimeout as exc:
            raise AtlasUnavailable(str(exc), endpoint=f"{api.name} POST /authtoken") from None

    @sensitive_variables()
    def _fetch_token(self, api: _Api) -> payloads.Token:
        endpoint = f"{api.name} POST /authtoken"
        headers = {"Client-Id": self.client_id, "Client-Secret": self._secret.reveal()}
        reply = self._send(api, "POST", "/authtoken", headers=headers, idempotent=True)
        if reply.status in (400, 401, 403):
            raise AtlasAuthError(
                f"credentials rejected: {self._message(reply)}",
                status=reply.status,
                endpoint=endpoint,
            )
        self._check(reply, endpoint)
        return self._parse(reply, endpoint, payloads.parse_token)

    @sensitive_variables()
    def _call(
        self,
        api: _Api,
        method: str,
        path: str,
        *,
        parse: Callable[[Any], Any],
        params: dict[str, Any] | None = None,
        json_body: Any = None,
    ) -> tuple[bytes, Any]:
        endpoint = f"{api.name} {method} {path}"
        idempotent = method == "GET"
        token = self._token(api)
        reply = self._send(api, method, path, {"Token": token}, params, json_body, idempotent)
        if reply.status == 401:
            # Expired or revoked early. A 401 means nothing was done, so even POSTs may repeat.
            token = self._token(api, reject=token)
            reply = self._send(api, method, path, {"Token": token}, params, json_body, idempotent)
            if reply.status == 401:
                raise AtlasAuthError(
                    f"a freshly issued token was refused: {self._message(reply, token)}",
                    status=401,
                    endpoint=endpoint,
                )
        self._check(reply, endpoint, token)
        return reply.body, self._parse(reply, endpoint, parse)

    def _message(self, reply: _Reply, *extra_secrets: str) -> str:
        return _clean(_atlas_message(reply.body), (self._secret.reveal(), *extra_secrets))

    def _check(self, reply: _Reply, endpoint: str, token: str = "") -> None:
        if 200 <= reply.status < 300:
            return
        if 300 <= reply.status < 400:
            raise AtlasRequestError(
                "unexpected redirect (not followed)", status=reply.status, endpoint=endpoint
            )
        raise AtlasRequestError(self._message(reply, token), status=reply.status, endpoint=endpoint)

    def _parse(self, reply: _Reply, endpoint: str, parse: Callable[[Any], Any]) -> Any:
        try:
            return parse(payloads.loads(reply.body))
        except payloads.PayloadError as exc:
            raise AtlasPayloadError(
                _clean(str(exc), (self._secret.reveal(),)), status=reply.status, endpoint=endpoint
            ) from None

    @sensitive_variables()
    def _send(
        self,
        api: _Api,
        method: str,
        path: str,
        headers: dict[str, str],
        params: dict[str, Any] | None = None,
        json_body: Any = None,
        idempotent: bool = True,
    ) -> _Reply:
        """One logical request: retried on transient failures, returns any final reply."""
        endpoint = f"{api.name} {method} {path}"
        headers = {"Accept": "application/json", **headers}
        attempt = 0
        while True:
            self._count(endpoint)
            started = time.perf_counter()
            reply: _Reply | None = None
            failure: requests.RequestException | None = None
            try:
                reply = self._exchange(
                    method, api.root + path, headers, params, json_body, endpoint
                )
            except TRANSIENT_EXCEPTIONS as exc:
                failure = exc
            except requests.RequestException as exc:
                # Bad URL, invalid header and the like: configuration, not weather.
                raise AtlasRequestError(_describe(exc), endpoint=endpoint) from None
            elapsed_ms = (time.perf_counter() - started) * 1000
            outcome = str(reply.status) if reply else _describe(failure)  # type: ignore[arg-type]
            retryable = reply is None or reply.status in RETRYABLE_STATUSES
            logger.log(
                logging.DEBUG if not retryable else logging.INFO,
                "atlas %s %s %s -> %s in %.0f ms (attempt %d)",
                api.name,
                method,
                path,
                outcome,
                elapsed_ms,
                attempt + 1,
            )
            if not retryable:
                return reply  # type: ignore[return-value]

            status = reply.status if reply else None
            retry_after = _retry_after(reply.headers) if status in REJECTED_UNPROCESSED else None
            if not idempotent and not (
                status in REJECTED_UNPROCESSED or (failure is not None and _never_sent(failure))
            ):
                # Sending a flow/init or multiupload again could create a second flow or
                # process (and bill) the documents twice; let the caller decide.
                raise AtlasUnavailable(
                    f"{outcome}; not retried because Atlas may have processed the request",
                    status=status,
                    endpoint=endpoint,
                    outcome_unknown=True,
                )
            if attempt >= self.max_retries:
                raise AtlasUnavailable(
                    f"{outcome}; gave up after {attempt + 1} attempts",
                    status=status,
                    endpoint=endpoint,
                    retry_after=retry_after,
                )
            if retry_after is not None and retry_after > self.retry_after_cap:
                # Waiting less than asked would only earn another 429; hand the wait to the
                # caller (e.g. a task countdown) instead of blocking a worker for minutes.
                raise AtlasUnavailable(
                    f"{outcome}; Atlas asked to retry after {retry_after:.0f} s",
                    status=status,
                    endpoint=endpoint,
                    retry_after=retry_after,
                )
            delay = self._rng() * min(self.backoff_cap, self.backoff_base * 2**attempt)
            if retry_after is not None:
                delay = max(delay, retry_after)
            self._sleep(delay)
            attempt += 1

    def _exchange(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        params: dict[str, Any] | None,
        json_body: Any,
        endpoint: str,
    ) -> _Reply:
        response = self.session.request(
            method,
            url,
            params=params,
            json=json_body,
            headers=headers,
            timeout=self.timeout,
            allow_redirects=False,
            stream=True,  # so an oversized body is refused before it is all in memory
        )
        try:
            declared = response.headers.get("Content-Length")
            if declared and declared.isdigit() and int(declared) > self.max_response_bytes:
                raise AtlasPayloadError(
                    f"response of {declared} bytes exceeds the limit",
                    status=response.status_code,
                    endpoint=endpoint,
                )
            chunks: list[bytes] = []
            size = 0
            for chunk in response.iter_content(chunk_size=64 * 1024):
                size += len(chunk)
                if size > self.max_response_bytes:
                    raise AtlasPayloadError(
                        "response exceeds the size limit",
                        status=response.status_code,
                        endpoint=endpoint,
                    )
                chunks.append(chunk)
            return _Reply(response.status_code, b"".join(chunks), response.headers)
        finally:
            response.close()


def _file_urls(files: list[tuple[str, str]]) -> list[dict[str, str]]:
    if not files:
        raise ValueError("at least one file is required")
    return [{"file_url": url, "document_id": document_id} for url, document_id in files]
