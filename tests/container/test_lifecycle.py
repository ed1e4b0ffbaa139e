"""The container under faults: a killed vLLM, a frozen vLLM, render parity, and `make down` (last)."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time

import pytest

from tests.container.conftest import ROOT, inductor_cache, make

pytestmark = pytest.mark.container
RESTART_TIMEOUT = 900  # a restart re-traces the graph on 2 cores; bounds a hang only
STOP_TIMEOUT = 300  # bounds a hang only; the time taken is printed


def die_events(container: str, since: float) -> list[dict]:
    done = subprocess.run(["docker", "events", "--since", str(int(since)), "--until", str(int(time.time()) + 1),
                           "--filter", f"container={container}", "--filter", "event=die", "--format", "{{json .}}"],
                          capture_output=True, text=True, timeout=60, check=True)
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


@pytest.mark.timeout(STOP_TIMEOUT + RESTART_TIMEOUT + 300)  # its own bounds first
def test_killed_vllm_ends_the_container_and_it_comes_back_from_the_cache(deployment):
    container = deployment.container()
    assert deployment.hub_requests(), "the first start downloaded through the hub"
    requests_before = len(deployment.hub_requests())
    kernels = inductor_cache(deployment)
    assert any(name.endswith(".so") for name in kernels), "no kernel in the compile cache after the first start"
    killed_at = time.time()
    deployment.exec("sh", "-c", f"kill -KILL {deployment.server_pid()}")
    deadline = time.monotonic() + STOP_TIMEOUT
    while not (events := die_events(container, killed_at - 1)):
        assert time.monotonic() < deadline, f"the container did not stop within {STOP_TIMEOUT} s of vLLM's kill"
        time.sleep(1)
    assert events[0]["Actor"]["Attributes"]["exitCode"] != "0"
    print(f"vLLM killed to the container's exit: {float(events[0]['time']) - killed_at:.0f} s")
    deployment.wait_health("healthy", RESTART_TIMEOUT)
    assert deployment.inspect()["RestartCount"] >= 1
    assert len(deployment.hub_requests()) == requests_before, "the restart downloaded again"
    # Both starts' output: the restart found the first start's compiled graph on the cache volume.
    logs = subprocess.run(["docker", "logs", container], capture_output=True, text=True, timeout=60)
    assert "Compiling model again due to a load failure" not in logs.stdout + logs.stderr
    assert inductor_cache(deployment) == kernels, "the restart compiled kernels the cache already had"


def test_frozen_vllm_turns_docker_health_unhealthy(deployment):
    pid = deployment.server_pid()
    deployment.exec("sh", "-c", f"kill -STOP {pid}")
    try:
        deployment.wait_health("unhealthy", 180)
    finally:
        deployment.exec("sh", "-c", f"kill -CONT {pid}")
    deployment.wait_health("healthy", 180)


def test_render_inside_equals_render_outside(deployment):
    inside = json.loads(deployment.exec("python", "-m", "entrypoint", "render", "--format", "json"))
    env = deployment.inspect()["Config"]["Env"]
    settings = dict(item.split("=", 1) for item in env)
    names = ("PLATFORM", "MODEL_CACHE_DIR", "COMPILE_CACHE_DIR", "HOST", "PORT", "MODEL_PROFILE",
             "MODELSCOPE_ENDPOINT")
    same = {name: settings[name] for name in names if name in settings}
    outside = subprocess.run(["make", "--no-print-directory", "render", "ENGINE=native", "RENDER_FORMAT=json"],
                             cwd=ROOT, env={**os.environ, **same}, capture_output=True, text=True, timeout=300)
    assert outside.returncode == 0, outside.stderr
    rendered = json.loads(outside.stdout)
    # argv[0] is each side's own interpreter; everything after it must match.
    assert inside["argv"][1:] == rendered["argv"][1:] and inside["env"] == rendered["env"]


def test_make_down_stops_cleanly(deployment):
    container = deployment.container()
    status: dict[str, str] = {}
    waiter = threading.Thread(target=lambda: status.update(code=subprocess.run(
        ["docker", "wait", container], capture_output=True, text=True).stdout.strip()))
    waiter.start()
    started = time.monotonic()
    done = make("down", *deployment.vars)
    took = time.monotonic() - started
    waiter.join(timeout=120)
    assert done.returncode == 0, done.stderr
    assert status.get("code") == "0"
    print(f"make down: {took:.1f} s (compose's stop_grace_period is 45 s)")
    deployment.down = True  # type: ignore[attr-defined]
