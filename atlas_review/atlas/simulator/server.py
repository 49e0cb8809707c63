"""The HTTP face of the simulator: stdlib ThreadingHTTPServer, JSON in and out.

Order of checks for an API call, so tests can reason about what they get: injected latency,
then rate limiting (429 + Retry-After), then injected errors (500/503), then the Token
(401), then the request itself (400/404/409/422). Control endpoints (/_sim/...) and the
scans (/files/...) are never faulted and need no token.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

from .callbacks import deliver
from .state import ApiError, Knobs, SimulatorState
from .svg import render_document_svg

log = logging.getLogger("atlas_review.atlas.simulator")

V3 = "/v3/verification"
V1 = "/v1/docstream"
MAX_BODY = 5 * 1024 * 1024
TICK_SECONDS = 0.1


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    raw: bytes = b""
    _json: dict | None = field(default=None, repr=False)

    def json(self) -> dict:
        if self._json is None:
            try:
                parsed = json.loads(self.raw or b"{}")
            except (ValueError, UnicodeDecodeError):
                raise ApiError(400, "request body is not valid JSON") from None
            if not isinstance(parsed, dict):
                raise ApiError(400, "request body must be a JSON object")
            self._json = parsed
        return self._json


Handler = Callable[[SimulatorState, Request], dict]


def _token(state: SimulatorState, req: Request) -> dict:
    return state.issue_token(req.headers.get("client-id", ""), req.headers.get("client-secret", ""))


# (method, path) -> (handler, needs a token)
API_ROUTES: dict[tuple[str, str], tuple[Handler, bool]] = {
    ("POST", f"{V3}/authtoken"): (_token, False),
    ("POST", f"{V1}/authtoken"): (_token, False),
    ("POST", f"{V3}/flow/init"): (lambda s, r: s.init_flow(r.json()), True),
    ("POST", f"{V3}/multiupload"): (lambda s, r: s.upload(r.json()), True),
    ("GET", f"{V3}/status"): (lambda s, r: s.status(r.query.get("flow_uuid")), True),
    ("GET", f"{V3}/extracts"): (lambda s, r: s.extracts(r.query.get("flow_uuid")), True),
    ("POST", f"{V1}/multiupload"): (lambda s, r: s.v1_upload(r.json()), True),
    ("GET", f"{V1}/extracts"): (
        lambda s, r: s.v1_extracts(
            r.query.get("batch_id"), r.query.get("page"), r.query.get("per_page")
        ),
        True,
    ),
}


def _update_knobs(state: SimulatorState, req: Request) -> dict:
    if req.method == "POST":
        try:
            state.knobs.update(req.json())
        except ValueError as exc:
            raise ApiError(400, str(exc)) from None
    return state.knobs.public()


CONTROL_ROUTES: dict[tuple[str, str], Handler] = {
    ("GET", "/_sim/stats"): lambda s, r: s.stats(),
    ("GET", "/_sim/knobs"): _update_knobs,
    ("POST", "/_sim/knobs"): _update_knobs,
    ("POST", "/_sim/expire-tokens"): lambda s, r: {"expired": s.expire_tokens()},
}
_KNOWN_PATHS = {path for _, path in (*API_ROUTES, *CONTROL_ROUTES)}


class SimulatorHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], state: SimulatorState):
        self.state = state
        super().__init__(address, SimulatorRequestHandler)


class SimulatorRequestHandler(BaseHTTPRequestHandler):
    server: SimulatorHTTPServer
    server_version = "AtlasSimulator/1.0"
    sys_version = ""
    timeout = 30  # a client that stops sending mid-request does not pin a thread forever

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def log_message(self, format: str, *args: object) -> None:
        pass  # _dispatch logs one line per request, without headers

    def _dispatch(self, method: str) -> None:
        started = time.monotonic()
        state = self.server.state
        parts = urlsplit(self.path)
        path = parts.path.rstrip("/") or "/"
        query = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        endpoint = f"{method} {path}" if path in _KNOWN_PATHS else "other"
        headers: dict[str, str] = {}
        try:
            if path.startswith("/files/"):
                endpoint = "GET /files"
                status, body, ctype = self._file(method, path)
            else:
                req = Request(method, path, query, {k.lower(): v for k, v in self.headers.items()})
                try:
                    req.raw = self._read_body()
                except ApiError as exc:
                    status, payload = exc.status, {"message": exc.message}
                else:
                    status, payload, headers = self._route(state, req)
                body, ctype = json.dumps(payload, ensure_ascii=False).encode(), "application/json"
        except Exception:  # a bug in the simulator must still produce an answer
            log.exception("simulator error on %s %s", method, parts.path)
            status, ctype = 500, "application/json"
            body = b'{"message": "simulator bug, see its log"}'
        with state.lock:  # counted before answering, so a client never sees stale stats
            state.requests[endpoint] += 1
            state.responses[str(status)] += 1
        self._send(status, body, ctype, headers)
        log.info(
            "%s %s -> %d (%.0f ms)", method, self.path, status, (time.monotonic() - started) * 1000
        )

    def _read_body(self) -> bytes:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            raise ApiError(400, "invalid Content-Length") from None
        if length > MAX_BODY:
            raise ApiError(413, "request body too large")
        return self.rfile.read(length) if length > 0 else b""

    def _route(self, state: SimulatorState, req: Request) -> tuple[int, dict, dict]:
        key = (req.method, req.path)
        try:
            if key in CONTROL_ROUTES:
                return 200, CONTROL_ROUTES[key](state, req), {}
            if key not in API_ROUTES:
                if req.path in _KNOWN_PATHS:
                    allowed = sorted(m for m, p in (*API_ROUTES, *CONTROL_ROUTES) if p == req.path)
                    return 405, {"message": "method not allowed"}, {"Allow": ", ".join(allowed)}
                return 404, {"message": "not found"}, {}
            handler, needs_token = API_ROUTES[key]
            if state.knobs.latency_ms:
                time.sleep(state.knobs.latency_ms / 1000)
            fault = state.fault_for_call()
            if fault:
                retry = {"Retry-After": "1"} if fault[0] in (429, 503) else {}
                return fault[0], {"message": fault[1]}, retry
            if needs_token:
                state.check_token(req.headers.get("token"))
            return 200, handler(state, req), {}
        except ApiError as exc:
            return exc.status, {"message": exc.message}, {}

    def _file(self, method: str, path: str) -> tuple[int, bytes, str]:
        name = unquote(path[len("/files/") :])
        if method != "GET" or not name or "/" in name:
            return 404, b'{"message": "not found"}', "application/json"
        svg = render_document_svg(self.server.state.knobs.seed, name)
        return 200, svg.encode(), "image/svg+xml; charset=utf-8"

    def _send(self, status: int, body: bytes, ctype: str, headers: dict[str, str]) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


class SimulatorHandle:
    """A running simulator: URLs, live knobs, stats; stop() or use it as a context manager."""

    def __init__(self, server: SimulatorHTTPServer, state: SimulatorState):
        self._server = server
        self.state = state
        self._stop = threading.Event()
        self._deliveries: set[threading.Thread] = set()
        host, port = server.server_address[:2]
        self.host, self.port = str(host), int(port)
        self.url = f"http://{self.host}:{self.port}"
        self.v3_url = self.url + V3
        self.v1_url = self.url + V1
        self._threads = [
            threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": 0.1},
                name="atlas-sim-http",
                daemon=True,
            ),
            threading.Thread(target=self._tick, name="atlas-sim-ticker", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    @property
    def knobs(self) -> Knobs:
        return self.state.knobs

    def stats(self) -> dict:
        return self.state.stats()

    def expire_tokens(self) -> int:
        return self.state.expire_tokens()

    def file_url(self, name: str) -> str:
        return f"{self.url}/files/{name}"

    def _tick(self) -> None:
        # Finishing is noticed here, not on polling, so callbacks fire with nobody asking.
        while not self._stop.wait(TICK_SECONDS):
            try:
                for delivery in self.state.due_deliveries():
                    thread = threading.Thread(
                        target=deliver,
                        args=(delivery, self.state, self._stop),
                        name=f"atlas-sim-callback-{delivery.ref}",
                        daemon=True,
                    )
                    self._deliveries = {t for t in self._deliveries if t.is_alive()} | {thread}
                    thread.start()
            except Exception:
                log.exception("simulator ticker error")

    def wait(self) -> None:
        """Block until stop() is called (from another thread or a signal handler)."""
        while not self._stop.wait(0.5):
            pass

    def stop(self, timeout: float = 5.0) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()
        deadline = time.monotonic() + timeout
        for thread in self._threads:  # the ticker first: it is what adds deliveries
            thread.join(max(0.0, deadline - time.monotonic()))
        for thread in list(self._deliveries):
            thread.join(max(0.0, deadline - time.monotonic()))

    def __enter__(self) -> SimulatorHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<SimulatorHandle {self.url}>"


def start_simulator(port: int = 0, host: str = "127.0.0.1", **knobs: object) -> SimulatorHandle:
    """Start a simulator in background threads; port=0 picks a free port.

    Keyword arguments are knobs (see Knobs); an unknown name raises ValueError."""
    settings = Knobs()
    settings.update(knobs)
    server = SimulatorHTTPServer((host, port), SimulatorState(settings))
    return SimulatorHandle(server, server.state)
