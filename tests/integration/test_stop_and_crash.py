"""Lifecycle on real vLLM: a warm start makes no hub request, SIGTERM is clean, a dead vLLM is noticed."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

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


def test_warm_start_makes_no_hub_request_and_sigterm_is_clean(tmp_path, hub, warm_cache):
    hub.reset()
    server = start_server(tmp_path, hub, warm_cache)
    server.wait_ready()
    assert hub.requests == []
    vllm_pid = server.state.state()["server_pid"]
    assert session_members(vllm_pid)
    started = time.monotonic()
    status = server.stop()
    assert status == 0, server.log()[-3000:]
    assert time.monotonic() - started < 20 + 30  # STOP_GRACE_PERIOD plus the supervisor's own exit
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
