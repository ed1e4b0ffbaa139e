"""The bundle's guard in front of vLLM's API: the key on every route, and admission control.

vLLM's own key check guards only some path prefixes (/v1 on 0.18; /v1, /v2, /inference
and /cohere on 0.32), so /invocations, /tokenize, /pooling and the like answer without a
key. This pure ASGI middleware, loaded with vLLM's `--middleware` hook (so it runs in vLLM's
interpreter, on its event loop, in front of every route), refuses every request without a
valid key except the routes of OPEN_ROUTES. Its configuration comes from the environment
the bundle renders (GUARD_ENV as JSON, the inline key in KEY_ENV), never from argv.

Keys: API_KEY_FILE's keys are reread when the file's stat changes (looked at no more than
once a second), so a key is added or retired without a restart; each change is logged
once, without the keys. Keys are compared as SHA-256 digests with hmac.compare_digest.

Admission control bounds the requests that run the model (POST) in flight and waiting:
past the bounds the answer is a fast 429, after ADMIT_QUEUE_TIMEOUT in the queue a 503,
both with Retry-After. The supervisor's own requests (readiness, smoke, canary) carry a
per-start internal token (TOKEN_ENV) and are never shed; the probes use open routes.

Stdlib only, prometheus_client where vLLM has it: refusals are counted by reason, never
by key, on vLLM's own /metrics.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import hmac
import json
import logging
import math
import os
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from entrypoint.api_keys import read_keys
from entrypoint.bounded_read import Unreadable

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

GUARD_ENV = "BUNDLE_API_GUARD"  # JSON: GuardConfig's fields
KEY_ENV = "BUNDLE_API_KEY"  # an inline API_KEY (API_KEY_FILE's keys stay in their file)
TOKEN_ENV = "BUNDLE_API_GUARD_TOKEN"  # the supervisor's per-start token

# The one list of routes that answer without a key, and why.
OPEN_ROUTES: dict[str, str] = {
    "/health": "liveness and readiness probes (Docker, Kubernetes, the router) carry no key",
    "/metrics": "Prometheus scrapes without a key (METRICS_NEED_KEY=true puts it behind the key)",
}
OPEN_METHODS: dict[str, str] = {
    "OPTIONS": "CORS preflight: browsers send it without credentials, and it runs nothing",
}
ADMITTED_METHODS = frozenset({"POST"})  # what runs the model; a GET reads a list or a status
RECHECK_SECONDS = 1.0  # how often a request may look at the key file's stat
RETRY_AFTER_FULL = 1  # seconds: a slot frees within about one request's duration

log = logging.getLogger("entrypoint.api_guard")


@dataclass(frozen=True)
class Admission:
    """Bounds on the requests that run the model."""

    max_running: int
    max_queued: int
    queue_timeout: float
    max_per_key: int | None = None


@dataclass(frozen=True)
class GuardConfig:
    """What the guard enforces; `from_env` reads the rendered environment."""

    key_file: Path | None = None
    inline_key: str | None = None
    internal_token: str | None = None
    metrics_need_key: bool = False
    admission: Admission | None = None

    @property
    def keyed(self) -> bool:
        return self.key_file is not None or self.inline_key is not None

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> GuardConfig:
        raw = json.loads(environ.get(GUARD_ENV) or "{}")
        admission = raw.get("admission")
        return cls(key_file=Path(raw["key_file"]) if raw.get("key_file") else None,
                   inline_key=environ.get(KEY_ENV) or None, internal_token=environ.get(TOKEN_ENV) or None,
                   metrics_need_key=bool(raw.get("metrics_need_key")),
                   admission=Admission(**admission) if admission else None)


def digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


def matches(candidate: bytes, known: tuple[bytes, ...]) -> bool:
    """Whether `candidate` is one of `known`, every one compared, each in constant time."""
    found = False
    for each in known:
        found |= hmac.compare_digest(candidate, each)
    return found


class KeyRing:
    """The valid keys' digests: an inline key, or a key file reread when its stat changes."""

    def __init__(self, config: GuardConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self._file, self._clock = config.key_file, clock
        self._digests: tuple[bytes, ...] = (digest(config.inline_key),) if config.inline_key else ()
        self._stat: tuple[int, ...] | None = None
        self._checked = -math.inf
        self.refresh()

    @property
    def digests(self) -> tuple[bytes, ...]:
        self.refresh()
        return self._digests

    def refresh(self) -> None:
        """Reread the key file if its stat changed; at most one look per RECHECK_SECONDS."""
        now = self._clock()
        if self._file is None or now - self._checked < RECHECK_SECONDS:
            return
        self._checked = now
        try:
            info = os.stat(self._file)
            signature: tuple[int, ...] = (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)
        except OSError as exc:
            signature = (-1, exc.errno or 0)
        if signature == self._stat:
            return
        first, self._stat = self._stat is None, signature
        try:
            keys = read_keys(self._file)
        except Unreadable as exc:
            # Keep the keys in force: a half-written or broken file must not lock every client out.
            kept = f"the keys read before stay valid ({len(self._digests)})" if self._digests else \
                "every request is refused until it is fixed"
            log.error("API_KEY_FILE=%s: %s; %s", self._file, exc, kept)
            return
        before, self._digests = len(self._digests), tuple(digest(key) for key in keys)
        if first:
            log.info("API_KEY_FILE=%s: keys in force: %d", self._file, len(keys))
        else:
            log.warning("API_KEY_FILE=%s changed: keys in force: %d (before: %d)", self._file, len(keys), before)


class Rejected(Exception):
    """A request the guard answers itself."""

    def __init__(self, status: int, reason: str, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status, self.reason, self.retry_after = status, reason, retry_after


class Gate:
    """Admission: at most max_running requests in flight, max_queued waiting (first come, first
    served) for a slot; a freed slot goes straight to the oldest waiter."""

    def __init__(self, bounds: Admission) -> None:
        self.bounds = bounds
        self.running = 0
        self.waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self.per_key: dict[bytes, int] = {}

    @property
    def queued(self) -> int:
        return len(self.waiters)

    async def enter(self, who: bytes | None) -> None:
        """Take a slot for `who` (a key's digest), waiting in the queue; Rejected when past a bound."""
        bounds = self.bounds
        if who is not None and bounds.max_per_key is not None and self.per_key.get(who, 0) >= bounds.max_per_key:
            raise Rejected(429, "over_key_limit", f"this key already has {bounds.max_per_key} requests in flight, "
                           "its limit (ADMIT_MAX_PER_KEY)", RETRY_AFTER_FULL)
        if self.running < bounds.max_running and not self.waiters:
            self.running += 1
            self._count(who, 1)
            return
        if len(self.waiters) >= bounds.max_queued:
            raise Rejected(429, "over_capacity", f"the server is at capacity ({bounds.max_running} requests "
                           f"running, {len(self.waiters)} waiting)", RETRY_AFTER_FULL)
        slot: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiters.append(slot)
        self._count(who, 1)
        try:
            await asyncio.wait({slot}, timeout=bounds.queue_timeout)
        except BaseException:  # the client went away while waiting
            self._give_up(slot, who)
            raise
        if not slot.done():
            self._give_up(slot, who)
            raise Rejected(503, "queue_timeout", f"no capacity freed within {bounds.queue_timeout:g} s",
                           math.ceil(bounds.queue_timeout))

    def _give_up(self, slot: asyncio.Future[None], who: bytes | None) -> None:
        if slot.done():  # granted meanwhile: hand it on
            self.leave(who)
            return
        slot.cancel()
        self.waiters.remove(slot)
        self._count(who, -1)

    def leave(self, who: bytes | None) -> None:
        """Free the slot: the oldest waiter takes it over."""
        self._count(who, -1)
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # `running` stays: the slot changes hands
                return
        self.running -= 1

    def _count(self, who: bytes | None, step: int) -> None:
        if who is None:
            return
        count = self.per_key.get(who, 0) + step
        if count:
            self.per_key[who] = count
        else:
            self.per_key.pop(who, None)


_METRICS: list[Any] = []


def _metrics() -> tuple[Any, Any]:
    """The refusal counter and the admission gauge on vLLM's registry, made once (none without
    prometheus_client); made on first use, so importing the module's names registers nothing."""
    if _METRICS:
        return _METRICS[0], _METRICS[1]
    try:
        from prometheus_client import Counter, Gauge
    except ImportError:
        _METRICS[:] = [None, None]
        return None, None
    rejected = Counter("ascend_serve_api_rejected", "Requests the API guard refused, by reason (never by key).",
                       ["reason"])
    admission = Gauge("ascend_serve_admission_requests", "Requests that run the model, by state: running "
                      "(admitted) or queued (waiting for a slot).", ["state"], multiprocess_mode="livesum")
    _METRICS[:] = [rejected, admission]
    return rejected, admission


class ApiGuard:
    """ASGI middleware: the key on every route but OPEN_ROUTES, then admission control."""

    def __init__(self, app: App, config: GuardConfig | None = None) -> None:
        self.app = app
        self.config = config if config is not None else GuardConfig.from_env(os.environ)
        _log_to_stderr()
        self.keys = KeyRing(self.config) if self.config.keyed else None
        self.internal = digest(self.config.internal_token) if self.config.internal_token else None
        self.gate = Gate(self.config.admission) if self.config.admission else None
        self.rejected, self.admission = _metrics()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or self.is_open(scope):
            await self.app(scope, receive, send)
            return
        presented = bearer_digest(scope)
        try:
            if presented is not None and self.internal is not None and hmac.compare_digest(presented, self.internal):
                await self.app(scope, receive, send)  # the supervisor's own request: never shed
                return
            self.authenticate(presented)
            if self.gate is None or scope.get("method") not in ADMITTED_METHODS:
                await self.app(scope, receive, send)
                return
            await self.admitted(scope, receive, send, presented if self.keys is not None else None)
        except Rejected as refusal:
            if self.rejected is not None:
                self.rejected.labels(refusal.reason).inc()
            await refuse(scope, send, refusal)

    def is_open(self, scope: Scope) -> bool:
        if scope["type"] == "http" and scope.get("method") in OPEN_METHODS:
            return True
        path = route_path(scope)
        if path == "/metrics" or path.startswith("/metrics/"):  # vLLM mounts its exporter at /metrics
            return not self.config.metrics_need_key
        return path in OPEN_ROUTES

    def authenticate(self, presented: bytes | None) -> None:
        if self.keys is None:
            return
        if presented is None:
            raise Rejected(401, "missing", "this API needs a key: send the header Authorization: Bearer <key>")
        if not matches(presented, self.keys.digests):
            raise Rejected(401, "wrong", "the API key is not valid")

    async def admitted(self, scope: Scope, receive: Receive, send: Send, who: bytes | None) -> None:
        assert self.gate is not None
        await self.gate.enter(who)
        self._gauge()
        try:
            await self.app(scope, receive, send)
        finally:
            self.gate.leave(who)
            self._gauge()

    def _gauge(self) -> None:
        if self.admission is not None and self.gate is not None:
            self.admission.labels("running").set(self.gate.running)
            self.admission.labels("queued").set(self.gate.queued)


def route_path(scope: Scope) -> str:
    """The path routing sees: the request path without the app's root path."""
    path, root = str(scope.get("path", "")), str(scope.get("root_path", ""))
    return path[len(root):] if root and path.startswith(root) else path


def bearer_digest(scope: Scope) -> bytes | None:
    """The SHA-256 of the bearer token the request carries, or None."""
    for name, value in scope.get("headers") or ():
        if name.lower() == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return digest(token.strip()) if scheme.lower() == "bearer" and token.strip() else None
    return None


ERROR_TYPES = {401: "authentication_error", 429: "rate_limit_error", 503: "server_overloaded"}


async def refuse(scope: Scope, send: Send, refusal: Rejected) -> None:
    """Answer the request with an OpenAI-style error body (a WebSocket is closed with policy violation)."""
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008 if refusal.status == 401 else 1013})
        return
    body = json.dumps({"error": {"message": str(refusal), "type": ERROR_TYPES.get(refusal.status, "error"),
                                 "param": None, "code": refusal.reason}}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if refusal.status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    if refusal.retry_after is not None:
        headers.append((b"retry-after", str(refusal.retry_after).encode()))
    await send({"type": "http.response.start", "status": refusal.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _log_to_stderr() -> None:
    """vLLM configures only its own logger: give the guard's a handler so key-file changes show in the log."""
    if log.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(asctime)s [api-guard] %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
