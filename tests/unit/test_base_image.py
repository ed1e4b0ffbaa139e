"""The NPU build's base image (scripts/base-image.py): the vllm-ascend tag for IMAGE_VERSION and
NPU_HARDWARE, IMAGE_VERSION passed on for the image's ENV, a bad value one line and exit 2."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from entrypoint.default_layers import SUPPORTED_IMAGES
from tests.unit.test_image_build import ROOT, ensure_base_images, load

base_image = load("base-image.py")
QUAY = "quay.io/ascend/vllm-ascend"


@pytest.mark.parametrize(("environ", "expected"), [
    ({}, f"{QUAY}:v0.18.0rc1"),
    ({"NPU_HARDWARE": "a2"}, f"{QUAY}:v0.18.0rc1"),
    ({"NPU_HARDWARE": "a3"}, f"{QUAY}:v0.18.0rc1-a3"),
    ({"IMAGE_VERSION": "v0.23.0", "NPU_HARDWARE": "310p"}, f"{QUAY}:v0.23.0-310p"),
    ({"IMAGE_VERSION": "v0.23.0"}, f"{QUAY}:v0.23.0"),
    ({"IMAGE_VERSION": "v0.23.0", "BASE_IMAGE": "registry.local/vllm-ascend:mine"}, "registry.local/vllm-ascend:mine"),
])
def test_the_tag_follows_the_image_version_and_hardware(environ, expected):
    args = base_image.build_args(environ, None)
    assert args == {"BASE_IMAGE": expected, "IMAGE_VERSION": environ.get("IMAGE_VERSION", "v0.18.0rc1")}


def test_the_image_version_comes_from_the_env_file_too(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("IMAGE_VERSION=v0.23.0\n")
    assert base_image.build_args({"NPU_HARDWARE": "a3"}, env_file)["BASE_IMAGE"] == f"{QUAY}:v0.23.0-a3"


def test_the_dockerfiles_defaults_are_the_default_image():
    defaults = ensure_base_images.dockerfile_defaults(ROOT / "Dockerfile")
    assert base_image.build_args({}, None) == {name: defaults[name] for name in ("BASE_IMAGE", "IMAGE_VERSION")}
    assert defaults["IMAGE_VERSION"] in SUPPORTED_IMAGES


def test_the_accelerator_image_keeps_its_image_version():
    stage = (ROOT / "Dockerfile").read_text().split("AS accelerator-runtime", 1)[1].split("\nFROM ", 1)[0]
    assert re.search(r"^ARG IMAGE_VERSION$", stage, re.M)
    assert re.search(r"^ENV .*\bIMAGE_VERSION=\$\{IMAGE_VERSION\}", stage, re.M)


@pytest.mark.parametrize(("name", "value"), [("NPU_HARDWARE", "a5"), ("IMAGE_VERSION", "v9"),
                                             ("NPU_HARDWARE", "A3 ")])
def test_a_bad_value_is_one_line_and_exit_2(tmp_path, name, value):
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "base-image.py")], capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), name: value}, timeout=60)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and done.stderr.startswith(f"error: {name}=")
    assert "allowed: " in done.stderr


def test_the_printed_assignments_are_what_make_evaluates(tmp_path):
    done = subprocess.run(["bash", "-c", f'eval "$({sys.executable} scripts/base-image.py)"; '
                                        'echo "$BASE_IMAGE $IMAGE_VERSION"'], cwd=ROOT, capture_output=True,
                          text=True, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "NPU_HARDWARE": "a3",
                                          "IMAGE_VERSION": "v0.23.0"}, timeout=60)
    assert done.stdout.split() == [f"{QUAY}:v0.23.0-a3", "v0.23.0"], done.stderr
