"""The image build's helpers: base images present or one line (ensure-base-images.py), and the
bundle's libraries fitted around the base's vLLM stack (install-on-base.py)."""

from __future__ import annotations

import importlib.util
import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest

ROOT = Path(__file__).parents[2]


def load(script: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(script.replace("-", "_"), ROOT / "scripts" / script)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


install_on_base = load("install-on-base.py")
ensure_base_images = load("ensure-base-images.py")


def dist(name: str, version: str, *requires: str) -> SimpleNamespace:
    return SimpleNamespace(metadata={"Name": name}, version=version, requires=list(requires))


BASE = {d.metadata["Name"].lower(): d for d in [
    dist("vllm", "0.18.0+empty", "pydantic>=2.9", "transformers>=4.56", "pytest; extra == 'test'"),
    dist("torch", "2.8.0", "filelock", "jinja2"),
    dist("pydantic", "2.11.0"), dist("transformers", "4.57.1", "tokenizers>=0.22"),
    dist("tokenizers", "0.22.1"), dist("filelock", "3.18.0"), dist("jinja2", "3.1.6"),
    dist("modelscope", "1.31.0", "requests"), dist("requests", "2.32.5"),
]}


def test_serving_stack_is_the_closure_of_vllm_and_torch_without_extras() -> None:
    stack = install_on_base.serving_stack(BASE)
    assert stack == {"vllm": "0.18.0+empty", "torch": "2.8.0", "pydantic": "2.11.0", "transformers": "4.57.1",
                     "tokenizers": "0.22.1", "filelock": "3.18.0", "jinja2": "3.1.6"}


def test_a_pin_against_the_stack_is_named_and_one_outside_it_may_move() -> None:
    stack = install_on_base.serving_stack(BASE)
    bad = install_on_base.contradictions(["pydantic==1.10.0", "modelscope==1.40.2", "jinja2", "tenacity"], stack)
    assert bad == ["pydantic==1.10.0 (the base's vLLM stack has pydantic==2.11.0)"]


def test_the_bundle_requirements_pin_nothing_against_the_test_bed_stack() -> None:
    requirements = install_on_base.project_requirements(str(ROOT / "pyproject.toml"), ["verification"])
    stack = install_on_base.serving_stack(install_on_base.installed())
    assert "torch" in stack and install_on_base.contradictions(requirements, stack) == []


def test_dockerfile_defaults_are_fully_qualified_for_a_mirror_prefix() -> None:
    defaults = ensure_base_images.dockerfile_defaults(ROOT / "Dockerfile")
    assert defaults["REGISTRY_MIRROR"] == "" and defaults["RUNTIME"] == "accelerator"
    assert defaults["BASE_IMAGE"].startswith("quay.io/") and defaults["CPU_BASE_IMAGE"].startswith("docker.io/")


@pytest.fixture
def fake_docker(tmp_path: Path) -> Path:
    """A `docker` that knows the images listed in $FAKE_IMAGES, logs its calls and fails every pull."""
    script = tmp_path / "bin/docker"
    script.parent.mkdir()
    script.write_text('#!/bin/sh\necho "$*" >> "$FAKE_LOG"\n'
                      'case "$1 $2" in "image inspect") grep -qxF "$3" "$FAKE_IMAGES"; exit $?;; esac\n'
                      'echo "Error response from daemon: lookup quay.io: no such host" >&2; exit 1\n')
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return tmp_path


def ensure(fake: Path, platform: str, args: dict, images: list[str]) -> subprocess.CompletedProcess:
    (fake / "images").write_text("".join(f"{image}\n" for image in images))
    compose = {"services": {"serve": {"build": {"context": str(ROOT), "dockerfile": "Dockerfile", "args": args}}}}
    env = {**os.environ, "PATH": f"{fake / 'bin'}:{os.environ['PATH']}", "FAKE_LOG": str(fake / "log"),
           "FAKE_IMAGES": str(fake / "images")}
    return subprocess.run([sys.executable, str(ROOT / "scripts/ensure-base-images.py"), platform],
                          input=json.dumps(compose), capture_output=True, text=True, env=env)


def test_present_base_images_need_no_pull(fake_docker: Path) -> None:
    done = ensure(fake_docker, "npu", {}, ["quay.io/ascend/vllm-ascend:v0.18.0rc1",
                                           "docker.io/library/debian:bookworm-slim"])
    assert done.returncode == 0, done.stderr
    assert "pull" not in (fake_docker / "log").read_text()


def test_a_base_that_cannot_be_pulled_is_one_line_naming_image_and_setting(fake_docker: Path) -> None:
    done = ensure(fake_docker, "cuda", {"BASE_IMAGE": "docker.io/vllm/vllm-openai:v0.18.0"}, [])
    assert done.returncode == 1
    line = done.stderr.splitlines()[-1]
    assert "docker.io/vllm/vllm-openai:v0.18.0 is not on this machine" in line
    assert "REGISTRY_MIRROR" in line and "CUDA_BASE_IMAGE" in line and "no such host" in line


def test_the_mirror_prefixes_every_base_and_skips_the_local_debian_build(fake_docker: Path) -> None:
    done = ensure(fake_docker, "cpu", {"RUNTIME": "cpu", "REGISTRY_MIRROR": "m.example.org/"}, [])
    assert done.returncode == 1
    assert "pull --quiet m.example.org/docker.io/library/debian:bookworm-slim" in (fake_docker / "log").read_text()
    assert "check REGISTRY_MIRROR=m.example.org/" in done.stderr and "CPU_BASE_IMAGE" in done.stderr
