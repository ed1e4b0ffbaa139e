"""A real Docker engine (started by `make test-container`) and the bundle's CPU image.

`make up` here is the operator's command: it builds the image, starts Compose with the
CPU and test-bed overrides and returns once Docker reports the container healthy.
"""

from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
UP_TIMEOUT = 3600  # a cold image build plus a cold vLLM start; bounds a hang only


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "--no-print-directory", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def docker(*args: str) -> str:
    return subprocess.run(["docker", *args], check=True, capture_output=True, text=True, timeout=120).stdout


class Deployment:
    """The Compose deployment `make up` made."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.vars = ["ENGINE=docker", "PLATFORM=cpu", "TESTBED=1", f"PORT={port}"]
        self.url = f"http://127.0.0.1:{port}"

    def container(self) -> str:
        return docker("ps", "-q", "--filter", "label=com.docker.compose.service=serve",
                      "--filter", "label=com.docker.compose.project=ascend-serve").strip()

    def inspect(self) -> dict:
        return json.loads(docker("inspect", self.container()))[0]


@pytest.fixture(scope="session")
def deployment() -> Iterator[Deployment]:
    if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        pytest.fail("no Docker engine answers: run these tests with `make test-container`")
    deployed = Deployment(free_port())
    up = make("up", *deployed.vars, timeout=UP_TIMEOUT)
    deployed.up_result = up  # type: ignore[attr-defined]
    if up.returncode != 0:
        logs = subprocess.run(["docker", "logs", "--tail", "60", deployed.container() or "none"],
                              capture_output=True, text=True).stdout
        make("down", *deployed.vars)
        pytest.fail(f"make up failed ({up.returncode}):\n{up.stdout[-3000:]}\n{up.stderr[-3000:]}\n{logs}")
    yield deployed
    make("down", *deployed.vars)
