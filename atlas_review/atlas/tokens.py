"""Where Atlas access tokens live between calls.

A token store hands out a cached token until shortly before it expires and makes sure that,
when it has to be renewed, exactly one caller renews it while the others wait and then reuse
the new one. MemoryTokenStore does that for the threads of one process, CacheTokenStore for
every process sharing a Django cache (Redis in production).

Stores never see credentials: the client passes an opaque key (see token_key) and a fetch
function that performs the actual token request.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from .payloads import Token

Fetch = Callable[[], Token]

# Renew this long before expiry, so a token is never sent in its last moments and a request
# in flight does not arrive with an expired one. The fraction keeps short-lived tokens usable
# (a 30 s token with a flat 60 s margin would be renewed on every call).
MARGIN_SECONDS = 60.0
MARGIN_FRACTION = 0.1


def token_key(token_url: str, client_id: str, client_secret: str) -> str:
    """A cache key per token endpoint and credentials that reveals neither id nor secret."""
    digest = hashlib.sha256(f"{token_url}\n{client_id}\n{client_secret}".encode()).hexdigest()
    return f"atlas:token:{digest}"


def refresh_margin(expires_in: float) -> float:
    return min(MARGIN_SECONDS, expires_in * MARGIN_FRACTION)


class TokenStoreTimeout(Exception):
    """Waited too long for another process to finish renewing the token."""


class TokenStore(Protocol):
    def get_token(self, key: str, fetch: Fetch, *, reject: str | None = None) -> str:
        """A valid token for key, calling fetch (once, under a lock) if there is none.

        reject is a token the server has just refused: it is treated as absent, unless
        another caller has already replaced it, in which case the replacement is returned.
        """
        ...

    def invalidate(self, key: str) -> None: ...


@dataclass(slots=True)
class _Entry:
    token: str
    refresh_at: float


class MemoryTokenStore:
    """Tokens in process memory; safe to share between threads."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def __repr__(self) -> str:
        return f"<MemoryTokenStore keys={len(self._entries)}>"

    def _valid(self, key: str, reject: str | None) -> str | None:
        with self._guard:
            entry = self._entries.get(key)
        if entry is None or entry.token == reject or self._clock() >= entry.refresh_at:
            return None
        return entry.token

    def _lock_for(self, key: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())

    def get_token(self, key: str, fetch: Fetch, *, reject: str | None = None) -> str:
        token = self._valid(key, reject)
        if token is not None:
            return token
        with self._lock_for(key):
            # Whoever held the lock before us may have renewed it already.
            token = self._valid(key, reject)
            if token is not None:
                return token
            # Expiry counts from before the request: the server's clock started earlier.
            issued = self._clock()
            fresh = fetch()
            entry = _Entry(
                fresh.access_token, issued + fresh.expires_in - refresh_margin(fresh.expires_in)
            )
            with self._guard:
                self._entries[key] = entry
            return fresh.access_token

    def invalidate(self, key: str) -> None:
        with self._guard:
            self._entries.pop(key, None)


class CacheTokenStore:
    """Tokens in a Django cache, renewed by one process at a time.

    The renewal lock is a cache key created with cache.add, which is atomic in Redis and
    Memcached (and LocMemCache within one process). Processes that lose the race poll until
    the winner has stored the new token. The lock expires on its own, so a process that dies
    while renewing delays the others by at most lock_timeout.
    """

    def __init__(
        self,
        cache: Any = None,
        *,
        alias: str = "default",
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        lock_timeout: float = 60.0,
        poll_interval: float = 0.05,
        wait_timeout: float | None = None,
    ):
        # Without an explicit cache object, look the alias up on every use: Django's cache
        # handles are per thread.
        self._cache = cache
        self._alias = alias
        # Wall-clock time, not monotonic: the expiry is compared across processes.
        self._clock = clock
        self._sleep = sleep
        self._lock_timeout = lock_timeout
        self._poll_interval = poll_interval
        wait = lock_timeout + 5 if wait_timeout is None else wait_timeout
        # Counted in polls rather than elapsed time so a fake sleep cannot make it spin forever.
        self._max_polls = max(1, math.ceil(wait / poll_interval))

    def __repr__(self) -> str:
        return f"<CacheTokenStore alias={self._alias!r}>"

    @property
    def cache(self) -> Any:
        if self._cache is not None:
            return self._cache
        from django.core.cache import caches

        return caches[self._alias]

    def _valid(self, key: str, reject: str | None) -> str | None:
        value = self.cache.get(key)
        if not isinstance(value, dict):
            return None
        token, refresh_at = value.get("token"), value.get("refresh_at")
        if not isinstance(token, str) or not isinstance(refresh_at, int | float):
            return None
        if token == reject or self._clock() >= refresh_at:
            return None
        return token

    def get_token(self, key: str, fetch: Fetch, *, reject: str | None = None) -> str:
        lock_key = f"{key}:lock"
        for _ in range(self._max_polls):
            token = self._valid(key, reject)
            if token is not None:
                return token
            owner = uuid.uuid4().hex
            if self.cache.add(lock_key, owner, math.ceil(self._lock_timeout)):
                try:
                    return self._renew(key, fetch, reject)
                finally:
                    # Not atomic, but the worst case (our lock expired and another process
                    # took it in between) costs one extra token request, not a wrong token.
                    if self.cache.get(lock_key) == owner:
                        self.cache.delete(lock_key)
            self._sleep(self._poll_interval)
        raise TokenStoreTimeout("timed out waiting for another process to renew the token")

    def _renew(self, key: str, fetch: Fetch, reject: str | None) -> str:
        token = self._valid(key, reject)
        if token is not None:
            return token
        issued = self._clock()
        fresh = fetch()
        lifetime = fresh.expires_in - refresh_margin(fresh.expires_in)
        self.cache.set(
            key,
            {"token": fresh.access_token, "refresh_at": issued + lifetime},
            max(1, math.floor(lifetime)),
        )
        return fresh.access_token

    def invalidate(self, key: str) -> None:
        self.cache.delete(key)
