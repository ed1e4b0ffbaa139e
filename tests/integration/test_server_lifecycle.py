"""Lifecycle and the engine canary on real vLLM, two servers started together on the warm cache.

- both: a warm start makes no hub request.
- `doomed` (first, to free its memory): its vLLM is SIGKILLed; serve ends non-zero and live fails.
- `warm`: its canary (fast settings) answers when idle, stays green under load and fails
  `healthcheck live` when the engine core or the API server is stopped; SIGTERM with a
  request in flight is clean (last: it ends the server).

vLLM runs an API server and an EngineCore process. Its /health only asks the API server
whether the engine was declared dead, so a SIGSTOPped engine core keeps /health at 200:
only the canary notices.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from testbed.modelscope_hub import LoopbackHub
from testbed.servers import engine_core_pid, session_processes
from tests.integration.conftest import FAST_CANARY, ROOT, Server, resume_and_stop, start_server

pytestmark = [pytest.mark.integration, pytest.mark.starts_vllm]
VERDICT_SECONDS = 180  # only bounds a hang: the canary needs a few looks of a few seconds each


@dataclass
class WarmServers:
    warm: Server
    doomed: Server
    hub_requests_at_ready: list


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory, hub: LoopbackHub, warm_cache: Path) -> Iterator[WarmServers]:
    """Both servers at once: a start is mostly one core's imports, so two starts overlap on two cores."""
    hub.reset()
    warm = start_server(tmp_path_factory.mktemp("warm"), hub, warm_cache, **FAST_CANARY)
    doomed = start_server(tmp_path_factory.mktemp("doomed"), hub, warm_cache)
    try:
        warm.wait_ready()
        doomed.wait_ready()
        yield WarmServers(warm, doomed, list(hub.requests))
    finally:
        for server in (warm, doomed):
            resume_and_stop(server)


def live(server: Server) -> tuple[int, str]:
    done = subprocess.run([sys.executable, "-m", "healthcheck", "live", "--state-dir", str(server.state_dir)],
                          cwd=ROOT, capture_output=True, text=True, timeout=30)
    return done.returncode, done.stdout.strip()


def wait_for(condition: Callable[[], bool], what: str, server: Server) -> None:
    deadline = time.monotonic() + VERDICT_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} after {VERDICT_SECONDS} s; canary: {server.state.canary()}; "
                        f"live: {live(server)}\n{server.log()[-3000:]}")
        time.sleep(1)


def wait_live(server: Server, expected: int) -> str:
    """Poll `healthcheck live` until it exits `expected`; return its line."""
    seen: list[str] = []

    def verdict() -> bool:
        code, line = live(server)
        seen.append(line)
        return code == expected

    wait_for(verdict, f"live exit {expected}", server)
    return seen[-1]


class Completion(threading.Thread):
    """One completion request in the background; its status lands in `result`."""

    def __init__(self, url: str, max_tokens: int) -> None:
        super().__init__(daemon=True)
        self.url, self.max_tokens, self.result = url, max_tokens, {}

    def run(self) -> None:
        try:
            answer = requests.post(f"{self.url}/v1/completions", timeout=600, json={
                "model": "gemma-3-270m-it", "prompt": "Once upon a time", "max_tokens": self.max_tokens,
                "ignore_eos": True, "temperature": 0})
            self.result.update(status=answer.status_code, body=answer.text[:300])
        except requests.RequestException as exc:
            self.result.update(status=None, error=repr(exc))


def start_completions(url: str, count: int, max_tokens: int) -> list[Completion]:
    load = [Completion(url, max_tokens) for _ in range(count)]
    for request in load:
        request.start()
    return load


def test_warm_start_makes_no_hub_request(servers: WarmServers) -> None:
    assert servers.hub_requests_at_ready == []
    assert servers.warm.state.ready() is not None and servers.doomed.state.ready() is not None


def test_killed_vllm_ends_serve_nonzero_and_fails_live(servers: WarmServers) -> None:
    server = servers.doomed
    vllm_pid = server.state.state()["server_pid"]
    os.kill(vllm_pid, signal.SIGKILL)
    status = server.process.wait(timeout=60)
    assert status != 0
    assert "vLLM exited unexpectedly" in server.log()
    assert server.probe("live") == 1
    assert session_processes(vllm_pid) == {}


def test_canary_answers_when_idle_and_busy_never_fails_live(servers: WarmServers) -> None:
    server = servers.warm
    # Idle: the canary generates one token and records success.
    wait_for(lambda: (server.state.canary() or {}).get("reason") == "the 1-token completion answered",
             "canary generation", server)
    assert live(server)[0] == 0

    # Busy: eight long generations; live passes on every call while they run.
    load = start_completions(server.url, 8, 256)
    verdicts, reasons = [], set()
    while any(request.is_alive() for request in load):
        verdicts.append(live(server))
        reasons.add((server.state.canary() or {}).get("reason"))
    assert [request.result.get("status") for request in load] == [200] * 8, [r.result for r in load]
    assert [line for code, line in verdicts if code != 0] == []
    assert any(str(reason).startswith("busy, progressing") for reason in reasons), reasons


def test_stopped_engine_core_fails_live_while_health_stays_200(servers: WarmServers) -> None:
    server = servers.warm
    core = engine_core_pid(server.state.state()["server_pid"])
    os.kill(core, signal.SIGSTOP)
    try:
        line = wait_live(server, 1)
        assert "engine canary failed" in line, line
        assert requests.get(f"{server.url}/health", timeout=10).status_code == 200  # why the canary exists
    finally:
        os.kill(core, signal.SIGCONT)
    wait_live(server, 0)


def test_stopped_api_server_fails_live(servers: WarmServers) -> None:
    server = servers.warm
    server_pid = server.state.state()["server_pid"]
    os.kill(server_pid, signal.SIGSTOP)
    try:
        line = wait_live(server, 1)
        # The probe's own time-out may speak first on a loaded machine; any of these is a FAIL
        # for the stopped server, never an OK.
        assert any(why in line for why in ("did not answer", "engine canary failed", "timed out")), line
    finally:
        os.kill(server_pid, signal.SIGCONT)
    wait_live(server, 0)
    assert server.process.poll() is None


def test_sigterm_with_a_request_in_flight_is_clean(servers: WarmServers) -> None:
    server = servers.warm
    vllm_pid = server.state.state()["server_pid"]
    assert session_processes(vllm_pid)
    (in_flight,) = start_completions(server.url, 1, 64)
    time.sleep(2)  # the request is being generated when SIGTERM arrives
    started = time.monotonic()
    status = server.stop()
    in_flight.join(timeout=120)
    assert in_flight.result["status"] == 200, in_flight.result  # vLLM drains what it already accepted
    assert status == 0, server.log()[-3000:]
    # Measured, not asserted (the JUnit output keeps it): STOP_GRACE_PERIOD is 30 s here.
    print(f"SIGTERM to a clean exit with a request in flight: {time.monotonic() - started:.1f} s")
    assert session_processes(vllm_pid) == {}
    assert server.state.ready() is None and server.probe("live") == 1
