"""A real Docker engine (started by `make test-container`) and the bundle's CPU image.

`make up` here is the operator's command: it builds the image, starts Compose with the
CPU and test-bed overrides and returns once Docker reports the container healthy.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from entrypoint.state import DEFAULT_STATE_DIR, STATE_FILE
from testbed.net import free_port
from testbed.paths import BUNDLE_CACHE
from testbed.routed import UP_TIMEOUT

ROOT = Path(__file__).parents[2]

pytestmark = pytest.mark.container


def make(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "--no-print-directory", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def docker(*args: str) -> str:
    return subprocess.run(["docker", *args], check=True, capture_output=True, text=True, timeout=120).stdout


class Deployment:
    """The Compose deployment `make up` made."""

    def __init__(self, port: int, name: str = "test", fresh_compile_cache: Path | None = None) -> None:
        self.port = port
        # A project of its own: the tests never touch an operator's `ascend-serve` deployment,
        # and deployments of different images never share a cache volume.
        self.project = f"ascend-serve-{name}-{os.getpid()}"
        self.vars = ["ENGINE=docker", "PLATFORM=cpu", "TESTBED=1", f"PORT={port}", f"PROJECT={self.project}"]
        if fresh_compile_cache is not None:
            # The image with warmed compile caches, on a compile cache as empty as a new volume's.
            self.vars += ["WARM=1", f"TESTBED_COMPILE_CACHE={fresh_compile_cache}"]
        self.url = f"http://127.0.0.1:{port}"

    def container(self, service: str = "serve") -> str:
        return docker("ps", "-aq", "--filter", f"label=com.docker.compose.service={service}",
                      "--filter", f"label=com.docker.compose.project={self.project}").strip()

    def inspect(self) -> dict:
        return json.loads(docker("inspect", self.container()))[0]

    def health(self) -> str:
        return self.inspect()["State"].get("Health", {}).get("Status", "none")

    def exec(self, *command: str) -> str:
        return docker("exec", self.container(), *command)

    def server_pid(self) -> int:
        """PID of vLLM inside the container, from the supervisor's state file."""
        return int(json.loads(self.exec("cat", str(DEFAULT_STATE_DIR / STATE_FILE)))["server_pid"])

    def hub_requests(self) -> list[str]:
        """The hub container's request log lines."""
        done = subprocess.run(["docker", "logs", self.container("hub")], capture_output=True, text=True, timeout=60)
        return [line for line in (done.stdout + done.stderr).splitlines() if line.startswith("hub: ")]

    def wait_health(self, wanted: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while (status := self.health()) != wanted:
            if time.monotonic() > deadline:
                pytest.fail(f"health still {status!r}, wanted {wanted!r} after {timeout} s")
            time.sleep(2)


def files_under(deployment: Deployment, folder: str) -> list[str]:
    """Every file below a folder inside the serving container, sorted."""
    listing = deployment.exec("python", "-c", "import pathlib, sys; print(*sorted(str(p) for p in "
                              "pathlib.Path(sys.argv[1]).rglob('*') if p.is_file()), sep='\\n')", folder)
    return listing.split()


def inductor_folder(deployment: Deployment) -> str:
    """Where the container's settings put torch Inductor's kernel cache (the CPU profile keeps no AOT
    artifact); in the test bed a host folder that outlives the run's cache volume."""
    return json.loads(deployment.exec("python", "-m", "entrypoint", "render", "--format", "json"))["env"][
        "TORCHINDUCTOR_CACHE_DIR"]


def inductor_cache(deployment: Deployment) -> list[str]:
    """The files of torch Inductor's kernel cache."""
    return files_under(deployment, inductor_folder(deployment))


@pytest.fixture(scope="session")
def deployment() -> Iterator[Deployment]:
    if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        pytest.fail("no Docker engine answers: run these tests with `make test-container`")
    # The session's server is the warm image's first start on a fresh volume: every later start
    # (restarts, the killed vLLM) then runs on the cache that start copied from the image.
    fresh = Path(tempfile.mkdtemp(prefix="fresh-compile-cache-", dir=BUNDLE_CACHE))
    deployed = Deployment(free_port(), fresh_compile_cache=fresh)
    began = time.monotonic()
    up = make("up", *deployed.vars, timeout=UP_TIMEOUT)
    deployed.up_seconds = time.monotonic() - began  # type: ignore[attr-defined]
    deployed.up_result = up  # type: ignore[attr-defined]
    if up.returncode != 0:
        logs = subprocess.run(["docker", "logs", "--tail", "60", deployed.container() or "none"],
                              capture_output=True, text=True).stdout
        make("down", *deployed.vars)
        pytest.fail(f"make up failed ({up.returncode}):\n{up.stdout[-3000:]}\n{up.stderr[-3000:]}\n{logs}")
    yield deployed
    make("down", *deployed.vars)
    shutil.rmtree(fresh, ignore_errors=True)
