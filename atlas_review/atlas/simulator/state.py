"""The simulator's in-memory world: knobs, tokens, flows, batches and counters.

No HTTP here: server.py translates requests into calls on SimulatorState and its results
into responses. One lock guards everything; every operation is short.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
import math
import random
import secrets
import threading
import time
import uuid
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from .generator import generate_batch_items, generate_flow_result
from .persona import rng

DEFAULT_CLIENT_ID = "atlas-review-demo"
DEFAULT_CLIENT_SECRET = "demo-secret-change-me"
IST = timezone(timedelta(hours=5, minutes=30), "IST")


@dataclass
class Knobs:
    """Behaviour switches; change them on a running simulator (handle.knobs or /_sim/knobs).

    fail_rate/stuck_rate apply to flows uploaded after the change (stuck_rate also to v1
    batches); processing_seconds applies to uploads after the change; token_ttl to tokens
    issued after the change."""

    seed: int = 42  # results, faults and batch ids all derive from it
    client_id: str = DEFAULT_CLIENT_ID  # the credentials /authtoken accepts
    client_secret: str = DEFAULT_CLIENT_SECRET
    token_ttl: float = 3600  # seconds
    processing_seconds: float = 6.0  # upload -> SUCCESS (v3) / extracts ready (v1)
    fail_rate: float = 0.0  # share of v3 flows that end FAILED
    stuck_rate: float = 0.0  # share of flows/batches that never finish
    error_rate: float = 0.0  # share of API calls answered 500 or 503
    latency_ms: int = 0  # added to every API call
    rate_limit_every: int = 0  # every Nth API call gets 429 + Retry-After: 1 (0 = off)
    callbacks: bool = True
    callback_client_id: str = "atlas-simulator"  # what we present at the lender's auth_url
    callback_client_secret: str = "callback-secret-change-me"
    callback_retries: int = 3  # retries after the first attempt
    callback_backoff: float = 0.5  # first retry delay in seconds, doubling
    callback_timeout: float = 5.0
    v1_auth_url: str = ""  # v1 callbacks are configured per account, not per batch
    v1_callback_url: str = ""

    _RATES = ("fail_rate", "stuck_rate", "error_rate")
    _SECRETS = ("client_secret", "callback_client_secret")

    def update(self, values: dict) -> None:
        """Validate every value first, then apply them all (no half-applied update)."""
        types = {f.name: f.type for f in dataclasses.fields(self)}
        clean = {}
        for name, value in values.items():
            if name not in types:
                raise ValueError(f"unknown knob {name!r}")
            clean[name] = _coerce(name, types[name], value)
            if name in self._RATES and not 0 <= clean[name] <= 1:
                raise ValueError(f"{name} must be between 0 and 1")
            number = clean[name]
            if isinstance(number, int | float) and not (math.isfinite(number) and number >= 0):
                raise ValueError(f"{name} must be a finite number, not negative")
        for name, value in clean.items():
            setattr(self, name, value)

    def public(self) -> dict:
        """The knobs with secrets masked, for /_sim/knobs and logs."""
        return {
            k: ("***" if k in self._SECRETS else v) for k, v in dataclasses.asdict(self).items()
        }


def _coerce(name: str, kind: str, value: object) -> object:
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on", "false", "0", "no", "off"):  # fmt: skip
            return value.lower() in ("true", "1", "yes", "on")
    elif kind == "str":
        if isinstance(value, str):
            return value
    elif not isinstance(value, bool):
        try:
            return int(value) if kind == "int" else float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            pass
    raise ValueError(f"{name} must be a {kind}")


@dataclass
class Flow:
    flow_uuid: str
    application_id: str
    product_type: str
    auth_url: str
    callback_url: str
    flow_params: dict
    seed: int
    outcome_draw: float  # fixed per (seed, application, attempt); knobs turn it into a fate
    files: list[dict] = field(default_factory=list)
    batch_ids: list[str] = field(default_factory=list)
    last_upload_at: float = 0.0
    ready_at: float = 0.0
    outcome: str = "success"  # success | failed | stuck
    handled_files: int = 0  # len(files) when finishing was last handled (callback sent)


@dataclass
class Batch:
    batch_id: str
    product_type: str
    files: list[dict]
    seed: int
    ready_at: float
    stuck: bool
    handled: bool = False


@dataclass(frozen=True)
class Delivery:
    """A callback to send: v3 flow result or v1 batch page."""

    kind: str  # "v3" | "v1"
    ref: str  # flow_uuid or batch_id
    auth_url: str
    callback_url: str
    body: dict


class ApiError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class SimulatorState:
    def __init__(self, knobs: Knobs):
        self.knobs = knobs
        self.lock = threading.Lock()
        self.tokens: dict[str, float] = {}  # token -> monotonic expiry
        self.flows: dict[str, Flow] = {}
        self.batches: dict[str, Batch] = {}
        self.attempts: Counter[str] = Counter()  # flows created per application id
        self.requests: Counter[str] = Counter()
        self.responses: Counter[str] = Counter()
        self.counters: Counter[str] = Counter()
        self.deliveries: deque[dict] = deque(maxlen=200)
        self.api_calls = 0
        self._signing_key = secrets.token_bytes(32)
        self._rng_seed = knobs.seed
        self._rng = random.Random(f"server|{knobs.seed}")

    # --- counters ------------------------------------------------------------------------

    def count(self, name: str, n: int = 1) -> None:
        with self.lock:
            self.counters[name] += n

    def record_delivery(self, record: dict) -> None:
        with self.lock:
            self.deliveries.append(record)

    def stats(self) -> dict:
        with self.lock:
            return {
                "requests": dict(self.requests),
                "responses": dict(self.responses),
                "api_calls": self.api_calls,
                "tokens_issued": self.counters["tokens_issued"],
                "callbacks_sent": self.counters["callbacks_sent"],
                "callbacks_failed": self.counters["callbacks_failed"],
                "callback_attempts": self.counters["callback_attempts"],
                "faults_injected": self.counters["faults_injected"],
                "rate_limited": self.counters["rate_limited"],
                "flows": len(self.flows),
                "batches": len(self.batches),
                "deliveries": list(self.deliveries),
            }

    # --- faults --------------------------------------------------------------------------

    def _server_rng(self) -> random.Random:
        if self._rng_seed != self.knobs.seed:  # the seed knob changed: start a new sequence
            self._rng_seed = self.knobs.seed
            self._rng = random.Random(f"server|{self.knobs.seed}")
        return self._rng

    def fault_for_call(self) -> tuple[int, str] | None:
        """Count an API call and decide whether it is answered with an injected fault.

        Deterministic for a given seed and call order: every Nth call is rate-limited, and
        the error draw comes from the server's seeded Random."""
        with self.lock:
            self.api_calls += 1
            every = self.knobs.rate_limit_every
            if every and self.api_calls % every == 0:
                self.counters["rate_limited"] += 1
                return 429, "rate limit exceeded"
            r = self._server_rng()
            if self.knobs.error_rate and r.random() < self.knobs.error_rate:
                self.counters["faults_injected"] += 1
                if r.random() < 0.5:
                    return 500, "internal server error"
                return 503, "service temporarily unavailable"
        return None

    # --- tokens --------------------------------------------------------------------------

    def issue_token(self, client_id: str, client_secret: str) -> dict:
        ok_id = hmac.compare_digest(client_id.encode(), self.knobs.client_id.encode())
        ok_secret = hmac.compare_digest(client_secret.encode(), self.knobs.client_secret.encode())
        if not (ok_id and ok_secret):
            raise ApiError(401, "invalid credentials")
        ttl = self.knobs.token_ttl
        now = time.time()
        # JWT-shaped like the real one; clients must treat it as opaque.
        header = _b64(b'{"alg":"HS256","typ":"JWT"}')
        claims = {"sub": client_id, "iat": int(now), "exp": int(now + ttl),
                  "jti": secrets.token_hex(8)}  # fmt: skip
        payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
        signature = hmac.new(self._signing_key, f"{header}.{payload}".encode(), hashlib.sha256)
        token = f"{header}.{payload}.{_b64(signature.digest())}"
        with self.lock:
            now_mono = time.monotonic()
            for stale in [t for t, exp in self.tokens.items() if exp <= now_mono]:
                del self.tokens[stale]
            self.tokens[token] = now_mono + ttl
            self.counters["tokens_issued"] += 1
        # The contract's expires_in is whole seconds; a test's fractional ttl rounds up.
        return {"access_token": token, "expires_in": math.ceil(ttl)}

    def check_token(self, token: str | None) -> None:
        with self.lock:
            expiry = self.tokens.get(token or "")
        if expiry is None or expiry <= time.monotonic():
            raise ApiError(401, "invalid or expired token")

    def expire_tokens(self) -> int:
        """Expire every issued token now; returns how many were still valid."""
        with self.lock:
            now = time.monotonic()
            n = sum(expiry > now for expiry in self.tokens.values())
            self.tokens = dict.fromkeys(self.tokens, 0.0)
            return n

    # --- v3 flows ------------------------------------------------------------------------

    def init_flow(self, body: dict) -> dict:
        for name in ("product_type", "application_id"):
            value = body.get(name)
            if not isinstance(value, str | int) or isinstance(value, bool) or value == "":
                raise ApiError(400, f"{name} is required")
        for name in ("auth_url", "callback_url"):
            if body.get(name) is not None and not isinstance(body[name], str):
                raise ApiError(400, f"{name} must be a string")
        params = body.get("flow_params") or {}
        if not isinstance(params, dict):
            raise ApiError(400, "flow_params must be an object")
        application_id = str(body["application_id"])
        seed = self.knobs.seed
        with self.lock:
            attempt = self.attempts[application_id]
            self.attempts[application_id] += 1
            flow = Flow(
                flow_uuid=str(uuid.uuid4()),
                application_id=application_id,
                product_type=str(body["product_type"]),
                auth_url=body.get("auth_url") or "",
                callback_url=body.get("callback_url") or "",
                flow_params=params,
                seed=seed,
                outcome_draw=rng(seed, "outcome", application_id, attempt).random(),
            )
            self.flows[flow.flow_uuid] = flow
        return {"flow_uuid": flow.flow_uuid}

    def upload(self, body: dict) -> dict:
        flow_uuid = body.get("flow_uuid")
        if not flow_uuid or not isinstance(flow_uuid, str):
            raise ApiError(400, "flow_uuid is required")
        files = _file_list(body)
        with self.lock:
            flow = self.flows.get(flow_uuid)
            if flow is None:
                raise ApiError(404, "flow not found")
            batch_id = self._new_batch_id()
            for f in files:
                position = len(flow.files)
                f["batch_id"] = batch_id
                f["file_uuid"] = str(uuid.UUID(int=rng(flow_uuid, "file", position).getrandbits(128), version=4))  # fmt: skip
                flow.files.append(f)
            flow.batch_ids.append(batch_id)
            now = time.monotonic()
            flow.last_upload_at = now
            flow.ready_at = now + self.knobs.processing_seconds
            fail, stuck = self.knobs.fail_rate, self.knobs.stuck_rate
            draw = flow.outcome_draw
            flow.outcome = (
                "failed" if draw < fail else "stuck" if draw < fail + stuck else "success"
            )
        return {"batch_id": batch_id}

    def _flow(self, flow_uuid: str | None) -> Flow:
        if not flow_uuid:
            raise ApiError(400, "flow_uuid is required")
        flow = self.flows.get(flow_uuid)
        if flow is None:
            raise ApiError(404, "flow not found")
        return flow

    def status(self, flow_uuid: str | None) -> dict:
        with self.lock:
            flow = self._flow(flow_uuid)
            return _flow_status(flow, time.monotonic())

    def extracts(self, flow_uuid: str | None) -> dict:
        """409 while the flow is not finished (no uploads yet, processing, or stuck): the
        request conflicts with the flow's current state and repeating it later succeeds.
        422 once the flow has FAILED: there are no results and never will be."""
        with self.lock:
            flow = self._flow(flow_uuid)
            status = _flow_status(flow, time.monotonic())
            files = list(flow.files)
        if status["master_status"] == "FAILED":
            raise ApiError(422, "flow processing failed")
        if status["master_status"] != "SUCCESS":
            if not flow.files:
                raise ApiError(409, "no documents uploaded for this flow")
            raise ApiError(409, "flow is still processing")
        return self.flow_result(flow, files)

    @staticmethod
    def flow_result(flow: Flow, files: list[dict]) -> dict:
        return generate_flow_result(
            flow.seed, flow.flow_uuid, files, application_id=flow.application_id
        )

    # --- v1 batches ----------------------------------------------------------------------

    def v1_upload(self, body: dict) -> dict:
        product_type = body.get("product_type")
        if not product_type or not isinstance(product_type, str):
            raise ApiError(400, "product_type is required")
        files = _file_list(body)
        with self.lock:
            batch_id = self._new_batch_id()
            draw = rng(self.knobs.seed, "v1-stuck", batch_id).random()
            self.batches[batch_id] = Batch(
                batch_id=batch_id,
                product_type=product_type,
                files=files,
                seed=self.knobs.seed,
                ready_at=time.monotonic() + self.knobs.processing_seconds,
                stuck=draw < self.knobs.stuck_rate,
            )
        return {"batch_id": batch_id}

    def v1_extracts(self, batch_id: str | None, page: str | None, per_page: str | None) -> dict:
        """400 for a missing batch_id or a bad page/per_page, 404 for an unknown batch,
        409 "batch is still processing" until its documents are ready (a stuck batch stays
        409), then one page of the documents."""
        if not batch_id:
            raise ApiError(400, "batch_id is required")
        page_n = _positive_int(page, "page", 1)
        size = min(_positive_int(per_page, "per_page", 50), 500)
        with self.lock:
            batch = self.batches.get(batch_id)
            if batch is None:
                raise ApiError(404, "batch not found")
            ready = not batch.stuck and time.monotonic() >= batch.ready_at
        if not ready:
            raise ApiError(409, "batch is still processing")
        items = generate_batch_items(batch.seed, batch.batch_id, batch.files)
        total_pages = max(1, -(-len(items) // size))
        return {
            "data": items[(page_n - 1) * size : page_n * size],
            "page": page_n,
            "per_page": size,
            "total_pages": total_pages,
            "total_items": len(items),
            "has_next": page_n < total_pages,
            "has_prev": page_n > 1,
        }

    def _new_batch_id(self) -> str:
        r = self._server_rng()
        stamp = datetime.now(IST).strftime("%Y%m%d%H%M%S")
        while True:
            letters = "".join(r.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(5))
            batch_id = f"BATCH-{r.randrange(100000):05d}-{letters}-{stamp}"
            if batch_id not in self.batches and all(
                batch_id not in f.batch_ids for f in self.flows.values()
            ):
                return batch_id

    # --- finishing and callbacks ---------------------------------------------------------

    def due_deliveries(self) -> list[Delivery]:
        """Flows and batches that finished since the last tick, handled at most once per
        upload (a flow that gets another upload later is delivered again, with all files)."""
        now = time.monotonic()
        due: list[tuple[str, Flow | Batch, list[dict]]] = []
        with self.lock:
            for flow in self.flows.values():
                if flow.files and flow.handled_files != len(flow.files) and now >= flow.ready_at:
                    if flow.outcome == "stuck":
                        continue
                    flow.handled_files = len(flow.files)
                    if flow.outcome == "success" and flow.auth_url and flow.callback_url:
                        due.append(("v3", flow, list(flow.files)))
            for batch in self.batches.values():
                if not batch.handled and not batch.stuck and now >= batch.ready_at:
                    batch.handled = True
                    due.append(("v1", batch, batch.files))
            knobs = self.knobs
        if not knobs.callbacks:
            return []
        out = []
        for kind, item, files in due:
            if isinstance(item, Flow):
                body = self.flow_result(item, files)
                if item.flow_params:  # "passed through to your callback" (vendor docs)
                    body["flow_params"] = item.flow_params
                out.append(Delivery(kind, item.flow_uuid, item.auth_url, item.callback_url, body))
            elif knobs.v1_auth_url and knobs.v1_callback_url:
                items = generate_batch_items(item.seed, item.batch_id, files)
                body = {"batch_id": item.batch_id, "data": items, "page": 1,
                        "per_page": len(items), "total_pages": 1, "total_items": len(items),
                        "has_next": False, "has_prev": False}  # fmt: skip
                out.append(
                    Delivery(kind, item.batch_id, knobs.v1_auth_url, knobs.v1_callback_url, body)
                )
        return out


def _flow_status(flow: Flow, now: float) -> dict:
    def status(upload: str, processing: str, crosscheck: str, master: str) -> dict:
        return {
            "upload_status": upload,
            "processing_status": processing,
            "crossheck_status": crosscheck,  # sic: the vendor's spelling
            "master_status": master,
        }

    if not flow.files:
        return status("NOT_STARTED", "NOT_STARTED", "NOT_STARTED", "NOT_STARTED")
    if now >= flow.ready_at and flow.outcome == "success":
        return status("SUCCESS", "SUCCESS", "COMPLETED", "SUCCESS")
    if now >= flow.ready_at and flow.outcome == "failed":
        return status("SUCCESS", "FAILED", "NOT_STARTED", "FAILED")
    # The first third of the processing time is spent ingesting files.
    ingesting = now < flow.last_upload_at + (flow.ready_at - flow.last_upload_at) / 3
    if ingesting and flow.outcome != "stuck":
        return status("IN_PROGRESS", "PENDING", "NOT_STARTED", "IN_PROGRESS")
    return status("SUCCESS", "IN_PROGRESS", "PENDING", "IN_PROGRESS")


def _file_list(body: dict) -> list[dict]:
    """file_urls may be one object or a list of them (see ATLAS_API.md, multiupload)."""
    raw = body.get("file_urls")
    if raw is None or raw == [] or raw == {}:
        raise ApiError(400, "file_urls is required")
    items = raw if isinstance(raw, list) else [raw]
    files = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise ApiError(400, f"file_urls[{i}] must be an object")
        url = item.get("file_url")
        if not url or not isinstance(url, str):
            raise ApiError(400, f"file_urls[{i}].file_url is required")
        doc_id = item.get("document_id", "")
        if not isinstance(doc_id, str | int) or isinstance(doc_id, bool):
            raise ApiError(400, f"file_urls[{i}].document_id must be a string")
        files.append({"file_url": url, "document_id": str(doc_id)})
    return files


def _positive_int(value: str | None, name: str, default: int) -> int:
    if value in (None, ""):
        return default
    try:
        number = int(value)
    except ValueError:
        raise ApiError(400, f"{name} must be a positive integer") from None
    if number < 1:
        raise ApiError(400, f"{name} must be a positive integer")
    return number
