"""The Docker path as a stranger's host runs it, and the image as operators call it. Cheap:
no vLLM start; the image is the one the session's deployment already built."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from testbed.net import free_port
from tests.container.conftest import ROOT, docker

pytestmark = pytest.mark.container
POISON = "the host ran a package installer:"


def stranger_checkout(root: Path) -> tuple[Path, dict[str, str]]:
    """The checkout's tracked files alone (no venv, no .run, no wheels) and a stranger's
    environment: pip configured for nothing, a fresh BUNDLE_CACHE, pip and uv that refuse."""
    checkout, cache, tools = root / "checkout", root / "cache", root / "bin"
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for name in filter(None, files.decode().split("\0")):
        if (ROOT / name).is_file():
            (checkout / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, checkout / name)
    cache.mkdir()
    tools.mkdir()
    for tool in ("pip", "pip3", "uv"):
        (tools / tool).write_text(f'#!/bin/sh\necho "{POISON} {tool} $*" >&2\nexit 99\n')
        (tools / tool).chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "VIRTUAL_ENV", "PYTHON"))
           and k not in ("PLATFORM", "PORT", "ENGINE", "MAKEFLAGS", "MAKELEVEL", "TORCH_FIND_LINKS", "TORCH_INDEX_URL")}
    # The engine may stay the shared one (DOCKER_HOST); nothing else of the test bed's.
    env.update(PIP_CONFIG_FILE="/dev/null", BUNDLE_CACHE=str(cache), PATH=f"{tools}:{env['PATH']}")
    return checkout, env


def test_make_up_on_npu_installs_nothing_on_the_host_and_stops_at_the_base_image_in_one_line():
    with tempfile.TemporaryDirectory(prefix="stranger-") as root:
        checkout, env = stranger_checkout(Path(root))
        project = f"host-stranger-{os.getpid()}"
        done = subprocess.run(["make", "--no-print-directory", "up", "PLATFORM=npu", "ENGINE=docker",
                               f"PROJECT={project}", f"PORT={free_port()}"], cwd=checkout, env=env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode != 0, done.stdout + done.stderr
        assert POISON not in done.stderr
        lines = [line for line in done.stderr.splitlines() if line.startswith("base image ")]
        assert len(lines) == 1, done.stderr
        assert "quay.io/ascend/vllm-ascend:v0.18.0rc1" in lines[0] and "REGISTRY_MIRROR" in lines[0]
        assert not (checkout / ".venv").exists()
        assert not any(Path(env["BUNDLE_CACHE"]).iterdir()), "the host side wrote to the cache"
        assert "scripts/testbed" not in done.stdout + done.stderr


def test_the_image_runs_a_command_serves_by_default_and_takes_engine_flags(deployment):
    image = deployment.inspect()["Config"]["Image"]
    assert docker("run", "--rm", image, "bash", "-c", "echo ok") == "ok\n"
    assert deployment.inspect()["Config"]["Cmd"] == ["serve"]  # `docker run IMAGE` serves
    shown = docker("run", "--rm", "-e", "PLATFORM=cpu", image, "render", "--max-logprobs", "5", "--max-num-seqs", "8")
    assert shown.rstrip().endswith("--max-logprobs 5"), shown
    assert "--max-num-seqs 8" in shown.replace(" \\\n", " "), shown  # `docker run IMAGE --max-num-seqs 8` serves with 8
    managed = subprocess.run(["docker", "run", "--rm", image, "--port", "9"], capture_output=True, text=True,
                             timeout=120)
    assert managed.returncode == 2 and managed.stderr.count("\n") == 1, managed.stderr
    assert "'--port': managed by PORT" in managed.stderr


def test_make_up_that_cannot_start_prints_the_reason_and_holds_instead_of_restarting(deployment, tmp_path):
    env_file = tmp_path / "bad.env"
    env_file.write_text("MAX_NUM_SEQS=lots\n")
    project = f"host-failed-{os.getpid()}"
    args = ["ENGINE=docker", "PLATFORM=cpu", f"PROJECT={project}", f"PORT={free_port()}", f"ENV_FILE={env_file}"]
    # Its own tag: the session's images stay as they are (every layer is cached, so it is quick).
    env = {**os.environ, "IMAGE": f"ascend-serve-bundle:cpu-{project}"}
    try:
        done = subprocess.run(["make", "--no-print-directory", "up", *args], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=600)
        assert done.returncode != 0, done.stdout
        assert "error: MAX_NUM_SEQS='lots'" in done.stderr, done.stderr[-3000:]
        container = docker("ps", "-aq", "--filter", f"label=com.docker.compose.project={project}").strip()
        time.sleep(3)  # long enough for a restart loop to show
        state = docker("inspect", "--format", "{{.State.Status}} {{.RestartCount}}", container).split()
        assert state == ["running", "0"], state
        status = subprocess.run(["make", "--no-print-directory", "status", *args], cwd=ROOT, env=env,
                                capture_output=True, text=True, timeout=120)
        assert status.returncode != 0 and status.stdout.count("not retried: MAX_NUM_SEQS='lots'") == 3, status.stdout
    finally:
        subprocess.run(["make", "--no-print-directory", "down", *args], cwd=ROOT, env=env, capture_output=True,
                       timeout=300)
        subprocess.run(["docker", "rmi", env["IMAGE"]], capture_output=True, timeout=120)
        subprocess.run(["docker", "volume", "rm", f"{project}_model-cache"], capture_output=True, timeout=120)
