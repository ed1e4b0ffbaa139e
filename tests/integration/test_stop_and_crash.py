"""Lifecycle on real vLLM: a warm start makes no hub request, SIGTERM is clean, a dead vLLM is noticed."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest
import requests

from tests.integration.conftest import start_server

pytestmark = pytest.mark.integration


def session_members(sid: int) -> list[int]:
    """Live processes whose session id is `sid` (vLLM's child session)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":
            members.append(int(stat.parent.name))
    return members


class Request(threading.Thread):
    """One completion request in the background; its status lands in `result`."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url, self.result = url, {}

    def run(self) -> None:
        try:
            answer = requests.post(f"{self.url}/v1/completions", timeout=120, json={
                "model": "gemma-3-270m-it", "prompt": "Once upon a time", "max_tokens": 64,
                "ignore_eos": True, "temperature": 0})
            self.result.update(status=answer.status_code, body=answer.text[:300])
        except requests.RequestException as exc:
            self.result.update(status=None, error=repr(exc))


def start_long_request(url: str) -> Request:
    request = Request(url)
    request.start()
    return request


def test_warm_start_makes_no_hub_request_and_sigterm_is_clean(tmp_path, hub, warm_cache):
    hub.reset()
    server = start_server(tmp_path, hub, warm_cache)
    server.wait_ready()
    assert hub.requests == []
    vllm_pid = server.state.state()["server_pid"]
    assert session_members(vllm_pid)
    in_flight = start_long_request(server.url)
    time.sleep(2)  # the request is being generated when SIGTERM arrives
    started = time.monotonic()
    status = server.stop()
    in_flight.join(timeout=120)
    assert in_flight.result["status"] == 200, in_flight.result  # vLLM drains what it already accepted
    assert status == 0, server.log()[-3000:]
    assert time.monotonic() - started < 30 + 30  # STOP_GRACE_PERIOD plus the supervisor's own exit
    assert session_members(vllm_pid) == []
    assert server.state.ready() is None and server.probe("live") == 1


def test_killed_vllm_ends_serve_nonzero_and_fails_live(tmp_path, hub, warm_cache):
    server = start_server(tmp_path, hub, warm_cache)
    server.wait_ready()
    vllm_pid = server.state.state()["server_pid"]
    os.kill(vllm_pid, signal.SIGKILL)
    status = server.process.wait(timeout=60)
    assert status != 0
    assert "vLLM exited unexpectedly" in server.log()
    assert server.probe("live") == 1
    assert session_members(vllm_pid) == []
