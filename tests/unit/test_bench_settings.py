"""Every `make bench-*` target's servers, as the benchmark builds their settings: they load and render,
on the fixture weights with the fixture's profile. A renamed setting, a refused value or a lost profile
fails here, in seconds, not in a benchmark run an hour in (`make bench-startup` once served the
fixture without its profile and waited for an answer the base model never gives)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from bench import (
    arm64,
    cpu_dtype,
    image,
    monitoring,
    overload,
    profiles,
    reliability,
    routing,
    start,
    startup,
    warm_image,
)
from bench.common import cpu_fixture
from entrypoint.render import render_command
from entrypoint.resolver import load_settings
from testbed.fixture import PROFILE
from testbed.paths import ROOT
from testbed.routed import FAST_SERVE

IN_CONTAINER = ("/fixture-weights", "/weights")  # where the containers see the weights


def routed_replica(weights: Path, folder: Path) -> dict[str, str]:
    """A replica of the routed project (bench-scale): the test bed's Compose override, then the fast start."""
    testbed = yaml.safe_load((ROOT / "compose" / "testbed.yaml").read_text())["services"]["serve"]["environment"]
    return {"PLATFORM": "cpu", **testbed, **FAST_SERVE["services"]["serve"]["environment"]}


# target -> the settings of each server it starts, given a weights folder and a scratch folder.
SERVERS: dict[str, Callable[[Path, Path], list[dict[str, str]]]] = {
    "bench-startup": lambda weights, folder: [startup.serve_environ(None, [])],
    "bench-image": lambda weights, folder: [image.native_settings(str(weights), folder / "cache", folder / "state"),
                                            {"PLATFORM": "cpu", **image.container_settings()}],
    "bench-warm-image": lambda weights, folder: [{"PLATFORM": "cpu", **image.container_settings(env)}
                                                 for _, _, env, _ in warm_image.STARTS],
    "bench-scale": lambda weights, folder: [routed_replica(weights, folder)],
    "bench-profiles": lambda weights, folder: [{**cpu_fixture(weights), **added}
                                               for _, added in profiles.CANDIDATES.values()],
    "bench-start": lambda weights, folder: [{**cpu_fixture(weights), **start.formatted(candidate, weights)}
                                            for candidate in start.CANDIDATES.values()],
    "bench-monitoring": lambda weights, folder: [monitoring.settings(folder, str(weights), 8000, 9464)],
    "bench-overload": lambda weights, folder: [overload.settings(folder, weights, 8000, admission, queued)
                                               for admission, queued in ((False, None), (True, None), (True, 0))],
    "bench-routing": lambda weights, folder: [{**overload.settings(folder, weights, 8000, False, None),
                                                **routing.serve_settings(caching)} for caching in (False, True)],
    "bench-reliability": lambda weights, folder: [reliability.bundle_settings(folder, str(weights), 8000, folder)],
    "test-arm64": lambda weights, folder: [arm64.SERVE_SETTINGS],
    "bench/cpu_dtype.py": lambda weights, folder: [cpu_dtype.dtype_settings(dtype, str(weights), {})
                                          for dtype in ("float32", "bfloat16")],
}


@pytest.fixture
def weights(tmp_path: Path, monkeypatch) -> Path:
    """A folder that passes as model weights where the settings are checked; the fixture's, for a
    benchmark that asks for them itself."""
    folder = tmp_path / "weights"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    monkeypatch.setenv("FIXTURE_WEIGHTS", str(folder))
    return folder


@pytest.mark.parametrize("target", SERVERS)
def test_each_benchmarks_servers_load_render_and_serve_the_fixture_with_its_profile(target, weights, tmp_path):
    servers = SERVERS[target](weights, tmp_path)
    assert servers, target
    for environ in map(dict, servers):
        if environ.get("MODEL_SOURCE") in IN_CONTAINER:  # checked here on a folder of this machine
            environ["MODEL_SOURCE"] = str(weights)
        settings = load_settings(environ)
        assert settings.model_profile == PROFILE and settings.smoke_expect == "", environ
        render_command(settings, str(weights) if "MODEL_SOURCE" in environ else "/models/fixture")


def test_every_bench_target_of_dev_mk_is_checked_here():
    targets = {line.split(":", 1)[0] for line in (ROOT / "dev.mk").read_text().splitlines()
               if line.startswith(("bench-", "test-arm64")) and ":" in line}
    assert targets and targets <= set(SERVERS), sorted(targets - set(SERVERS))
