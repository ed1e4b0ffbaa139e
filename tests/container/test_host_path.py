"""The Docker path as a stranger's host runs it, on x86_64 and on an aarch64 host by emulation,
and the image as operators call it. Cheap: no vLLM start; the image is the one the session's
deployment already built. `make test-arm64` is the long arm64 proof (vLLM's parser, a served
completion); here the accelerator stage is built for linux/arm64 on a plain arm64 Python base."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from bench.arm64 import GUIDE_MODEL_PATH, compose_file, equals_golden
from testbed.net import free_port
from tests.container.conftest import ROOT, docker

pytestmark = pytest.mark.container
POISON = "the host ran a package installer:"
ARM64_HOST = "ascend-serve-arm64-host:bookworm"
ARM64_BASE = "ascend-serve-arm64-host:bookworm-vllm-0.18.0"  # the host plus vLLM 0.18.0's package
ARM64_IMAGE = "ascend-serve-bundle:npu-arm64-plain-base"
BUILD_TIMEOUT = 3600  # cold: the arm64 root, apt and pip under emulation; bounds a hang only


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


def stranger_make_up(checkout: Path, done: subprocess.CompletedProcess, cache: Path) -> None:
    """`make up PLATFORM=npu ENGINE=docker` got to the image build and stopped at the base image
    in one line, having installed and cached nothing on the host."""
    assert done.returncode != 0, done.stdout + done.stderr
    assert POISON not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("base image ")]
    assert len(lines) == 1, done.stderr
    assert "quay.io/ascend/vllm-ascend:v0.18.0rc1" in lines[0] and "REGISTRY_MIRROR" in lines[0]
    assert not (checkout / ".venv").exists()
    assert not any(cache.iterdir()), "the host side wrote to the cache"
    assert "scripts/testbed" not in done.stdout + done.stderr


def make_up_npu(project: str) -> list[str]:
    return ["make", "--no-print-directory", "up", "PLATFORM=npu", "ENGINE=docker", f"PROJECT={project}",
            f"PORT={free_port()}"]


def test_make_up_on_npu_installs_nothing_on_the_host_and_stops_at_the_base_image_in_one_line():
    with tempfile.TemporaryDirectory(prefix="stranger-") as root:
        checkout, env = stranger_checkout(Path(root))
        done = subprocess.run(make_up_npu(f"host-stranger-{os.getpid()}"), cwd=checkout, env=env,
                              capture_output=True, text=True, timeout=300)
        stranger_make_up(checkout, done, Path(env["BUNDLE_CACHE"]))


@pytest.fixture(scope="module")
def arm64_host() -> str:
    """An aarch64 host with Docker's CLI, Compose v2, make and python3, and beside it ARM64_BASE
    (scripts/testbed/arm64-host.sh)."""
    built = subprocess.run(["scripts/testbed/arm64-host.sh", ARM64_HOST, "--vllm-package", ARM64_BASE], cwd=ROOT,
                           capture_output=True, text=True, timeout=BUILD_TIMEOUT)
    assert built.returncode == 0, built.stderr[-3000:]
    return ARM64_HOST


def engine_socket() -> str:
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    assert host.startswith("unix://"), f"the aarch64 host reaches the engine by its socket, not {host}"
    return host.removeprefix("unix://")


def test_make_up_on_an_aarch64_host_installs_nothing_and_stops_at_the_base_image_in_one_line(arm64_host):
    with tempfile.TemporaryDirectory(prefix="stranger-arm64-") as root:
        checkout, env = stranger_checkout(Path(root))
        host_env = {"PIP_CONFIG_FILE": "/dev/null", "BUNDLE_CACHE": env["BUNDLE_CACHE"],
                    "PATH": f"{root}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
        argv = ["docker", "run", "--rm", "--platform", "linux/arm64", "--network", "none", "-v", f"{root}:{root}",
                "-v", f"{engine_socket()}:/var/run/docker.sock", "-w", str(checkout),
                *(arg for k, v in host_env.items() for arg in ("-e", f"{k}={v}")), arm64_host,
                "bash", "-c", 'echo "host: $(uname -m)" >&2; exec "$@"', "host",
                *make_up_npu(f"host-arm64-{os.getpid()}")]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=900)
        assert "host: aarch64" in done.stderr.splitlines(), done.stderr[-2000:]
        stranger_make_up(checkout, done, Path(env["BUNDLE_CACHE"]))


def test_the_accelerator_stage_builds_for_arm64_and_answers_the_guides_command_doctor_and_probes(arm64_host, tmp_path):
    build = ["docker", "compose", "-p", f"arm64-stage-{os.getpid()}", "-f",
             str(compose_file(tmp_path, image=ARM64_IMAGE, base=ARM64_BASE)), "build", "serve"]
    built = subprocess.run(build, env={**os.environ, "COMPOSE_BAKE": "false"}, capture_output=True, text=True,
                           timeout=BUILD_TIMEOUT)
    assert built.returncode == 0, built.stderr[-3000:]
    assert docker("image", "inspect", "-f", "{{.Architecture}}", ARM64_IMAGE).strip() == "arm64"

    def run(*args: str, entrypoint: str | None = None) -> subprocess.CompletedProcess:
        argv = ["docker", "run", "--rm", "--platform", "linux/arm64", "--network", "none", "-e", "PLATFORM=npu",
                *(["--entrypoint", entrypoint] if entrypoint else []), ARM64_IMAGE, *args]
        return subprocess.run(argv, capture_output=True, text=True, timeout=600)

    rendered = run("render", "--format", "json", "--model-path", GUIDE_MODEL_PATH)
    assert rendered.returncode == 0, rendered.stderr
    assert equals_golden(json.loads(rendered.stdout)), rendered.stdout
    doctor = run("doctor")
    assert doctor.returncode == 2 and "Traceback" not in doctor.stderr, doctor.stderr  # no /dev/davinci* here
    assert "davinci" in doctor.stdout, doctor.stdout
    for probe in ("startup", "ready", "live"):
        answer = run("-m", "healthcheck", probe, entrypoint="python3")
        assert answer.returncode == 1 and "Traceback" not in answer.stderr, answer.stderr
        assert answer.stdout.startswith(f"{probe}: FAIL") and answer.stdout.count("\n") == 1, answer.stdout


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
