"""The Kubernetes probes, exactly as the rendered CPU manifest writes them, run with `docker exec`
in the real CPU image: all three pass once the server is ready; before it, startup and ready
fail, and so does live while vLLM does not answer yet. The init container's command runs too."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

import testbed.fixture
from tests.container.conftest import ROOT, docker

pytestmark = pytest.mark.container
IMAGE = "ascend-serve-bundle:cpu"
HANG_SECONDS = 120
PROBES = {"startupProbe": "startup", "readinessProbe": "ready", "livenessProbe": "live"}


def cpu_pod() -> dict:
    """The pod spec of the rendered CPU overlay."""
    done = subprocess.run([str(Path(sys.executable).parent / "kubectl"), "kustomize", "deploy/kubernetes/overlays/cpu"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120, check=True)
    deployment = next(d for d in yaml.safe_load_all(done.stdout) if d and d["kind"] == "Deployment")
    return deployment["spec"]["template"]["spec"]


def manifest_probes() -> dict[str, dict]:
    """Probe name -> the probe object of the `serve` container."""
    (serve,) = [c for c in cpu_pod()["containers"] if c["name"] == "serve"]
    return {name: serve[field] for field, name in PROBES.items()}


def run_probe(container: str, probe: dict) -> subprocess.CompletedProcess:
    """What the kubelet does: exec the command. Its time against the probe's timeoutSeconds is
    printed, not asserted (a busy CI machine is not a node); HANG_SECONDS only bounds a hang."""
    started = time.monotonic()
    done = subprocess.run(["docker", "exec", container, *probe["exec"]["command"]], capture_output=True, text=True,
                          timeout=HANG_SECONDS)
    print(f"{probe['exec']['command']}: {time.monotonic() - started:.1f} s (timeoutSeconds {probe['timeoutSeconds']})")
    return done


def test_every_probe_passes_once_ready(deployment):
    for name, probe in manifest_probes().items():
        done = run_probe(deployment.container(), probe)
        assert done.returncode == 0 and done.stdout.startswith(f"{name}: OK"), done.stdout + done.stderr


def fixture_weights() -> str:
    path = testbed.fixture.fixture_weights(build=False)
    if not (path / "config.json").is_file():
        pytest.fail(f"no fixture weights at {path}: run `make fixture` first")
    return str(path)


@pytest.fixture(scope="module")
def fresh() -> Iterator[str]:
    """A container from the image under the manifest's restrictions (read-only root, /tmp a
    scratch mount, no capabilities, no new privileges), serving the fixture weights."""
    name = f"ascend-serve-probes-{uuid.uuid4().hex[:8]}"
    docker("run", "-d", "--name", name, "--network", "none", "--read-only",
           "--tmpfs", "/tmp:rw,exec,nosuid,size=2g,mode=1777", "--shm-size", "1g",
           "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
           "-v", f"{fixture_weights()}:/fixture-weights:ro",
           "-e", "MODEL_SOURCE=/fixture-weights", "-e", f"MODEL_PROFILE={testbed.fixture.PROFILE}", IMAGE)
    try:
        yield name
    finally:
        subprocess.run(["docker", "rm", "-f", "-v", name], capture_output=True, timeout=120)


def still_running(name: str) -> str:
    """'' while the container runs, else its state and last log lines (for a failure message)."""
    if docker("inspect", "-f", "{{.State.Running}}", name).strip() == "true":
        return ""
    logs = subprocess.run(["docker", "logs", "--tail", "40", name], capture_output=True, text=True, timeout=60)
    return f"container {name} is not running:\n{logs.stdout}{logs.stderr}"


def test_startup_and_ready_fail_before_the_server_is_ready(fresh):
    # At once: vLLM takes far longer than this to answer /health, so live fails too.
    results = {probe: run_probe(fresh, spec) for probe, spec in manifest_probes().items()}
    # Exit 1 from the probe itself (its FAIL line), not from docker exec on a dead container.
    assert not still_running(fresh), still_running(fresh)
    for probe, done in results.items():
        assert done.returncode == 1 and done.stdout.startswith(f"{probe}: FAIL"), done.stdout + done.stderr


def test_init_container_command_runs_in_the_image(fresh):
    (download,) = cpu_pod()["initContainers"]
    done = subprocess.run(["docker", "exec", fresh, *download["command"]], capture_output=True, text=True,
                          timeout=HANG_SECONDS)
    # With MODEL_SOURCE a folder, `download` checks the settings and folders and prints the path.
    assert done.returncode == 0 and done.stdout.strip() == "/fixture-weights", done.stdout + done.stderr
