"""The API guard as an ASGI app in front of a tiny ASGI app: keys on every route but the open
ones, a key file reread on change, refusals counted by reason, admission bounds."""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

from entrypoint import api_guard
from entrypoint.api_guard import OPEN_ROUTES, Admission, ApiGuard, GuardConfig, KeyRing

KEY, OTHER = "sk-guard-1a2b", "sk-guard-9z8y"
TOKEN = "internal-token-5c6d"


class Backend:
    """The app behind the guard: answers 200, optionally holding each request until released."""

    def __init__(self, hold: bool = False) -> None:
        self.calls: list[str] = []
        self.hold = hold
        self.release = asyncio.Event()

    async def __call__(self, scope: dict[str, Any], receive: Callable, send: Callable) -> None:
        self.calls.append(scope["path"])
        if self.hold:
            await self.release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


async def request(guard: ApiGuard, path: str, key: str | None = None, method: str = "POST",
                  root_path: str = "") -> tuple[int, dict[str, str], Any]:
    """One HTTP request through the guard: status, headers, parsed body (None when not JSON)."""
    headers = [(b"authorization", f"Bearer {key}".encode())] if key else []
    scope = {"type": "http", "method": method, "path": root_path + path, "root_path": root_path, "headers": headers}
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await guard(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    return start["status"], {k.decode(): v.decode() for k, v in start["headers"]}, parsed


def run(guard: ApiGuard, path: str, key: str | None = None, **kwargs: Any) -> tuple[int, dict[str, str], Any]:
    return asyncio.run(request(guard, path, key, **kwargs))


def rejected(reason: str) -> float:
    return REGISTRY.get_sample_value("ascend_serve_api_rejected_total", {"reason": reason}) or 0.0


@pytest.fixture
def guard_log() -> Any:
    """The guard's log records, caught by a handler of its own (the guard's logger does not propagate)."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    api_guard.log.addHandler(handler)
    level = api_guard.log.level
    api_guard.log.setLevel(logging.INFO)
    yield records
    api_guard.log.removeHandler(handler)
    api_guard.log.setLevel(level)


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "api_keys"
    path.write_text(f"# clients\n{KEY}\n\n{OTHER}\n")
    return path


# --- the key on every route ------------------------------------------------------------

@pytest.mark.parametrize("path", ["/v1/chat/completions", "/invocations", "/tokenize", "/detokenize", "/pooling",
                                  "/score", "/rerank", "/classify", "/v2/rerank", "/inference/v1/generate",
                                  "/version", "/openapi.json", "/health/x", "/healthz", "/metricsx"])
def test_every_route_off_the_open_list_needs_the_key(path):
    guard = ApiGuard(Backend(), GuardConfig(inline_key=KEY))
    status, headers, body = run(guard, path)
    assert status == 401 and headers["www-authenticate"] == "Bearer"
    assert body["error"]["type"] == "authentication_error" and body["error"]["code"] == "missing"
    assert run(guard, path, "sk-wrong")[0] == 401
    assert run(guard, path, KEY)[0] == 200


def test_open_routes_and_preflight_answer_without_a_key():
    backend = Backend()
    guard = ApiGuard(backend, GuardConfig(inline_key=KEY))
    assert set(OPEN_ROUTES) == {"/health", "/metrics"} and all(OPEN_ROUTES.values())
    for path in ("/health", "/metrics", "/metrics/"):
        assert run(guard, path, method="GET")[0] == 200
    assert run(guard, "/v1/chat/completions", method="OPTIONS")[0] == 200
    assert backend.calls == ["/health", "/metrics", "/metrics/", "/v1/chat/completions"]


def test_metrics_need_key_puts_metrics_behind_it():
    guard = ApiGuard(Backend(), GuardConfig(inline_key=KEY, metrics_need_key=True))
    assert run(guard, "/metrics", method="GET")[0] == 401
    assert run(guard, "/metrics", KEY, method="GET")[0] == 200
    assert run(guard, "/health", method="GET")[0] == 200


def test_the_root_path_is_stripped_as_routing_does():
    guard = ApiGuard(Backend(), GuardConfig(inline_key=KEY))
    assert run(guard, "/health", root_path="/llm", method="GET")[0] == 200
    assert run(guard, "/invocations", root_path="/llm")[0] == 401


@pytest.mark.parametrize("header", [b"Basic " + KEY.encode(), KEY.encode(), b"Bearer ", b"bearer " + KEY.encode()])
def test_only_a_bearer_token_counts(header):
    guard = ApiGuard(Backend(), GuardConfig(inline_key=KEY))
    scope = {"type": "http", "method": "GET", "path": "/v1/models", "headers": [(b"authorization", header)]}
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(guard(scope, None, send))  # type: ignore[arg-type]
    assert sent[0]["status"] == (200 if header.lower().startswith(b"bearer s") else 401)


def test_a_websocket_without_the_key_is_closed():
    backend = Backend()
    guard = ApiGuard(backend, GuardConfig(inline_key=KEY))
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(guard({"type": "websocket", "path": "/v1/realtime", "headers": []}, None, send))  # type: ignore[arg-type]
    assert sent == [{"type": "websocket.close", "code": 1008}] and not backend.calls


def test_lifespan_passes_through():
    backend = Backend()
    seen = []

    async def app(scope, receive, send):
        seen.append(scope["type"])

    asyncio.run(ApiGuard(app, GuardConfig(inline_key=KEY))({"type": "lifespan"}, None, None))  # type: ignore[arg-type]
    assert seen == ["lifespan"] and not backend.calls


def test_refusals_are_counted_by_reason_never_by_key():
    guard = ApiGuard(Backend(), GuardConfig(inline_key=KEY))
    missing, wrong = rejected("missing"), rejected("wrong")
    run(guard, "/invocations")
    run(guard, "/invocations", "sk-wrong-key")
    assert (rejected("missing"), rejected("wrong")) == (missing + 1, wrong + 1)
    exposition = "".join(f"{s.name}{s.labels}" for m in REGISTRY.collect() for s in m.samples)
    assert KEY not in exposition and "sk-wrong-key" not in exposition


def test_the_config_comes_from_the_rendered_environment(key_file):
    environ = {"BUNDLE_API_GUARD": json.dumps({"key_file": str(key_file), "metrics_need_key": True,
                                               "admission": {"max_running": 2, "max_queued": 1,
                                                             "queue_timeout": 5.0, "max_per_key": None}}),
               "BUNDLE_API_GUARD_TOKEN": TOKEN}
    config = GuardConfig.from_env(environ)
    assert config == GuardConfig(key_file=key_file, internal_token=TOKEN, metrics_need_key=True,
                                 admission=Admission(2, 1, 5.0, None))
    assert GuardConfig.from_env({"BUNDLE_API_KEY": KEY}).inline_key == KEY


# --- several keys, rotated without a restart ------------------------------------------

class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def rewrite(path: Path, text: str) -> None:
    """Replace the file's content as a secret mount does (a new file renamed over the old)."""
    fresh = path.with_suffix(".new")
    fresh.write_text(text)
    os.replace(fresh, path)


def test_every_key_of_the_file_is_valid(key_file):
    guard = ApiGuard(Backend(), GuardConfig(key_file=key_file))
    assert [run(guard, "/v1/models", key, method="GET")[0] for key in (KEY, OTHER, "# clients", "")] == \
        [200, 200, 401, 401]


def test_a_changed_file_takes_effect_within_a_second_and_is_logged_once_without_keys(key_file, guard_log):
    clock = Clock()
    ring = KeyRing(GuardConfig(key_file=key_file), clock)
    before = ring.digests
    rewrite(key_file, "sk-guard-new-3c4d\n")
    assert ring.digests == before  # looked at less than a second ago
    clock.now = 1.0
    assert ring.digests == (api_guard.digest("sk-guard-new-3c4d"),)
    clock.now = 2.0
    assert ring.digests == (api_guard.digest("sk-guard-new-3c4d"),)
    messages = [r.getMessage() for r in guard_log]
    assert [m for m in messages if " changed: " in m] == \
        [f"API_KEY_FILE={key_file} changed: keys in force: 1 (before: 2)"]
    assert not any(secret in m for m in messages for secret in (KEY, OTHER, "sk-guard-new-3c4d"))


@pytest.mark.parametrize("content", [b"", b"sk bad key\n", b"sk-\xff\n", b"k" * 70_000])
def test_a_broken_file_keeps_the_keys_in_force(key_file, content, guard_log):
    clock = Clock()
    ring = KeyRing(GuardConfig(key_file=key_file), clock)
    before = ring.digests
    key_file.write_bytes(content)
    clock.now = 5.0
    assert ring.digests == before
    clock.now = 10.0
    assert ring.digests == before
    errors = [r.getMessage() for r in guard_log if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "stay valid" in errors[0] and KEY not in errors[0]  # once per change


def test_a_file_unreadable_from_the_start_refuses_everyone(tmp_path):
    guard = ApiGuard(Backend(), GuardConfig(key_file=tmp_path / "missing"))
    assert run(guard, "/v1/models", KEY, method="GET")[0] == 401


def test_keys_are_compared_as_digests_in_constant_time(monkeypatch):
    compared = []
    real = api_guard.hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((len(a), len(b)))
        return real(a, b)

    monkeypatch.setattr(api_guard.hmac, "compare_digest", spy)
    assert api_guard.matches(api_guard.digest(KEY), (api_guard.digest(OTHER), api_guard.digest(KEY)))
    assert compared == [(32, 32), (32, 32)]  # every key compared, as equal-length digests


# --- admission control ------------------------------------------------------------------

async def burst(guard: ApiGuard, backend: Backend, count: int, key: str | None = KEY,
                settle: float = 0.05) -> list[tuple[int, dict[str, str], Any]]:
    """`count` requests at once; the held ones are released once the others got their answers."""
    tasks = [asyncio.ensure_future(request(guard, "/v1/completions", key)) for _ in range(count)]
    await asyncio.sleep(settle)
    backend.release.set()
    return list(await asyncio.gather(*tasks))


def test_past_running_and_queued_bounds_the_answer_is_a_fast_429():
    backend = Backend(hold=True)
    guard = ApiGuard(backend, GuardConfig(inline_key=KEY, admission=Admission(2, 1, 30.0)))
    answers = asyncio.run(burst(guard, backend, 6))
    statuses = sorted(status for status, _, _ in answers)
    assert statuses == [200, 200, 200, 429, 429, 429]
    refused = [a for a in answers if a[0] == 429]
    assert all(h["retry-after"] == "1" and b["error"]["code"] == "over_capacity" for _, h, b in refused)
    assert guard.gate is not None and (guard.gate.running, guard.gate.queued, guard.gate.per_key) == (0, 0, {})


def test_a_request_waiting_past_the_queue_timeout_gets_503():
    backend = Backend(hold=True)
    guard = ApiGuard(backend, GuardConfig(inline_key=KEY, admission=Admission(1, 1, 0.05)))
    answers = asyncio.run(burst(guard, backend, 2, settle=0.3))
    assert sorted(a[0] for a in answers) == [200, 503]
    (late,) = [a for a in answers if a[0] == 503]
    assert late[1]["retry-after"] == "1" and late[2]["error"]["code"] == "queue_timeout"


def test_each_key_gets_its_own_bound():
    backend = Backend(hold=True)
    guard = ApiGuard(backend, GuardConfig(key_file=None, inline_key=KEY,
                                          admission=Admission(8, 8, 30.0, max_per_key=2)))
    answers = asyncio.run(burst(guard, backend, 4))
    assert sorted(a[0] for a in answers) == [200, 200, 429, 429]
    assert {a[2]["error"]["code"] for a in answers if a[0] == 429} == {"over_key_limit"}


def test_the_supervisors_token_probes_and_reads_are_never_shed():
    backend = Backend(hold=True)
    guard = ApiGuard(backend, GuardConfig(inline_key=KEY, internal_token=TOKEN, admission=Admission(1, 0, 30.0)))

    async def scenario() -> list[int]:
        held = asyncio.ensure_future(request(guard, "/v1/completions", KEY))
        await asyncio.sleep(0.02)
        shed = await request(guard, "/v1/completions", KEY)
        others = [asyncio.ensure_future(request(guard, "/v1/completions", TOKEN)),
                  asyncio.ensure_future(request(guard, "/health", method="GET")),
                  asyncio.ensure_future(request(guard, "/v1/models", KEY, method="GET"))]
        await asyncio.sleep(0.02)
        backend.release.set()
        return [shed[0], *(a[0] for a in await asyncio.gather(*others)), (await held)[0]]

    assert asyncio.run(scenario()) == [429, 200, 200, 200, 200]


def test_admission_without_a_key_guards_nothing_but_the_bounds():
    backend = Backend(hold=True)
    guard = ApiGuard(backend, GuardConfig(admission=Admission(1, 0, 30.0)))
    answers = asyncio.run(burst(guard, backend, 2, key=None))
    assert sorted(a[0] for a in answers) == [200, 429]


def test_a_cancelled_waiter_gives_its_place_back():
    backend = Backend(hold=True)
    guard = ApiGuard(backend, GuardConfig(inline_key=KEY, admission=Admission(1, 1, 30.0)))

    async def scenario() -> tuple[int, int, int]:
        held = asyncio.ensure_future(request(guard, "/v1/completions", KEY))
        await asyncio.sleep(0.02)
        waiter = asyncio.ensure_future(request(guard, "/v1/completions", KEY))
        await asyncio.sleep(0.02)
        waiter.cancel()  # the client went away while queued
        await asyncio.sleep(0.02)
        assert guard.gate is not None and guard.gate.queued == 0
        backend.release.set()
        await held
        return guard.gate.running, guard.gate.queued, len(guard.gate.per_key)

    assert asyncio.run(scenario()) == (0, 0, 0)
