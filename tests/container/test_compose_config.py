"""`docker compose config` for every platform override (needs the compose plugin, not an engine)."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests.container.conftest import ROOT

pytestmark = pytest.mark.container
NPU_DEVICES = {"/dev/davinci0", "/dev/davinci_manager", "/dev/devmm_svm", "/dev/hisi_hdc"}
NPU_MOUNTS = {"/usr/local/dcmi", "/usr/local/bin/npu-smi", "/usr/local/Ascend/driver/lib64/",
              "/usr/local/Ascend/driver/version.info", "/etc/ascend_install.info"}


def config(platform: str, **env: str) -> dict:
    done = subprocess.run(["docker", "compose", "-f", "compose/compose.yaml", "-f", f"compose/{platform}.yaml",
                           "config", "--format", "json"], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={"PATH": os.environ["PATH"], "HOME": os.environ["HOME"], **env})
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.parametrize("platform", ["npu", "cpu", "cuda"])
def test_config_is_valid(platform):
    serve = config(platform)["services"]["serve"]
    assert serve["environment"]["PLATFORM"] == platform
    assert serve["healthcheck"]["test"][-2:] == ["healthcheck", "ready"]


def test_npu_carries_every_device_and_mount():
    serve = config("npu", NPU_DEVICE="3")["services"]["serve"]
    devices = {d["source"] for d in serve["devices"]}
    assert devices == (NPU_DEVICES - {"/dev/davinci0"}) | {"/dev/davinci3"}
    assert {v["source"] for v in serve["volumes"] if v["type"] == "bind"} >= NPU_MOUNTS
    assert serve["environment"]["ASCEND_VISIBLE_DEVICES"] == serve["environment"]["ASCEND_RT_VISIBLE_DEVICES"] == "3"
