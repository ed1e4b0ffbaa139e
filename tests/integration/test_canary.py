"""The engine canary on real vLLM: a stopped engine core or API server fails `healthcheck live`,
a busy server never does.

vLLM runs an API server and an EngineCore process. Its /health only asks the API server
whether the engine was declared dead, so a SIGSTOPped engine core keeps /health at 200:
only the canary notices.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from tests.integration.conftest import ROOT, Server, start_server
from tests.support.processes import engine_core_pid, session_processes

pytestmark = pytest.mark.integration
VERDICT_SECONDS = 180  # only bounds a hang: the canary needs a few looks of a few seconds each


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


@contextlib.contextmanager
def canary_server(tmp_path: Path, hub, warm_cache: Path, **overrides: str) -> Iterator[Server]:
    server = start_server(tmp_path, hub, warm_cache, CANARY_INTERVAL="2", CANARY_TIMEOUT="3", CANARY_FAILURES="2",
                          **overrides)
    try:
        server.wait_ready()
        yield server
    finally:
        # Nothing stays stopped: a frozen process would never see the supervisor's SIGTERM.
        pid = (server.state.state() or {}).get("server_pid")
        for member in session_processes(pid) if pid else []:
            with contextlib.suppress(ProcessLookupError):
                os.kill(member, signal.SIGCONT)
        server.stop()


def long_generation(url: str, results: list) -> None:
    try:
        answer = requests.post(f"{url}/v1/completions", timeout=600, json={
            "model": "gemma-3-270m-it", "prompt": "Once upon a time", "max_tokens": 256, "ignore_eos": True,
            "temperature": 0})
        results.append(answer.status_code)
    except requests.RequestException as exc:
        results.append(repr(exc))


def test_canary_stopped_engine_and_api_server_fail_live_busy_server_does_not(tmp_path, hub, warm_cache):
    with canary_server(tmp_path, hub, warm_cache) as server:
        # Idle: the canary generates one token and records success.
        wait_for(lambda: (server.state.canary() or {}).get("reason") == "the 1-token completion answered",
                 "canary generation", server)
        assert live(server)[0] == 0

        # Busy: eight long generations; live passes on every call while they run.
        results: list = []
        load = [threading.Thread(target=long_generation, args=(server.url, results)) for _ in range(8)]
        for thread in load:
            thread.start()
        verdicts, reasons = [], set()
        while any(thread.is_alive() for thread in load):
            verdicts.append(live(server))
            reasons.add((server.state.canary() or {}).get("reason"))
        assert results == [200] * 8
        assert [line for code, line in verdicts if code != 0] == []
        assert any(str(reason).startswith("busy, progressing") for reason in reasons), reasons

        # A stopped engine core: /health stays 200, the canary fails, live fails.
        server_pid = server.state.state()["server_pid"]
        core = engine_core_pid(server_pid)
        os.kill(core, signal.SIGSTOP)
        try:
            line = wait_live(server, 1)
            assert "engine canary failed" in line, line
            assert requests.get(f"{server.url}/health", timeout=10).status_code == 200  # why the canary exists
        finally:
            os.kill(core, signal.SIGCONT)
        wait_live(server, 0)

        # A stopped API server: /health times out.
        os.kill(server_pid, signal.SIGSTOP)
        try:
            line = wait_live(server, 1)
            assert "did not answer" in line or "engine canary failed" in line, line
        finally:
            os.kill(server_pid, signal.SIGCONT)
        wait_live(server, 0)
        assert server.process.poll() is None
    assert server.process.returncode == 0, server.log()[-3000:]
