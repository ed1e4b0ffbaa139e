"""The host side of the Docker path: Make's configuration read the entrypoint's way (the
environment, then .env, then the default), checked before a shell sees it, and the host
scripts on the standard library only (README: Prerequisites)."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from dotenv import dotenv_values

from tests.unit.test_image_build import ROOT, load

host_env = load("host_env.py")
regen = load("regen-docs.py")
HOST_SCRIPTS = ["make-config.py", "base-image.py", "npu-devices.py", "ensure-base-images.py", "rollout.py"]


def make(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PLATFORM", "PORT", "ENGINE", "MAKEFLAGS", "MAKELEVEL")}
    return subprocess.run(["make", "--no-print-directory", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


def compose_files(dry_run: str) -> list[str]:
    """The Compose files a `make -n` names (scripts/compose-root.sh PROJECT FILE...)."""
    match = re.search(r"scripts/compose-root\.sh \S+ ((?:\S+\.yaml ?)+)", dry_run)
    assert match, dry_run
    return match.group(1).split()


@pytest.mark.parametrize("text", [
    "PLATFORM=npu\n", "export PORT=8001\n", "A='x y'\nB=\"q \\\"w\\\"\"\n", "C=plain # a comment\n",
    "# only a comment\nD=1\n\nE=\n", "  F = spaced  \n", "G=a#b\n", "H='#not a comment'\n",
])
def test_the_host_reader_agrees_with_python_dotenv(tmp_path, text):
    env_file = tmp_path / ".env"
    env_file.write_text(text)
    expected = {k: v for k, v in dotenv_values(stream=io.StringIO(text)).items() if v is not None}
    assert host_env.read_env_file(env_file) == expected


def test_a_env_file_platform_reaches_both_the_compose_files_and_the_render(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("PLATFORM=npu\nPORT=8123\n")
    dry = make("-n", "up", "ENGINE=docker", f"ENV_FILE={env_file}")
    assert dry.returncode == 0, dry.stderr
    assert compose_files(dry.stdout)[:2] == ["compose/compose.yaml", "compose/npu.yaml"]
    assert "HOST_PORT=8123" in dry.stdout and f"ENV_FILE={env_file}" in dry.stdout
    # The command line still wins over the file.
    assert compose_files(make("-n", "up", "ENGINE=docker", "PLATFORM=cpu", f"ENV_FILE={env_file}").stdout)[1] \
        == "compose/cpu.yaml"
    render = subprocess.run([sys.executable, "-m", "entrypoint", "--env-file", str(env_file), "render", "--format",
                             "json"], cwd=ROOT, env={k: v for k, v in os.environ.items() if k != "PLATFORM"},
                            capture_output=True, text=True, timeout=120)
    assert render.returncode == 0, render.stderr
    assert "PYTORCH_NPU_ALLOC_CONF" in json.loads(render.stdout)["env"]  # the NPU render


def test_the_docker_path_needs_no_venv():
    for target in ("up", "build", "rollout", "render", "smoke", "down", "logs", "monitor", "status"):
        for platform in ("cpu", "npu"):
            dry = make("-n", target, "ENGINE=docker", f"PLATFORM={platform}", "REPLICAS=2")
            assert dry.returncode == 0, dry.stderr
            assert "bootstrap-venv" not in dry.stdout and ".venv/" not in dry.stdout, (target, dry.stdout)
            assert "scripts/testbed/" not in dry.stdout, (target, dry.stdout)


@pytest.mark.parametrize(("args", "named"), [
    (["PORT=8000; touch {marker}"], "PORT"), (["PORT=8000 9000"], "PORT"), (["REPLICAS=0"], "REPLICAS"),
    (["PROJECT=a;b"], "PROJECT"), (["RENDER_FORMAT=yaml"], "RENDER_FORMAT"), (["PLATFORM=npu;id"], "PLATFORM"),
    (["WARM_ISAS=avx2;id"], "WARM_ISAS"), (["ENV_FILE=x y"], "ENV_FILE"), (["IMAGE_VERSION=$$(id)"], "IMAGE_VERSION"),
])
def test_a_bad_make_variable_is_one_line_and_nothing_runs(tmp_path, args, named):
    marker = tmp_path / "ran"
    done = make("render", "ENGINE=native", *[arg.format(marker=marker) for arg in args])
    assert done.returncode == 2 and not marker.exists()
    assert done.stderr.count("\n") == 1 and f"{named}=" in done.stderr and "allowed: " in done.stderr, done.stderr


def test_a_bad_value_in_the_env_file_names_the_file(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("PORT=eighty\n")
    done = make("-n", "up", "ENGINE=docker", f"ENV_FILE={env_file}")
    assert done.returncode == 2 and "PORT='eighty'" in done.stderr and str(env_file) in done.stderr


@pytest.mark.parametrize("script", HOST_SCRIPTS)
def test_the_host_scripts_import_the_standard_library_only(script):
    # -S: no site-packages, so pydantic, jinja2 and yaml are not importable; -I: no checkout on the path.
    code = (f"import importlib.util, sys; sys.argv = ['x']; sys.path.insert(0, {str(ROOT / 'scripts')!r}); "
            f"s = importlib.util.spec_from_file_location('m', {str(ROOT / 'scripts' / script)!r}); "
            "importlib.util.module_from_spec(s)")
    loader = f"{code}; m = importlib.util.module_from_spec(s); s.loader.exec_module(m)"
    done = subprocess.run(["python3", "-S", "-I", "-c", loader], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_the_image_table_for_the_host_is_images_yaml():
    current = json.loads((ROOT / "templates" / "images.json").read_text())
    assert current == json.loads(regen.images_json()), "templates/images.json is stale: run `make docs`"
    assert {k: v for k, v in current.items() if k not in ("_generated", "default_image")} \
        == yaml.safe_load((ROOT / "templates" / "images.yaml").read_text())
