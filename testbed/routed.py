"""Compose deployments on the test bed's Docker engine: how long one may take to come up, and the
routed project (two eager `serve` replicas of the fixture behind vLLM's router, with an API key)
that the container tests and bench/scale.py start."""

from __future__ import annotations

import json
import os
import re
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import yaml

from testbed.fixture import EAGER_CPU, SERVED_NAME, fixture_weights
from testbed.net import free_port
from testbed.paths import ROOT

UP_TIMEOUT = 3600  # a cold image build plus a cold vLLM start; bounds a hang only
REPLICAS = 2
API_KEY = "sk-router-test-7c1f"
# The fixture's eager start for each replica (testbed.yaml gives them the fixture's profile).
FAST_SERVE = {"services": {"serve": {"environment": {**EAGER_CPU, "ENABLE_PREFIX_CACHING": "true"}}}}
SUCCESS = re.compile(r'^vllm:request_success_total\{.*\} ([0-9.e+]+)$', re.MULTILINE)


class Routed:
    """The routed Compose project: `docker compose` with the same files `make up REPLICAS=2` uses."""

    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        self.project = f"ascend-serve-router-test-{os.getpid()}"
        key = folder / "api_key"
        key.write_text(API_KEY + "\n")
        key.chmod(0o644)  # the containers' uid 1000 reads it
        fast = folder / "fast.yaml"
        fast.write_text(yaml.safe_dump(FAST_SERVE))
        files = ["compose.yaml", "cpu.yaml", "testbed.yaml", "api-key.yaml", "router.yaml", "router-api-key.yaml",
                 str(fast)]
        self.args = ["docker", "compose", "-p", self.project,
                     *(arg for f in files for arg in ("-f", str(ROOT / "compose" / f)))]
        self.prometheus_port = free_port()
        self.env = {**os.environ, "FIXTURE_WEIGHTS": str(fixture_weights(build=False)), "HOST_PORT": str(self.port),
                    "REPLICAS": str(REPLICAS), "API_KEY_FILE": str(key), "COMPOSE_BAKE": "false",
                    "PROMETHEUS_PORT": str(self.prometheus_port)}
        self.url = f"http://127.0.0.1:{self.port}"
        # What `make` needs to address this project as `make up REPLICAS=2 TESTBED=1` would.
        self.make_vars = ["ENGINE=docker", "PLATFORM=cpu", "TESTBED=1", f"PORT={self.port}", f"PROJECT={self.project}",
                          f"REPLICAS={REPLICAS}", f"API_KEY_FILE={key}", f"PROMETHEUS_PORT={self.prometheus_port}"]

    def compose(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        return subprocess.run([*self.args, *args], cwd=ROOT, env=self.env, capture_output=True, text=True,
                              timeout=timeout)

    def successes(self, index: int) -> float:
        """vLLM's request_success_total on replica `index`, read inside its container."""
        done = self.compose("exec", "--index", str(index), "serve", "python", "-c",
                            "import urllib.request as u; print(u.urlopen('http://127.0.0.1:8000/metrics').read().decode())")
        assert done.returncode == 0, done.stderr
        return sum(float(value) for value in SUCCESS.findall(done.stdout))

    def python(self, index: int, code: str) -> subprocess.CompletedProcess:
        """Python code run inside replica `index`."""
        return self.compose("exec", "--index", str(index), "serve", "python3", "-c", code, timeout=120)

    def replica(self, index: int) -> dict:
        """`docker inspect` of replica `index`."""
        done = subprocess.run(["docker", "inspect", f"{self.project}-serve-{index}"], capture_output=True, text=True,
                              timeout=60, check=True)
        return json.loads(done.stdout)[0]


def answered(url: str, prompt: str, key: str | None = API_KEY, max_tokens: int = 4) -> tuple[int, str | None]:
    """The status of one completion and its Retry-After header."""
    body = json.dumps({"model": SERVED_NAME, "prompt": prompt, "max_tokens": max_tokens}).encode()
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
    request = urllib.request.Request(f"{url}/v1/completions", data=body, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=300) as response:
            return response.status, response.headers.get("Retry-After")
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Retry-After")


def complete(url: str, prompt: str, key: str | None = API_KEY) -> int:
    return answered(url, prompt, key)[0]
