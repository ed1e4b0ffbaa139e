"""The host side of the Docker path: Make's configuration read the entrypoint's way (the
environment, then .env, then the default), checked before a shell sees it, and the host
scripts on the standard library only (README: Prerequisites)."""

from __future__ import annotations

import http.server
import io
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml
from dotenv import dotenv_values

from entrypoint.state import StateDir
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
    assert {k: v for k, v in current.items() if k not in ("_generated", "default_image", "default_hardware")} \
        == yaml.safe_load((ROOT / "templates" / "images.yaml").read_text())


class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/health" else 404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_the_probes_typed_at_the_checkout_find_the_native_servers_state(tmp_path):
    # A checkout after a native `make up`: its supervisor's state in .run/state (scripts/paths.sh).
    for path in ("healthcheck/__init__.py", "healthcheck/__main__.py", "healthcheck/probes.py",
                 "entrypoint/__init__.py", "entrypoint/state.py", "entrypoint/bounded_read.py", "Makefile", "dev.mk",
                 "scripts/paths.sh", "scripts/make-config.py", "scripts/host_env.py"):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / path, tmp_path / path)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        state = StateDir(tmp_path / ".run" / "state")
        state.reset()
        state.write_state(url=url, served_model_name="m", supervisor_pid=os.getpid(), server_pid=os.getpid())
        state.mark_ready(url=url, served_model_name="m")
        env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}
        ready = subprocess.run(["python3", "-m", "healthcheck", "ready"], cwd=tmp_path, env=env, capture_output=True,
                               text=True, timeout=30)
        assert (ready.returncode, ready.stdout) == (0, f"ready: OK: {url}/health -> 200\n")
        status = subprocess.run(["make", "--no-print-directory", "status", "ENGINE=native"], cwd=tmp_path, env=env,
                                capture_output=True, text=True, timeout=60)
        assert status.returncode == 0, status.stdout + status.stderr
        assert [line.split(":")[0:2] for line in status.stdout.splitlines()] == [
            ["startup", " OK"], ["ready", " OK"], ["live", " OK"]]
    finally:
        server.shutdown()
