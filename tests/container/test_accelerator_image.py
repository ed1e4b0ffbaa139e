"""The Dockerfile's accelerator runtime, built for real on a stand-in for the vllm-ascend
v0.18.0rc1 image (scripts/testbed/standin-base.sh: Debian's Python 3.11, vLLM 0.18.0 by pip
into the system Python, modelscope and ray as that image's Dockerfile adds them) and run
with PLATFORM=cpu through Compose: the stage's own steps, the bundle's libraries fitted
around vLLM 0.18's pins, and the entrypoint and HEALTHCHECK on that Python. Only the NPU
itself is left out."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from testbed.net import free_port
from testbed.routed import UP_TIMEOUT
from tests.container.conftest import ROOT, Deployment, docker, make

# The stand-in is a ~7 GB image from the integration layer's 4 GB of wheels (torch 2.10's
# CUDA build and its NVIDIA libraries), built once and kept by its key.
pytestmark = pytest.mark.container
STANDIN = "ascend-serve-standin:v0.18.0rc1"


@pytest.fixture(scope="module")
def accelerator() -> Iterator[Deployment]:
    subprocess.run(["scripts/testbed/standin-base.sh", STANDIN], cwd=ROOT, check=True, timeout=UP_TIMEOUT)
    deployed = Deployment(free_port(), name="standin")
    deployed.vars += ["RUNTIME=accelerator", f"BASE_IMAGE={STANDIN}", "IMAGE=ascend-serve-bundle:standin"]
    try:
        up = make("up", *deployed.vars, timeout=UP_TIMEOUT)
        if up.returncode != 0:
            pytest.fail(f"make up on the stand-in base failed ({up.returncode}):\n{up.stdout[-3000:]}\n"
                        f"{up.stderr[-3000:]}")
        yield deployed
    finally:
        # Root's cache volume, not kept: `make down` keeps an operator's.
        make("down", *deployed.vars)
        docker("volume", "rm", "-f", f"{deployed.project}_model-cache")


def test_healthy_on_vllm_0_18_with_tini_as_pid_1(accelerator):
    assert accelerator.health() == "healthy"
    assert "tini" in accelerator.exec("cat", "/proc/1/cmdline")
    assert accelerator.exec("python3", "-c", "import vllm; print(vllm.__version__)").strip() == "0.18.0"


def test_compose_smoke_passes(accelerator):
    done = make("smoke", *accelerator.vars)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "smoke OK" in done.stdout


def test_every_probe_passes(accelerator):
    for probe in ("startup", "ready", "live"):
        accelerator.exec("python3", "-m", "healthcheck", probe)


def test_the_bundle_moved_nothing_vllm_needs(accelerator):
    image = accelerator.inspect()["Config"]["Image"]
    versions = "import importlib.metadata as m; print(m.version('torch'), m.version('transformers'))"
    assert docker("run", "--rm", "--entrypoint", "python3", image, "-c", versions) == \
        docker("run", "--rm", "--entrypoint", "python3", STANDIN, "-c", versions)
